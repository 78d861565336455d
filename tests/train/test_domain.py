"""The general binary domain {a, b} (``--quantizer domain``): trainer side and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bitfold.cli import main
from bitfold.train.export import quantized_weight
from bitfold.train.layers import binary_layers, parametrize_model
from bitfold.train.models import build_model
from bitfold.train.quantizers import FRAC_BITS, DomainWeight, quantize_domain
from bitfold.train.trainer import TrainConfig


def _model(alpha: str, param: str = "dense", name: str = "tfc") -> torch.nn.Module:
    torch.manual_seed(0)
    return parametrize_model(build_model(name, (1, 8, 8), 10), param, alpha, None,
                             quantizer="domain")


def test_every_layer_is_domain_quantized_the_first_too():
    model = _model("analytic")
    links = [layer.quantizer for _, layer in binary_layers(model)]
    assert links and all(isinstance(link, DomainWeight) for link in links)


@pytest.mark.parametrize("alpha", ["none", "analytic", "learned"])
@pytest.mark.parametrize("param", ["dense", "tucker"])
def test_forward_is_two_values_per_row_as_the_compiler_represents_them(alpha, param):
    model = _model(alpha, param)
    for _, layer in binary_layers(model):
        w = layer.weight.detach().double()
        fields = quantized_weight(layer)
        assert fields["scheme"] == "domain"
        s, d, m = fields["weight"], fields["alpha"], fields["offset"]
        assert set(np.unique(s)) <= {-1, 1} and m.dtype == np.int64
        assert np.abs(m).max() <= DomainWeight.MAX_OFFSET
        # exactly d (s + m / 2^F), what DomainDense represents
        shape = (-1,) + (1,) * (s.ndim - 1)
        expected = d.reshape(shape) * (s + m.reshape(shape) / (1 << FRAC_BITS))
        assert np.allclose(w.numpy(), expected, rtol=1e-6, atol=0)
        rows = w.reshape(w.shape[0], -1)
        assert all(len(torch.unique(r)) <= 2 for r in rows)
        if alpha == "none":
            assert np.all(d == 1)


def test_analytic_forward_is_the_closed_form_optimum_up_to_the_offset_rounding():
    torch.manual_seed(1)
    latent = torch.randn(16, 40) * 0.1 + torch.linspace(-0.3, 0.3, 16)[:, None]
    link = DomainWeight("analytic", latent)
    a, b, upper = quantize_domain(latent)
    q = link(latent).detach()
    best = torch.where(upper > 0, b[:, None], a[:, None])
    gap = (b - a)[:, None] / 2
    # the centre is rounded to 1/2^F of the half-gap: every value within gap / 2^(F+1)
    assert torch.all((q - best).abs() <= gap / (1 << (FRAC_BITS + 1)) * (1 + 1e-5))
    # ... and the error is near the optimum two-level fit's
    err = ((q - latent) ** 2).sum(dim=1)
    opt = ((best - latent) ** 2).sum(dim=1)
    assert torch.all(err <= opt * 1.01 + 1e-9)
    # no two-level quantization with another split does better than the closed form
    for r in range(4):
        row = latent[r]
        for k in range(1, row.numel()):
            srt = row.sort().values
            lo, hi = srt[:k].mean(), srt[k:].mean()
            alt = ((srt[:k] - lo) ** 2).sum() + ((srt[k:] - hi) ** 2).sum()
            assert opt[r] <= alt + 1e-6


def test_constant_rows_stay_finite():
    latent = torch.full((3, 5), 0.25)
    q = DomainWeight("analytic", latent)(latent)
    assert torch.isfinite(q).all()
    q1 = DomainWeight("learned", torch.randn(4, 1))(torch.randn(4, 1))
    assert torch.isfinite(q1).all()


@pytest.mark.parametrize("alpha", ["analytic", "learned"])
def test_gradients_reach_the_latent_weight_and_the_scale(alpha):
    torch.manual_seed(0)
    latent = torch.nn.Parameter(torch.randn(8, 20) * 0.2 + 0.1)
    link = DomainWeight(alpha, latent.detach())
    x = torch.randn(5, 20)
    loss = (x @ link(latent).t()).pow(2).sum()
    loss.backward()
    assert latent.grad is not None and torch.isfinite(latent.grad).all()
    assert latent.grad.abs().sum() > 0
    if alpha == "learned":
        assert link.scale.alpha.grad is not None and link.scale.alpha.grad.abs().sum() > 0


def test_domain_takes_no_sparsity_bases_or_low_rank():
    for options, flag in ((dict(sparsity=0.5), "--sparsity"), (dict(bases=2), "--bases"),
                          (dict(low_rank=4), "--low-rank")):
        with pytest.raises(ValueError, match=f"^{flag} applies to"):
            TrainConfig(quantizer="domain", **options)


def test_cli_domain_with_sparsity_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--quantizer", "domain", "--sparsity", "0.5", "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bitfold train: error: --sparsity applies to --quantizer sparse only"]
    assert not out.exists()


def test_cli_train_compile_golden_domain(tmp_path):
    run, build = tmp_path / "run", tmp_path / "build"
    assert main(["train", "--quantizer", "domain", "--epochs", "2", "--out", str(run),
                 "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["quantizer"] == "domain"
    assert main(["compile", str(run), "--out", str(build)]) == 0
    graph = json.loads((build / "graph.json").read_text())
    assert "domain" in {n["encoding"]["kind"] for n in graph["nodes"] if n["op"] == "Layer"}
    assert main(["golden", str(build)]) == 0
    report = json.loads((build / "golden.json").read_text())
    assert report["agreement"] == 1.0 and report["reference_check"]["identical"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"])
