"""Binarized input (``--input-bits 1``): options, the forward pass, config.json, compile + golden."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bitfold.cli import build_parser, main
from bitfold.compiler.golden import run_reference
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold
from bitfold.pipeline import _import_argv, _train_argv
from bitfold.train.data import load_dataset
from bitfold.train.export import export_network
from bitfold.train.layers import binary_layers
from bitfold.train.to_ir import build_test_set, lower, nchw_to_ir, torch_predictions
from bitfold.train.trainer import TrainConfig, input_threshold, make_model
from bitfold.verbs import _config

from .helpers import mix_alpha_signs

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def binarized(name: str, data, seed: int = 0, **options) -> torch.nn.Module:
    """An untrained binarized-input model with real batch statistics and mixed-sign alphas."""
    torch.manual_seed(seed)
    model = make_model(TrainConfig(model=name, dataset=data.name, param="dense",
                                   alpha="learned", input_bits=1, **options), data)
    g = torch.Generator().manual_seed(seed)
    mix_alpha_signs(model, g)
    with torch.no_grad():
        model.train()
        model(data.x_train[:256].float() * data.input_scale)  # batch statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def frames(data, n_random: int = 300) -> torch.Tensor:
    """The test set and random frames (every pixel value 0..16, the threshold's two sides)."""
    g = torch.Generator().manual_seed(1)
    noise = torch.randint(0, 17, (n_random, *data.input_shape), generator=g, dtype=torch.uint8)
    return torch.cat([data.x_test, noise])


# --------------------------------------------------------------------------- options


def test_train_and_run_parse_the_input_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--input-bits", "1", "--input-threshold", "5"])
    config = _config(args)
    assert (config.input_bits, config.input_threshold) == (1, 5)
    default = _config(parser.parse_args(["train"]))
    assert (default.input_bits, default.input_threshold) == (None, None)
    run = parser.parse_args(["run", "--input-bits", "1", "--input-threshold", "5"])
    argv = _train_argv(run)
    assert argv[argv.index("--input-bits") + 1] == "1"
    assert argv[argv.index("--input-threshold") + 1] == "5"
    assert "--input-bits" not in _train_argv(parser.parse_args(["run"]))
    imported = parser.parse_args(["run", "--import", "m.onnx"])  # the import's pixels: 8 bits
    argv = _import_argv(imported, "b")
    assert argv[argv.index("--input-bits") + 1] == "8"


@pytest.mark.parametrize(("options", "message"), [
    (["--input-bits", "3"], r"--input-bits 3: digits has 5-bit pixels; give 1 \(binarized "
                            r"input\) or 5 \(the pixels as they are, the default\)"),
    (["--input-threshold", "8"], r"--input-threshold applies to --input-bits 1 \(binarized "
                                 r"input\) only"),
    (["--input-bits", "1", "--input-threshold", "40"], r"--input-threshold 40: the pixels of "
                                                       r"digits are 0\.\.31; give a threshold "
                                                       r"in 1\.\.31"),
    (["--input-bits", "1", "--input-threshold", "0"], r"--input-threshold must be at least 1, "
                                                      r"not 0"),
])
def test_bad_input_options_are_one_line_and_write_nothing(tmp_path, options, message) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([BIN / "bitfold", "train", "--epochs", "1", "--out", str(out),
                           *options], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"bitfold train: error: " + message, lines[0]), lines[0]
    assert not out.exists()


def test_default_threshold_is_half_the_full_scale(digits) -> None:
    one = TrainConfig(input_bits=1)
    assert input_threshold(one, digits) == 8  # pixels 0..16
    mnist_like = replace(digits, input_bits=8, input_scale=1 / 255)
    assert input_threshold(one, mnist_like) == 128
    five_bit = replace(digits, input_bits=5, input_scale=1 / 31)
    assert input_threshold(one, five_bit) == 16
    assert input_threshold(TrainConfig(), digits) is None
    assert input_threshold(TrainConfig(input_bits=5), digits) is None  # the pixels as they are
    assert input_threshold(TrainConfig(input_bits=1, input_threshold=3), digits) == 3


# --------------------------------------------------------------------------- forward pass


@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
def test_forward_sees_only_which_side_of_the_threshold(digits, name) -> None:
    model = binarized(name, digits, input_threshold=6)
    first = binary_layers(model)[0][1]
    assert first.input_mode == "binary"
    x = digits.x_test[:64]
    scaled = x.float() * digits.input_scale
    assert torch.equal(model.input_binarizer(scaled), torch.where(x >= 6, 1.0, -1.0))
    # any pixels on the same sides of 6 give the same outputs, in eval and in training mode
    same = torch.where(x >= 6, torch.full_like(x, 16), torch.zeros_like(x))
    for mode in (False, True):
        model.train(mode)
        assert torch.equal(model(scaled), model(same.float() * digits.input_scale))
    model.eval()
    assert not torch.equal(model(scaled), model((x + 1).float() * digits.input_scale))


def test_multibit_default_takes_the_pixels_as_they_are(digits) -> None:
    torch.manual_seed(0)
    model = make_model(TrainConfig(param="dense"), digits).eval()
    assert model.input_binarizer is None
    assert binary_layers(model)[0][1].input_mode == "multibit"
    x = digits.x_test[:64]
    same = torch.where(x >= 8, torch.full_like(x, 16), torch.zeros_like(x))
    assert not torch.equal(model(x.float() * digits.input_scale),
                           model(same.float() * digits.input_scale))


def test_binarizer_refuses_models_without_a_binary_body(digits) -> None:
    with pytest.raises(ValueError, match=r"^--input-bits 1 \(binarized input\) needs a "
                                         r"feed-forward binary model .*not 'resnet18'$"):
        make_model(TrainConfig(model="resnet18", param="dense", input_bits=1), digits)


# --------------------------------------------------------------------------- config.json


def test_config_round_trip_and_old_configs() -> None:
    config = TrainConfig(input_bits=1, input_threshold=7)
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["input_bits"] == 1 and saved["input_threshold"] == 7
    assert TrainConfig.from_dict(saved) == config
    old = TrainConfig().to_dict()  # a run of the default: the keys are absent, as before them
    assert "input_bits" not in old and "input_threshold" not in old
    assert TrainConfig.from_dict(old) == TrainConfig()
    assert TrainConfig.from_dict(old).input_bits is None


# --------------------------------------------------------------------------- IR


@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
def test_lowered_with_a_bipolar_input_and_exact(digits, name) -> None:
    model = binarized(name, digits)
    net = export_network(model, digits.input_bits, digits.input_scale, name="m")
    assert net.input_threshold == 8
    graph = fold(lower(net)[0])
    t = graph.types["input"]
    assert (t.bits, t.signed) == (1, True)
    first = graph.nodes[1]
    assert first.kind in ("BinaryDense", "BinaryConv2d") and graph.types[first.name].bits <= 8
    x_int = frames(digits)
    x = (nchw_to_ir(x_int.numpy()) >= 8).astype(np.uint8)  # the IR's bits
    golden = run_packed(graph, x)
    assert np.array_equal(golden["class"], run_reference(graph, x)["class"])
    assert np.array_equal(torch_predictions(model, x_int, digits.input_scale), golden["class"])


@pytest.fixture(scope="module")
def trained_build(tmp_path_factory):
    """A binarized-input mlp-digits trained two epochs, compiled, with golden.json."""
    root = tmp_path_factory.mktemp("binarized")
    run, build = root / "run", root / "build"
    assert main(["train", "--param", "dense", "--epochs", "2", "--input-bits", "1", "--quiet",
                 "--out", str(run)]) == 0
    assert main(["compile", str(run), "--out", str(build)]) == 0
    assert main(["golden", str(build), "--reference-frames", "64"]) == 0
    return run, build


def test_compile_and_golden_agree_on_a_trained_run(trained_build, digits) -> None:
    run, build = trained_build
    assert json.loads((run / "config.json").read_text())["input_bits"] == 1
    report = json.loads((build / "golden.json").read_text())
    assert report["frames"] == len(digits.x_test)
    assert report["agreement"] == 1.0 and report["accuracy"] == report["torch_accuracy"]
    assert report["accuracy"] > 0.5
    assert report["reference_check"] == {"frames": 64, "identical": True}
    encoding = json.loads((build / "compile.json").read_text())["input_encoding"]
    assert encoding["summary"] == "pixel >= 8" and encoding["bits"] == 1


def test_every_stage_reads_the_test_frames_as_bits(trained_build, digits) -> None:
    from bitfold.bench import cpu_baselines
    from bitfold.board_verbs import _selftest_frames
    from bitfold.compiler.serialize import load_graph
    from bitfold.sim.runner import dataset_frames

    _, build = trained_build
    bits = (nchw_to_ir(digits.x_test.numpy()) >= 8).astype(np.uint8)
    assert np.array_equal(nchw_to_ir(build_test_set(build).x_test.numpy()), bits)
    raw = build_test_set(build, encoded=False).x_test
    assert torch.equal(raw, digits.x_test)
    x, labels, name = dataset_frames(build, 50)  # bitfold simulate
    assert np.array_equal(x, bits[:50]) and name == "digits"
    x, classes = _selftest_frames(build, None, None, 16)  # bitfold build --selftest
    assert np.array_equal(x, bits[:16])
    golden = run_reference(load_graph(build), bits[:16])["class"]
    assert np.array_equal(classes, golden)
    result = cpu_baselines(build, frames=64, batches=(8,), min_s=0.0, repeats=1, threads=1)
    assert result["torch_golden_agreement"] == 1.0  # bitfold bench: torch on pixels, golden on bits


def test_mnist_sfc_binarized_at_128_is_exact(mnist_dir) -> None:
    """8-bit pixels: the default threshold 128, torch == golden on 2,000 MNIST test frames."""
    data = load_dataset("mnist", mnist_dir)
    data = replace(data, x_train=data.x_train[:512], y_train=data.y_train[:512])
    model = binarized("sfc", data)
    assert model.input_binarizer.threshold == 128
    graph = fold(lower(export_network(model, data.input_bits, data.input_scale, "sfc"))[0])
    x_int = data.x_test[:2000]
    x = (nchw_to_ir(x_int.numpy()) >= 128).astype(np.uint8)
    classes = run_packed(graph, x)["class"]
    assert np.array_equal(torch_predictions(model, x_int, data.input_scale), classes)
    assert len(np.unique(classes)) > 3  # a real test: the frames do not all get one class


def test_report_names_the_binarized_input() -> None:
    from bitfold.report import _input
    from bitfold.train.to_ir import binarized_input_encoding

    compiled = {"input_encoding": binarized_input_encoding(5, 8)}
    assert _input({"config": {"model": "m"}, "compile": compiled}) == " / input pixel >= 8"
    assert _input({"config": {"model": "m"}, "compile": {"model": "m"}}) == ""


def test_export_of_a_binarized_run_checks_on_bits(trained_build, tmp_path, capsys) -> None:
    pytest.importorskip("qonnx")
    run, _ = trained_build
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--frames", "40"]) == 0
    assert "== golden on 40 of 40 digits test frames" in capsys.readouterr().out
