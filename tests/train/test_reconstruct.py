"""The training step's fast paths against the code they replaced, bit for bit.

``bitfold.train.factorize`` rebuilds Tucker and holistic-Tucker weights with its own
``mode_dot`` / ``tucker_to_tensor`` (tensorly's operations without its backend dispatch),
``binary_sign`` and the straight-through backward avoid ``torch.where`` and bool masks,
and ``evaluate`` caches the weights. These tests pin each to what it replaced: exact
equality (``torch.equal``, or the bit patterns), never a tolerance, because a sign flip
of a weight near zero would change the binary network.
"""

from __future__ import annotations

import pytest
import tensorly as tl
import torch
from torch.nn.utils import parametrize

from bitfold.train import factorize
from bitfold.train.factorize import (
    HolisticTucker,
    TuckerWeight,
    matrix_tucker,
    mode_dot,
    tucker_to_tensor,
)
from bitfold.train.layers import binary_layers, parametrize_model
from bitfold.train.models import build_model
from bitfold.train.quant import binary_sign, sign_ste

from .test_parametrize import Net


def _tensorly_tucker(self, core, *factors):
    with tl.backend_context("pytorch"):
        return tl.tucker_to_tensor((core, list(factors)))


def _tensorly_holistic(self, row):
    with tl.backend_context("pytorch"):
        sliced = tl.tenalg.mode_dot(self.core, row, 0)
        return tl.tucker_to_tensor((sliced, list(self.factors)))


@pytest.fixture
def tensorly_path(monkeypatch):
    """Switch the reconstructions back to tensorly's functions (the code before this change)."""

    def use() -> None:
        monkeypatch.setattr(TuckerWeight, "forward", _tensorly_tucker)
        monkeypatch.setattr(HolisticTucker, "reconstruct", _tensorly_holistic)

    return use


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3, 3), (2, 6, 6)])
def test_mode_dot_and_tucker_to_tensor_equal_tensorly(shape):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(shape, generator=g)
    with tl.backend_context("pytorch"):
        for mode, dim in enumerate(shape):
            m = torch.randn(dim + 2, dim, generator=g)
            v = torch.randn(dim, generator=g)
            assert torch.equal(mode_dot(t, m, mode), tl.tenalg.mode_dot(t, m, mode))
            assert torch.equal(mode_dot(t, v, mode), tl.tenalg.mode_dot(t, v, mode))
            assert mode_dot(t, m, mode).stride() == tl.tenalg.mode_dot(t, m, mode).stride()
        factors = [torch.randn(d + 1, d, generator=g) for d in shape]
        ours, theirs = tucker_to_tensor(t, factors), tl.tucker_to_tensor((t, factors))
    assert torch.equal(ours, theirs) and ours.stride() == theirs.stride()


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(256, 784, 256, 256), (256, 256, 128, 128), (10, 256, 10, 10),
                                   (5, 7, 3, 6)])
def test_matrix_tucker_equals_mode_dot_forward_and_backward(shape, layers):
    """The 2-D fast path: values, strides and every gradient equal autograd through
    ``mode_dot`` / ``tucker_to_tensor`` bit for bit (``layers`` 0: layer-wise Tucker, no row),
    for a contiguous and a transposed incoming gradient."""
    out, inp, r_out, r_in = shape
    g = torch.Generator().manual_seed(layers)
    core = torch.randn(*([layers] if layers else []), r_out, r_in, generator=g)
    u1, u2 = torch.randn(out, r_out, generator=g), torch.randn(inp, r_in, generator=g)
    row = torch.randn(layers, generator=g) if layers else None
    leaves = [t for t in (core, u1, u2, row) if t is not None]
    for grad in (torch.randn(out, inp, generator=g), torch.randn(inp, out, generator=g).T):
        results = []
        for fast in (True, False):
            ts = [t.detach().clone().requires_grad_(True) for t in leaves]
            c, a, b, r = ts[0], ts[1], ts[2], ts[3] if layers else None
            if fast:
                w = matrix_tucker(c, a, b, r)
            else:
                w = tucker_to_tensor(mode_dot(c, r, 0) if layers else c, [a, b])
            w.backward(grad)
            results.append((w.detach(), w.stride(), [t.grad for t in ts]))
        (w1, s1, g1), (w2, s2, g2) = results
        assert torch.equal(w1, w2) and s1 == s2
        assert all(torch.equal(x, y) for x, y in zip(g1, g2, strict=True))


