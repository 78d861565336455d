"""``--factor-dtype bfloat16``: a factorization's matrix products on operands rounded to bfloat16.

The reconstruction is binarized right after, so what matters is that it stays within
bfloat16's rounding of the float32 one (values and gradients), that every tensor the rest
of the network sees is still float32, that float32 stays bit for bit what it was, and that
the choice is saved with the run and rebuilt by every reader of it (compile, golden).
"""

from __future__ import annotations

import json

import pytest
import torch

from bitfold.cli import main
from bitfold.train.config import TrainConfig
from bitfold.train.factorize import HolisticTucker, SVDWeight, TuckerWeight, matrix_tucker
from bitfold.train.layers import parametrize_model
from bitfold.train.models import build_model
from bitfold.train.trainer import load_run, train

BF16_EPS = 2.0 ** -8


def _operands(rows: int, cols: int, layers: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(layers, rows, cols, generator=g, requires_grad=True)
    u1 = torch.randn(rows, rows, generator=g, requires_grad=True)
    u2 = torch.randn(cols, cols, generator=g, requires_grad=True)
    row = torch.randn(layers, generator=g, requires_grad=True)
    return core, u1, u2, row


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("with_row", [True, False])
def test_bfloat16_products_stay_within_its_rounding_of_float32(with_row):
    core, u1, u2, row = _operands(24, 40)
    if not with_row:
        core = core[0].detach().requires_grad_()
        row = None
    grad = torch.randn(24, 40, generator=torch.Generator().manual_seed(1))
    inputs = [t for t in (core, u1, u2, row) if t is not None]
    out = {}
    for dtype in (None, torch.bfloat16):
        w = matrix_tucker(core, u1, u2, row, dtype)
        grads = torch.autograd.grad(w, inputs, grad)
        out[dtype] = (w, grads)
    (w32, g32), (w16, g16) = out[None], out[torch.bfloat16]
    assert w16.dtype == torch.float32 and w16.stride() == w32.stride() == (1, 24)
    assert not torch.equal(w16, w32)  # it did round
    # Each product rounds its operands and its result (2 or 3 roundings in sequence).
    assert _rel(w16, w32) < 4 * BF16_EPS
    for a, b in zip(g16, g32, strict=True):
        assert a.dtype == torch.float32 and _rel(a, b) < 6 * BF16_EPS


def test_float32_is_the_default_and_the_bfloat16_model_rebuilds_its_weights_with_it():
    def model(factor_dtype):
        torch.manual_seed(0)
        return parametrize_model(build_model("sfc", (1, 28, 28), 10), "holistic-tucker",
                                 "learned", None, factor_dtype=factor_dtype)

    default, f32, bf16 = model(None), model("float32"), model("bfloat16")
    links = [m for m in bf16.modules() if isinstance(m, HolisticTucker)]
    assert len(links) == 3 and {m.product_dtype for m in links} == {torch.bfloat16}
    assert all(m.product_dtype is None for m in f32.modules() if isinstance(m, HolisticTucker))
    layers = {name: [m for m in net.modules() if hasattr(m, "real_weight")]
              for name, net in (("default", default), ("f32", f32), ("bf16", bf16))}
    for a, b, c in zip(*layers.values(), strict=True):
        wa, wb, wc = a.real_weight(), b.real_weight(), c.real_weight()
        assert torch.equal(wa, wb)
        assert 0 < _rel(wc, wa) < 4 * BF16_EPS
        assert (torch.sign(wc) == torch.sign(wa)).float().mean() > 0.99
        bf16.eval()
        assert torch.equal(c.real_weight(), wc)  # evaluation reconstructs as training did


@pytest.mark.parametrize("param,link", [("svd", SVDWeight), ("tucker", TuckerWeight)])
def test_layerwise_factorizations_take_the_dtype_too(param, link):
    torch.manual_seed(0)
    f32 = parametrize_model(build_model("tfc", (1, 28, 28), 10), param, "learned", None)
    torch.manual_seed(0)
    bf16 = parametrize_model(build_model("tfc", (1, 28, 28), 10), param, "learned", None,
                             factor_dtype="bfloat16")
    assert {m.product_dtype for m in bf16.modules() if isinstance(m, link)} == {torch.bfloat16}
    x = torch.rand(16, 1, 28, 28)
    for net in (f32, bf16):
        net(x).sum().backward()
    for (name, a), (_, b) in zip(f32.named_parameters(), bf16.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None and b.grad.dtype == torch.float32, name
        assert a.grad.shape == b.grad.shape


def test_the_choice_is_saved_refused_when_unknown_and_older_runs_read_float32():
    with pytest.raises(ValueError, match="factor_dtype must be one of float32, bfloat16"):
        TrainConfig(factor_dtype="float16")
    assert "factor_dtype" not in TrainConfig().resolved().to_dict()  # the runs before it
    saved = TrainConfig(factor_dtype="bfloat16").resolved().to_dict()
    assert saved["factor_dtype"] == "bfloat16"
    assert TrainConfig.from_dict(saved).factor_dtype == "bfloat16"
    old = TrainConfig().resolved().to_dict()
    assert TrainConfig.from_dict(old).factor_dtype == "float32"


def test_a_bfloat16_run_compiles_and_agrees_with_golden(tmp_path, capsys):
    run, build = tmp_path / "run", tmp_path / "build"
    assert main(["train", "--epochs", "2", "--factor-dtype", "bfloat16", "--out", str(run),
                 "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["factor_dtype"] == "bfloat16"
    model, config, _ = load_run(run)
    assert config.factor_dtype == "bfloat16"
    assert {m.product_dtype for m in model.modules() if isinstance(m, HolisticTucker)} == \
        {torch.bfloat16}
    for args in (["compile", str(run), "--out", str(build)], ["golden", str(build)]):
        assert main(args) == 0
    report = json.loads((build / "golden.json").read_text())
    assert report["agreement"] == 1.0
    again = train(TrainConfig(epochs=2, factor_dtype="bfloat16"), tmp_path / "again",
                  progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert again["test_accuracy"] == metrics["test_accuracy"]  # repeatable, as float32 is
