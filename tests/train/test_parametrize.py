"""Binarization and the factorized parametrizations of binary layers."""

from __future__ import annotations

import pytest
import tensorly as tl
import torch
from torch import nn

from bitfold.train.layers import BinaryConv2d, BinaryLinear, binary_layers, parametrize_model
from bitfold.train.quant import BinarizeWeight, binary_sign, sign_ste

PARAMS = ["dense", "svd", "tucker", "holistic-tucker", "cp"]


class Net(nn.Module):
    """Two same-shaped convolutions (one holistic group), a first layer and a dense layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            BinaryConv2d(3, 6, 3, padding=1, input_mode="multibit"), nn.BatchNorm2d(6),
            BinaryConv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6),
            BinaryConv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6),
            nn.Flatten(), BinaryLinear(6 * 4 * 4, 5), nn.BatchNorm1d(5),
        )

    def forward(self, x):
        return self.body(x)


def low_cp_rank_weights(net: Net, rank: int = 2) -> None:
    """Give every binary layer a weight of exact CP rank ``rank``, which CP recovers."""
    g = torch.Generator().manual_seed(1)
    for _, layer in binary_layers(net):
        factors = [torch.randn(d, rank, generator=g) for d in layer.weight.shape]
        with torch.no_grad(), tl.backend_context("pytorch"):
            layer.weight.copy_(tl.cp_to_tensor((None, factors)) * 0.1)


def test_sign_of_zero_is_plus_one_and_ste_is_clipped_identity():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]
    assert binary_sign(torch.zeros(3)).tolist() == [1, 1, 1]


def test_binarize_weight_modes():
    w = torch.tensor([[0.5, -1.5], [-0.25, 0.0]])
    assert torch.equal(BinarizeWeight("none", w)(w), torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    analytic = BinarizeWeight("analytic", w)(w)
    assert torch.allclose(analytic, torch.tensor([[1.0, -1.0], [-0.125, 0.125]]))
    learned = BinarizeWeight("learned", w)
    assert isinstance(learned.alpha, nn.Parameter)
    assert torch.allclose(learned.alpha, torch.tensor([1.0, 0.125]))
    with pytest.raises(ValueError, match=r"^alpha must be one of"):
        BinarizeWeight("mean", w)


@pytest.mark.parametrize("param", PARAMS)
def test_parametrization_reconstructs_initial_weight(param):
    torch.manual_seed(0)
    net = Net()
    if param == "cp":
        low_cp_rank_weights(net)
    before = [layer.weight.detach().clone() for _, layer in binary_layers(net)]
    parametrize_model(net, param, "learned", rank=2 if param == "cp" else None)
    for (name, layer), w in zip(binary_layers(net), before, strict=True):
        rec = layer.real_weight()
        assert rec.shape == w.shape, name
        if param == "cp":  # fitted iteratively (ALS): exact up to its convergence tolerance
            assert (rec - w).norm() / w.norm() < 1e-3, (name, (rec - w).norm() / w.norm())
        else:  # closed-form decompositions: exact up to float32 rounding
            assert torch.allclose(rec, w, atol=1e-5, rtol=1e-4), (name, (rec - w).abs().max())


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("alpha", ["none", "analytic", "learned"])
def test_inference_weights_are_plus_minus_alpha_per_channel(param, alpha):
    torch.manual_seed(0)
    net = Net()
    parametrize_model(net, param, alpha)
    if alpha == "learned":  # make some alphas negative, as training may
        with torch.no_grad():
            for _, layer in binary_layers(net):
                layer.binarizer.alpha[0] = -0.3
    for name, layer in binary_layers(net):
        w = layer.weight.detach()
        real = layer.real_weight().detach()
        a = layer.binarizer.scale(real).detach().reshape((-1,) + (1,) * (w.dim() - 1))
        assert torch.equal(w, a * binary_sign(real)), name
        assert torch.equal(w.abs(), a.abs().expand_as(w)), name
        if alpha == "none":
            assert torch.equal(w.abs(), torch.ones_like(w))


@pytest.mark.parametrize("param", PARAMS)
def test_gradients_reach_every_factor_and_learned_alpha(param):
    torch.manual_seed(0)
    net = Net()
    parametrize_model(net, param, "learned")
    net(torch.rand(4, 3, 4, 4)).pow(2).sum().backward()
    names = [n for n, _ in net.named_parameters()]
    assert any(n.endswith(".alpha") for n in names)
    for n, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    if param in ("svd", "tucker", "cp"):
        assert any(".original1" in n for n in names)  # the weight really is factorized


def test_holistic_group_is_one_parameter_set_updated_by_all_layers():
    torch.manual_seed(0)
    net = Net()
    parametrize_model(net, "holistic-tucker", "learned")
    groups = list(net.factor_groups)
    shared = [g for g in groups if g.num_layers == 2]
    assert len(shared) == 1 and len(groups) == 3  # the two 6x6x3x3 convolutions share one
    group = shared[0]
    conv_a, conv_b = net.body[2], net.body[4]
    # One set: the core appears once among the model's parameters.
    core_ids = [id(p) for p in net.parameters() if p is group.core]
    assert len(core_ids) == 1
    for layer in (conv_a, conv_b):
        group.zero_grad()
        layer.weight.sum().backward()
        assert group.core.grad.abs().sum() > 0
        assert all(f.grad.abs().sum() > 0 for f in group.factors)
    # An optimizer step driven by one layer's loss changes the other layer's weight too.
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before_b = conv_b.real_weight().detach().clone()
    opt.zero_grad()
    (conv_a.real_weight() ** 2).sum().backward()
    opt.step()
    assert not torch.allclose(conv_b.real_weight().detach(), before_b)


def test_holistic_state_dict_round_trip():
    torch.manual_seed(0)
    a = parametrize_model(Net(), "holistic-tucker", "learned")
    torch.manual_seed(1)
    b = parametrize_model(Net(), "holistic-tucker", "learned")
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 4, 4)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


def test_lower_rank_means_fewer_parameters():
    full = sum(p.numel() for p in parametrize_model(Net(), "tucker", "none").parameters())
    half = sum(p.numel() for p in parametrize_model(Net(), "tucker", "none", rank=0.5).parameters())
    assert half < full


def test_binary_padding_uses_the_constant():
    conv = BinaryConv2d(1, 1, 3, padding=1, pad_value=-1.0)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    out = conv(torch.ones(1, 1, 3, 3))
    # Corner: 4 in-image ones, 5 padded -1s -> -1; centre: 9 ones.
    assert out[0, 0, 0, 0].item() == -1.0 and out[0, 0, 1, 1].item() == 9.0
    with pytest.raises(ValueError, match=r"^pad_value of a binary input must be -1 or \+1"):
        BinaryConv2d(1, 1, 3, padding=1, pad_value=0.0)


def test_bad_parametrization_names():
    with pytest.raises(ValueError, match=r"^param must be one of"):
        parametrize_model(Net(), "qr", "analytic")
    with pytest.raises(ValueError, match=r"^rank must be a fraction in \(0, 1\]"):
        parametrize_model(Net(), "tucker", "analytic", rank=2.0)


def test_holistic_projection_is_the_same_on_every_call():
    """The layer-mode row of a one-layer group is computed identically call after call.

    torch's default CPU least-squares driver (gelsy) gets an uninitialized pivot array,
    so the same inputs gave rows differing in the last bit (1.0000002 or 1.0000004)
    from call to call and process to process, and trainings with the same --seed
    diverged from their first step.
    """
    from bitfold.train.factorize import HolisticTucker

    torch.manual_seed(0)
    w = torch.randn(256, 784) * 0.05  # sfc's first layer: a group of its own
    group = HolisticTucker(w[None])
    rows = set()
    for i in range(40):
        torch.empty(17 * i + 1)  # other allocations in between, as in a real run
        rows.add(group.project(w).item())
    assert len(rows) == 1, rows
