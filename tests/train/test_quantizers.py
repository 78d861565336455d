"""Sparse, composite and low-rank binary quantizers (issue 8, the trainer side)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from bitfold.cli import build_parser
from bitfold.train.layers import binary_layers, parametrize_model
from bitfold.train.models import build_model
from bitfold.train.quantizers import (
    FRAC_BITS,
    CompositeWeight,
    LowRankWeight,
    SparseWeight,
    greedy_planes,
    nonzeros,
    quantize_domain,
    quantize_sparse,
)
from bitfold.train.trainer import TrainConfig, load_run, train
from bitfold.verbs import _config

PARAMS = ["dense", "tucker", "holistic-tucker"]


def _model(param: str, alpha: str, **quant) -> torch.nn.Module:
    torch.manual_seed(0)
    return parametrize_model(build_model("tfc", (1, 8, 8), 10), param, alpha, None, **quant)


def _rows(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1)


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("alpha", ["none", "analytic", "learned"])
@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_sparse_weights_lie_in_zero_b_at_the_target_sparsity(param, alpha, sparsity):
    model = _model(param, alpha, quantizer="sparse", sparsity=sparsity)
    layers = binary_layers(model)
    assert layers[0][1].binarizer is not None  # the first layer stays binary by default
    for _, layer in layers[1:]:
        rows = _rows(layer.weight)
        fan_in = rows.shape[1]
        nz = rows != 0
        # every row keeps exactly fan_in - round(S fan_in) weights: the target within 1/fan_in
        assert (nz.sum(dim=1) == nonzeros(fan_in, sparsity)).all()
        assert abs(1 - nz.float().mean().item() - sparsity) <= 1 / fan_in
        for row, keep in zip(rows, nz, strict=True):
            assert len(torch.unique(row[keep])) == 1  # {0, b_c}
        if alpha == "none":
            assert set(torch.unique(rows).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("bases", [1, 2, 3])
def test_composite_weights_are_sums_of_k_scaled_binary_planes(param, bases):
    model = _model(param, "learned", quantizer="composite", bases=bases)
    for _, layer in binary_layers(model):
        link = layer.quantizer
        assert isinstance(link, CompositeWeight)
        alpha, planes, m = link.quantize(layer.real_weight())
        assert planes.shape == (bases, *layer.weight.shape)
        assert set(torch.unique(planes).tolist()) <= {-1.0, 1.0}
        assert m[0] == 1 << FRAC_BITS and (m >= 1).all() and torch.equal(m, m.round())
        rebuilt = sum(alpha.reshape(-1, *(1,) * (planes.dim() - 2)) * (m[k] / 256) * planes[k]
                      for k in range(bases))
        assert torch.allclose(layer.weight, rebuilt, rtol=0, atol=1e-6)


def test_more_planes_approximate_the_latent_weight_better():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    errors = []
    for k in (1, 2, 3, 4):
        planes, scales = greedy_planes(w, k)
        approx = (scales[..., None] * planes).sum(dim=0)
        errors.append(float(((w - approx) ** 2).sum()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.1 * errors[0]


def test_low_rank_layers_are_a_product_of_two_binary_matrices():
    model = _model("holistic-tucker", "analytic", quantizer="composite", bases=2, low_rank=8)
    kinds = {name: type(layer.quantizer).__name__ for name, layer in binary_layers(model)}
    # tfc: 64 -> 64 -> 64 -> 64 -> 10; the first layer (multi-bit input) stays composite
    assert list(kinds.values()) == ["CompositeWeight"] + ["LowRankWeight"] * 3
    for _, layer in binary_layers(model)[1:]:
        link = layer.quantizer
        chain = layer.parametrizations.weight
        alpha, a, b = link.quantize(chain.original0, chain.original1)
        assert a.shape == (layer.weight.shape[0], 8) and b.shape == (8, layer.weight.shape[1])
        assert set(torch.unique(torch.cat([a.ravel(), b.ravel()])).tolist()) <= {-1.0, 1.0}
        assert torch.allclose(layer.weight, alpha[:, None] * (a @ b), atol=1e-6)
        assert torch.linalg.matrix_rank(layer.weight.detach()) <= 8


@pytest.mark.parametrize("quant", [dict(quantizer="sparse", sparsity=0.5),
                                   dict(quantizer="composite", bases=3),
                                   dict(quantizer="composite", bases=2, low_rank=4)])
@pytest.mark.parametrize("param", PARAMS)
def test_gradients_reach_the_latent_weights_and_scales(quant, param):
    model = _model(param, "learned", **quant)
    x = torch.rand(16, 1, 8, 8)
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        if "running" in name:
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_closed_form_sparse_beats_naive_choices():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        w = torch.randn(1, 40, generator=g) + torch.randn(1, generator=g)
        for s in (0.5, 0.75, 0.9):
            b, mask, _ = quantize_sparse(w, s)
            err = ((w - b * mask) ** 2).sum()
            k = int(mask.sum())
            # the best b for a random mask, and for the largest magnitudes
            for _ in range(5):
                idx = torch.randperm(40, generator=g)[:k]
                naive = torch.zeros_like(w)
                naive[0, idx] = 1
                nb = (w * naive).sum() / k
                assert err <= ((w - nb * naive) ** 2).sum() + 1e-9
            mag = torch.zeros_like(w).scatter_(1, w.abs().topk(k).indices, 1.0)
            mb = (w * mag).sum() / k
            assert err <= ((w - mb * mag) ** 2).sum() + 1e-9


def test_closed_form_domain_is_the_exact_optimum_of_small_rows():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        w = torch.randn(1, 9, generator=g).double() * 2 + 0.5
        a, b, upper = quantize_domain(w)
        err = ((w - torch.where(upper.bool(), b, a)) ** 2).sum().item()
        best = min(
            sum((v - (sum(w[0, m == 1]) / sum(m) if sum(m) else 0)) ** 2
                for v in w[0, m == 1]) +
            sum((v - (sum(w[0, m == 0]) / (9 - sum(m)) if 9 - sum(m) else 0)) ** 2
                for v in w[0, m == 0])
            for m in (torch.tensor(c) for c in itertools.product((0, 1), repeat=9)))
        assert err == pytest.approx(float(best), rel=1e-9)
        # and the {-alpha, +alpha} split at zero (XNOR-Net) is never better
        alpha = w.abs().mean()
        assert err <= float(((w - alpha * torch.where(w >= 0, 1.0, -1.0)) ** 2).sum()) + 1e-9


def test_parametrizations_refuse_bad_options():
    w = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"^sparsity must be in \(0, 1\)"):
        SparseWeight("analytic", w, 1.0)
    with pytest.raises(ValueError, match=r"^low rank must be 1\.\.3"):
        LowRankWeight("analytic", w, 4)
    with pytest.raises(ValueError, match=r"^bases must be a positive integer"):
        CompositeWeight("analytic", w, 0)


@pytest.mark.parametrize(("options", "message"), [
    (dict(quantizer="sparse"), r"^--quantizer sparse needs --sparsity S in \(0, 1\)"),
    (dict(quantizer="sparse", sparsity=1.5), r"^--quantizer sparse needs --sparsity"),
    (dict(quantizer="composite"), r"^--quantizer composite needs --bases K >= 1"),
    (dict(sparsity=0.5), r"^--sparsity applies to --quantizer sparse only"),
    (dict(bases=2), r"^--bases applies to --quantizer composite only"),
    (dict(quantizer="sparse", sparsity=0.5, low_rank=4), r"^--low-rank applies to --quantizer "
                                                        r"composite only"),
    (dict(quantizer="ternary"), r"^quantizer must be one of binary, sparse, composite"),
    (dict(quantizer="sparse", sparsity=0.7, sparse_group=4),
     r"^--sparsity 0.7 keeps 1.2 of every 4 weights; choose a sparsity that is a multiple of 1/4"),
    (dict(quantizer="sparse", sparsity=0.5, sparse_group=3), r"^--sparse-group must be a power"),
    (dict(quantizer="composite", bases=2, sparse_group=4), r"^--sparse-group applies to "
                                                          r"--quantizer sparse only"),
])
def test_config_refuses_options_that_do_not_fit(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_cli_options_reach_the_config():
    args = build_parser().parse_args(["train", "--model", "sfc", "--quantizer", "composite",
                                      "--bases", "3", "--low-rank", "32"])
    config = _config(args)
    assert (config.quantizer, config.bases, config.low_rank, config.sparsity) == \
        ("composite", 3, 32, None)
    default = _config(build_parser().parse_args(["train"]))
    assert (default.quantizer, default.bases, default.low_rank, default.sparsity) == \
        ("binary", None, None, None)


def test_default_is_plain_binary_and_old_runs_without_the_fields_load(tmp_path):
    config = TrainConfig(epochs=1)
    train(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["quantizer"] == "binary" and saved["sparsity"] is None
    # a run written before the quantizer fields existed
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("quantizer", "sparsity", "bases", "low_rank"):
        del ckpt["config"][key]
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    model, loaded, _ = load_run(tmp_path)
    assert loaded.quantizer == "binary"
    assert all(type(layer.binarizer).__name__ == "BinarizeWeight"
               for _, layer in binary_layers(model))


@pytest.mark.parametrize("quant", [dict(quantizer="sparse", sparsity=0.5, param="dense"),
                                   dict(quantizer="composite", bases=2, low_rank=16)])
def test_quantized_mlp_learns_digits_and_reloads(tmp_path, quant):
    metrics = train(TrainConfig(epochs=6, **quant), tmp_path, progress=False)
    assert metrics["test_accuracy"] > 0.7
    model, config, data = load_run(tmp_path)
    assert config.quantizer == quant["quantizer"]
    with torch.no_grad():
        pred = model(data.x_test.float() * data.input_scale).argmax(1)
    assert float((pred == data.y_test).float().mean()) == pytest.approx(metrics["test_accuracy"])


@pytest.mark.parametrize("sparsity,group", [(0.5, 2), (0.75, 4), (0.75, 8)])
def test_sparse_group_keeps_n_of_every_g_and_is_optimal_per_group(sparsity, group):
    torch.manual_seed(0)
    kept = round((1 - sparsity) * group)
    w = torch.randn(6, 32)
    b, mask, direction = quantize_sparse(w, sparsity, group=group)
    assert torch.equal(mask.reshape(6, -1, group).sum(2), torch.full((6, 32 // group), kept * 1.0))
    # per group the kept ones are the N largest in the chosen direction; b their mean
    d = direction[:, None, None] * w.reshape(6, -1, group)
    kept_min = torch.where(mask.reshape(d.shape) > 0, d, torch.inf).amin(2)
    dropped_max = torch.where(mask.reshape(d.shape) > 0, -torch.inf, d).amax(2)
    assert (kept_min >= dropped_max).all()
    assert torch.allclose(b, (w * mask).sum(1) / mask.sum(1))
    # a convolution groups consecutive input channels at each kernel position (the IR's order)
    wc = torch.randn(4, 8, 3, 3)
    _, mc, _ = quantize_sparse(wc, sparsity, group=group)
    assert torch.equal(mc.permute(0, 2, 3, 1).reshape(4, -1, group).sum(2),
                       torch.full((4, 9 * 8 // group), kept * 1.0))


def test_sparse_group_reaches_the_layers_and_ungroupable_layers_stay_unstructured():
    args = build_parser().parse_args(["train", "--model", "cnn-digits", "--quantizer", "sparse",
                                      "--sparsity", "0.75", "--sparse-group", "4"])
    config = _config(args)
    assert config.sparse_group == 4
    model = parametrize_model(build_model("cnn-digits", (1, 8, 8), 10, 0.0), "dense", "learned",
                              quantizer="sparse", sparsity=0.75, sparse_group=4)
    layers = binary_layers(model)
    assert layers[0][1].quantizer is None  # the first layer stays binary
    assert all(layer.quantizer.group == 4 for _, layer in layers[1:])
    model = parametrize_model(build_model("cnn-digits", (1, 8, 8), 10, 0.0), "dense", "learned",
                              quantizer="sparse", sparsity=0.75, sparse_group=4,
                              sparse_first=True)
    groups = [layer.quantizer.group for _, layer in binary_layers(model)]
    assert groups[0] is None and all(g == 4 for g in groups[1:])  # 1 input channel: no groups


def test_sparse_leaves_the_first_layer_binary_unless_asked_and_old_runs_keep_theirs(tmp_path):
    def links(**kw):
        model = parametrize_model(build_model("sfc", (1, 28, 28), 10, 0.0), "dense", "learned",
                                  quantizer="sparse", sparsity=0.5, **kw)
        return [type(layer.parametrizations.weight[-1]).__name__
                for _, layer in binary_layers(model)]

    # {0, b} weights on unsigned pixels only add them up: the first layer stays binary
    assert links() == ["BinarizeWeight"] + ["SparseWeight"] * 3
    assert links(sparse_first=True) == ["SparseWeight"] * 4
    args = build_parser().parse_args(["train", "--quantizer", "sparse", "--sparsity", "0.5",
                                      "--sparse-first-layer"])
    assert _config(args).sparse_first is True
    with pytest.raises(ValueError, match=r"^--sparse-first-layer applies to --quantizer sparse"):
        TrainConfig(sparse_first=True)
    # a sparse run saved before the option existed sparsified every layer, and reloads so
    old = TrainConfig(quantizer="sparse", sparsity=0.5).to_dict()
    del old["sparse_first"], old["sparse_group"]
    assert TrainConfig.from_dict(old).sparse_first is True
    assert TrainConfig.from_dict({**old, "quantizer": "binary", "sparsity": None}).sparse_first \
        is False
