"""From torch to the IR: lowering, exact folding (negative alphas included), the CLI verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitfold.cli import main
from bitfold.compiler.golden import run_reference
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold
from bitfold.train.data import load_dataset
from bitfold.train.export import export_network
from bitfold.train.layers import binary_layers
from bitfold.train.to_ir import (
    explain_disagreements,
    lower,
    nchw_to_ir,
    torch_predictions,
    torch_trace,
)
from bitfold.train.trainer import SCHEMA, TrainConfig, make_model

from .helpers import mix_alpha_signs

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def randomized(name: str, data, seed: int = 0) -> torch.nn.Module:
    """An untrained model with real batch-norm statistics and hostile alphas and gammas.

    A third of the alphas are negative and one is zero; gammas have mixed signs and one is
    zero; the running statistics come from a batch of real inputs, so thresholds sit where
    the accumulators are.
    """
    torch.manual_seed(seed)
    config = TrainConfig(model=name, dataset="digits", param="holistic-tucker", alpha="learned")
    model = make_model(config, data)
    g = torch.Generator().manual_seed(seed)
    mix_alpha_signs(model, g, zero_first=True)
    with torch.no_grad():
        bns = [m for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.momentum = 1.0
        model.train()
        model(data.x_train[:256].float() * data.input_scale)
        for bn in bns:
            bn.momentum = 0.1
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
            bn.weight[1] = 0.0
            bn.bias.copy_(0.3 * torch.randn(bn.bias.shape, generator=g))
    return model.eval()


def compiled(model, data):
    net = export_network(model, data.input_bits, data.input_scale, name="m")
    lowered, sources = lower(net)
    return lowered, fold(lowered), sources


def frames(data, n_random: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 17, (n_random, *data.input_shape), generator=g, dtype=torch.uint8)
    return torch.cat([data.x_test, noise])


@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
def test_negative_alphas_fold_exactly(digits, name) -> None:
    model = randomized(name, digits)
    lowered, graph, sources = compiled(model, digits)
    x_int = frames(digits)
    x = nchw_to_ir(x_int.numpy())
    golden = run_packed(graph, x)
    assert np.array_equal(golden["class"], run_reference(graph, x)["class"])
    # torch float32 eval: same predictions
    assert np.array_equal(torch_predictions(model, x_int, digits.input_scale), golden["class"])
    # torch float64 eval: the same bit in every hidden layer (float32 rounding aside, the fold
    # is exact), so the thresholds are exact for every channel, negative slopes included
    model = model.double()
    _, bn = torch_trace(model, x_int, digits.input_scale, dtype=torch.float64)
    bn_names = [k for k in bn]
    thresholds = [n for n in graph.nodes if n.kind == "Threshold"]
    assert len(thresholds) == len(bn_names) - 1
    for node, key in zip(thresholds, bn_names, strict=False):
        torch_bits = (bn[key] >= 0).astype(np.uint8)
        if torch_bits.ndim == 4:
            torch_bits = torch_bits.transpose(0, 2, 3, 1)
        assert np.array_equal(torch_bits, golden[node.name]), node.name
    # rows are negated exactly where alpha * gamma < 0
    negative = 0
    for node in graph.nodes:
        if node.kind in ("BinaryDense", "BinaryConv2d") and f"{node.name}_act" in sources:
            slope = lowered.node(f"{node.name}_act").slope
            flipped = (node.weight != lowered.node(node.name).weight).reshape(len(slope), -1)
            assert np.array_equal(flipped.all(axis=1), slope < 0)
            assert np.array_equal(flipped.any(axis=1), slope < 0)
            negative += int((slope < 0).sum())
    assert negative > 10


def test_dense_after_conv_reads_channels_last(digits) -> None:
    model = randomized("cnn-digits", digits, seed=3)
    lowered, graph, _ = compiled(model, digits)
    fc = lowered.node("fc0")
    torch_w = (export_network(model, 5, 1 / 16).steps[-2].weight > 0).astype(np.uint8)
    # torch column c*H*W + h*W + w is IR column h*W*C + w*C + c (C=32, H=W=2)
    c, h, w = 5, 1, 0
    assert np.array_equal(fc.weight[:, h * 2 * 32 + w * 32 + c], torch_w[:, c * 4 + h * 2 + w])


def fake_run(path: Path, name: str, data) -> Path:
    """A run folder as ``bitfold train`` writes it, holding a randomized model.

    ResNet-18 is only built, with dense latent weights (factorizing it takes minutes).
    """
    if name == "resnet18":
        config = TrainConfig(model=name, dataset="digits", param="dense")
        model = make_model(config, data)
    else:
        config = TrainConfig(model=name, dataset="digits", param="holistic-tucker",
                             alpha="learned")
        model = randomized(name, data)
    path.mkdir(parents=True)
    torch.save({"schema": SCHEMA, "config": config.to_dict(), "model": model.state_dict()},
               path / "checkpoint.pt")
    return path


def test_cli_compile_golden_fold(tmp_path, digits, capsys) -> None:
    run = fake_run(tmp_path / "run", "cnn-digits", digits)
    build = tmp_path / "build"
    assert main(["compile", str(run), "--out", str(build)]) == 0
    assert {p.name for p in build.iterdir()} == {"graph.json", "tensors.npz", "compile.json"}
    assert main(["golden", str(build), "--dump", "4", "--reference-frames", "32"]) == 0
    report = json.loads((build / "golden.json").read_text())
    assert report["schema"] == 1 and report["frames"] == len(digits.x_test)
    assert report["agreement"] == 1.0 and report["disagreements"] == []
    assert report["reference_check"] == {"frames": 32, "identical": True}
    dump = np.load(build / "golden_dump.npz", allow_pickle=False)
    assert dump["conv0"].shape == (4, 8, 8, 32) and dump["class"].shape == (4,)
    assert main(["fold", str(build), "--target-fps", "50000", "--clock-mhz", "50"]) == 0
    folding = json.loads((build / "folding.json").read_text())
    assert folding["totals"]["fps"] >= 50000 and folding["clock_mhz"] == 50
    assert "cycles/frame" in capsys.readouterr().out


def test_cli_refuses_residual_networks_naming_the_layer(tmp_path, digits) -> None:
    run = fake_run(tmp_path / "run", "resnet18", digits)
    out = subprocess.run([BIN / "bitfold", "compile", str(run), "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bitfold compile: error: resnet18 (ResNet18) cannot be lowered to "
                               "hardware yet: layer stem.0 is a real-valued Conv2d and block "
                               "blocks.0 adds a real-valued residual shortcut")


def test_cli_errors_are_one_line(tmp_path) -> None:
    out = subprocess.run([BIN / "bitfold", "golden", str(tmp_path)], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"bitfold golden: error: {tmp_path}/graph.json: not found; "
                                  f"run `bitfold compile RUN --out {tmp_path}`")


@pytest.mark.slow
@pytest.mark.ci
def test_trained_mlp_agrees_with_golden(tmp_path) -> None:
    run, build = tmp_path / "run", tmp_path / "build"
    for args in (["train", "--model", "mlp-digits", "--epochs", "3", "--out", str(run),
                  "--quiet"], ["compile", str(run), "--out", str(build)], ["golden", str(build)]):
        assert main(args) == 0
    report = json.loads((build / "golden.json").read_text())
    assert report["agreement"] >= 0.999
    assert abs(report["accuracy"] - report["torch_accuracy"]) <= 0.001


def test_exact_ties_are_settled_like_torch_sign(digits) -> None:
    """Hidden pre-activations that are exactly 0 in float32 give +1 in torch and in golden."""
    model = randomized("mlp-digits", digits, seed=5)
    layers = [m for _, m in binary_layers(model)]
    bns = [m for m in model.body if isinstance(m, torch.nn.BatchNorm1d)]
    with torch.no_grad():
        for layer, bn in list(zip(layers, bns, strict=True))[1:-1]:  # binary-input hidden layers
            alpha = layer.binarizer.alpha
            alpha.copy_(torch.tensor([0.5, -0.25, 0.75, -1.0]).repeat(len(alpha) // 4))
            k = 2 * torch.randint(-3, 4, alpha.shape)  # dot has the parity of the fan-in (128)
            bn.eps = 0.0
            bn.running_var.fill_(1.0)
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            bn.running_mean.copy_(alpha * k)  # pre-activation alpha * (dot - k): 0 at dot == k
    _, graph, _ = compiled(model, digits)
    x_int = frames(digits)
    golden = run_packed(graph, nchw_to_ir(x_int.numpy()))
    preds, bn_out = torch_trace(model, x_int, digits.input_scale)
    ties = 0
    for node, key in zip(["fc1_act", "fc2_act"], ["body.4", "body.6"], strict=True):
        assert np.array_equal((bn_out[key] >= 0).astype(np.uint8), golden[node])
        ties += int((bn_out[key] == 0).sum())
    assert ties > 100
    assert np.array_equal(preds, golden["class"])


def test_disagreements_are_explained(digits) -> None:
    model = randomized("cnn-digits", digits)
    _, graph, sources = compiled(model, digits)
    x_int = digits.x_test[:2]
    golden = run_packed(graph, nchw_to_ir(x_int.numpy()))
    # pretend the golden model flipped one bit of conv1 on frame 0 and the class on frame 1
    golden["conv1_act"] = golden["conv1_act"].copy()
    golden["conv1_act"][0, 2, 3, 7] ^= 1
    golden["class"] = golden["class"].copy()
    golden["class"][1] = (golden["class"][1] + 1) % 10
    notes = explain_disagreements(model, graph, sources, x_int, digits.input_scale, golden)
    assert notes[0]["first_difference"] == "conv1_act" and notes[0]["flipped_count"] == 1
    assert notes[0]["flipped"][0]["index"] == [2, 3, 7]
    _, bn = torch_trace(model, x_int, digits.input_scale)
    assert notes[0]["flipped"][0]["torch_value"] == pytest.approx(float(bn["body.3"][0, 7, 2, 3]))
    assert notes[1]["first_difference"] == "scores" and notes[1]["torch_gap"] >= 0
    assert [t["class"] for t in notes[1]["torch_top2"]][0] == notes[1]["torch"]


@pytest.mark.slow
def test_trained_sfc_on_mnist_agrees_with_golden(tmp_path) -> None:
    data_dir = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
    if not data_dir.is_dir():
        pytest.skip(f"{data_dir} not present")
    run, build = tmp_path / "run", tmp_path / "build"
    for args in (["train", "--model", "sfc", "--dataset", "mnist", "--data-dir", str(data_dir),
                  "--epochs", "1", "--batch-size", "256", "--out", str(run), "--quiet"],
                 ["compile", str(run), "--out", str(build)], ["golden", str(build)]):
        assert main(args) == 0
    report = json.loads((build / "golden.json").read_text())
    assert report["frames"] == 10000 and report["agreement"] >= 0.999
