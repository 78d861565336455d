"""Sparse, composite and low-rank runs lowered to the IR: torch (eval) and golden agree exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bitfold.cli import main
from bitfold.compiler.golden import run_reference
from bitfold.compiler.packed import run_packed
from bitfold.train.layers import binary_layers
from bitfold.train.to_ir import nchw_to_ir, torch_predictions, torch_trace
from bitfold.train.trainer import TrainConfig, make_model, train

from .test_to_ir import compiled, digits, frames  # noqa: F401 - digits is a fixture

QUANT = {
    "sparse50": dict(quantizer="sparse", sparsity=0.5, sparse_first=True),
    "sparse75": dict(quantizer="sparse", sparsity=0.75, sparse_first=True),
    "sparse75-1:4": dict(quantizer="sparse", sparsity=0.75, sparse_group=4),
    "composite2": dict(quantizer="composite", bases=2),
    "composite3": dict(quantizer="composite", bases=3),
    "lowrank": dict(quantizer="composite", bases=2, low_rank=6),
    "domain": dict(quantizer="domain"),
}
KINDS = {"sparse50": "Sparse", "sparse75": "Sparse", "sparse75-1:4": "Sparse",
         "composite2": "Composite",
         "composite3": "Composite", "lowrank": "Binary", "domain": "Domain"}


def randomized(name: str, data, quant: dict, seed: int = 0) -> torch.nn.Module:
    """An untrained model with real batch-norm statistics, negative alphas and gammas."""
    torch.manual_seed(seed)
    model = make_model(TrainConfig(model=name, dataset="digits", param="dense", alpha="learned",
                                   **quant), data)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in binary_layers(model):
            alpha = layer.quantizer.scale.alpha if layer.quantizer is not None else \
                layer.binarizer.alpha  # a sparse network's first layer stays binary
            sign = torch.where(torch.rand(alpha.shape, generator=g) < 1 / 3, -1.0, 1.0)
            alpha.copy_(sign * (0.2 + torch.rand(alpha.shape, generator=g)))
            if hasattr(layer.quantizer, "ratio"):
                layer.quantizer.ratio.copy_(torch.rand(layer.quantizer.ratio.shape, generator=g))
        bns = [m for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.momentum = 1.0
        model.train()
        model(data.x_train[:256].float() * data.input_scale)
        for bn in bns:
            bn.momentum = 0.1
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
            bn.bias.copy_(0.3 * torch.randn(bn.bias.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("quant", list(QUANT))
@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
def test_quantized_networks_fold_exactly(digits, name, quant) -> None:  # noqa: F811
    model = randomized(name, digits, QUANT[quant])
    lowered, graph, _ = compiled(model, digits)
    kinds = {n.kind for n in graph.nodes}
    assert any(k.startswith(KINDS[quant]) for k in kinds), kinds
    if quant == "lowrank" and name == "mlp-digits":  # hidden dense layers: two binary layers
        assert sum(n.name.endswith("_inner") for n in graph.nodes) == 3
    x_int = frames(digits)
    x = nchw_to_ir(x_int.numpy())
    golden = run_packed(graph, x)
    assert np.array_equal(golden["class"], run_reference(graph, x)["class"])
    assert np.array_equal(run_reference(lowered, x[:64])["class"], golden["class"][:64])
    # torch float32 eval predicts the same classes
    assert np.array_equal(torch_predictions(model, x_int, digits.input_scale), golden["class"])
    # torch float64 eval gives the same bit in every hidden layer: the fold is exact
    _, bn = torch_trace(model.double(), x_int, digits.input_scale, dtype=torch.float64)
    thresholds = [n for n in graph.nodes if n.kind == "Threshold"]
    assert len(thresholds) == len(bn) - 1
    for node, key in zip(thresholds, bn, strict=False):
        torch_bits = (bn[key] >= 0).astype(np.uint8)
        if torch_bits.ndim == 4:
            torch_bits = torch_bits.transpose(0, 2, 3, 1)
        assert np.array_equal(torch_bits, golden[node.name]), node.name


@pytest.mark.parametrize("quant", ["sparse50", "composite2", "lowrank"])
def test_cli_compile_and_golden_on_quantized_runs(tmp_path, quant, capsys) -> None:
    run, build = tmp_path / "run", tmp_path / "build"
    train(TrainConfig(epochs=2, **QUANT[quant]), run, progress=False)
    assert main(["compile", str(run), "--out", str(build)]) == 0
    assert main(["golden", str(build)]) == 0
    report = json.loads((build / "golden.json").read_text())
    assert report["agreement"] == 1.0 and report["reference_check"]["identical"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
def test_sparse_group_training_compiles_to_the_group_layout(digits, name) -> None:  # noqa: F811
    from bitfold.compiler.cost import layouts, mvu_layers

    model = randomized(name, digits, QUANT["sparse75-1:4"])
    _, graph, _ = compiled(model, digits)
    layers = mvu_layers(graph)
    grouped = [layer.quantizer is not None and layer.quantizer.group is not None
               for _, layer in binary_layers(model)]
    # the first layer stays binary; every other one (also the dense one after the flatten)
    # is 1:4 in hardware order
    assert grouped == [False] + [True] * (len(layers) - 1)
    assert layers[0].scheme == "binary"
    for layer, g in zip(layers, grouped, strict=True):
        if g:  # every 4 consecutive hardware columns keep exactly 1: half a bit a weight
            assert (layer.group, layer.group_kept, layer.group_ragged) == (4, 1, False)
            assert "group" in layouts(layer)