def _weights_and_grads(model: torch.nn.Module, x: torch.Tensor):
    model.zero_grad(set_to_none=True)
    weights = [layer.weight.detach().clone() for _, layer in binary_layers(model)]
    real = [layer.real_weight() for _, layer in binary_layers(model)]
    torch.nn.functional.cross_entropy(model(x), torch.arange(len(x)) % 5).backward()
    g = torch.Generator().manual_seed(3)
    torch.autograd.backward(real, [torch.randn(w.shape, generator=g) for w in real])
    return ([w.detach().clone() for w in real] + weights,
            {n: p.grad.clone() for n, p in model.named_parameters()})


@pytest.mark.parametrize("param", ["tucker", "holistic-tucker"])
@pytest.mark.parametrize("rank", [None, 0.5])
def test_weights_and_gradients_equal_the_tensorly_path(param, rank, tensorly_path):
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(2))

    def build():
        torch.manual_seed(0)
        return parametrize_model(Net(), param, "learned", rank)

    ours = _weights_and_grads(build(), x)
    tensorly_path()
    theirs = _weights_and_grads(build(), x)
    assert all(torch.equal(a, b) for a, b in zip(ours[0], theirs[0], strict=True))
    assert ours[1].keys() == theirs[1].keys()
    assert all(torch.equal(ours[1][n], theirs[1][n]) for n in ours[1])


def _train(model_name: str, param: str, steps: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = parametrize_model(build_model(model_name, (1, 8, 8), 10), param, "learned")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


@pytest.mark.parametrize("model_name", ["mlp-digits", "cnn-digits"])
@pytest.mark.parametrize("param", ["tucker", "holistic-tucker"])
def test_training_steps_equal_the_tensorly_path(model_name, param, tensorly_path):
    ours = _train(model_name, param)
    tensorly_path()
    theirs = _train(model_name, param)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


def test_evaluation_reconstructs_each_weight_once(monkeypatch):
    """``evaluate`` caches the parametrized weights for the whole test set (same values)."""
    from bitfold.train.data import load_dataset
    from bitfold.train.trainer import evaluate

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = parametrize_model(build_model("mlp-digits", data.input_shape, 10), "holistic-tucker")
    calls = []
    reconstruct = factorize.HolisticTucker.reconstruct
    monkeypatch.setattr(factorize.HolisticTucker, "reconstruct",
                        lambda self, row: calls.append(1) or reconstruct(self, row))
    acc = evaluate(model, data, batch_size=64)
    assert len(calls) == len(binary_layers(model))  # not once per batch
    calls.clear()
    assert not parametrize._cache_enabled
    with torch.no_grad():
        model.eval()
        uncached = sum(int((model(data.x_test[i:i + 64].float() * data.input_scale).argmax(1)
                            == data.y_test[i:i + 64]).sum()) for i in range(0, len(data.x_test), 64))
    assert acc == uncached / len(data.x_test)
    assert len(calls) > len(binary_layers(model))



def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_binary_sign_equals_where_on_every_kind_of_value(dtype):
    """``binary_sign`` against the ``torch.where`` it replaced, bit for bit."""
    special = [0.0, -0.0, 1e-45, -1e-45, 1e-39, -1e-39, float("nan"), -float("nan"),
               float("inf"), -float("inf"), 1.0, -1.0, 3e38, -3e38]
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    x = torch.cat([torch.tensor(special), noise]).to(dtype).reshape(-1, 2).T  # a strided view
    before = _bits(x).clone()
    y, ref = binary_sign(x), torch.where(x >= 0, 1.0, -1.0).to(dtype)
    assert y.dtype == dtype and y.stride() == ref.stride()
    assert torch.equal(_bits(y), _bits(ref))
    assert torch.equal(_bits(x), before)  # the input is untouched


def test_straight_through_gradient_equals_the_bool_mask_product():
    """The STE's backward against ``grad * (|x| <= 1).to(dtype)``, bit for bit (signed zeros too)."""
    special = [0.0, -0.0, 1.0, -1.0, 1.0000001, -1.0000001, 0.9999999, float("nan"),
               float("inf"), -float("inf"), 1e-45, -1e-45]
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.tensor(special), 2 * torch.randn(500, generator=g)])
    grad = torch.randn(x.shape, generator=g)
    grad[::2] = -grad[::2].abs()  # negative gradients where the mask is 0 give -0.0
    x.requires_grad_(True)
    sign_ste(x).backward(grad)
    assert torch.equal(_bits(x.grad), _bits(grad * (x.detach().abs() <= 1).to(grad.dtype)))
