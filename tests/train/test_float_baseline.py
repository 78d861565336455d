"""The float baseline, ``--quantizer float``: the binary architecture with real weights and hard-tanh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from bitfold.artifacts import ArtifactError
from bitfold.bench import float_twin
from bitfold.cli import main
from bitfold.train.data import load_dataset
from bitfold.train.export import ExportError, export_network
from bitfold.train.layers import BinaryLinear, binary_layers, parametrize_model
from bitfold.train.models import BinaryNet, build_model
from bitfold.train.to_ir import lower_run
from bitfold.train.trainer import TrainConfig, load_run, make_model, train


def _tiny_net() -> BinaryNet:
    """4 multi-bit inputs -> 3 -> 2 scores, with fixed weights and batch-norm statistics."""
    body = nn.Sequential(BinaryLinear(4, 3, "multibit"), nn.BatchNorm1d(3),
                         BinaryLinear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        body[0].weight.copy_(torch.tensor([[0.5, -0.25, 0.125, 0.0],
                                           [-0.3, 0.2, 0.1, -0.4],
                                           [0.05, 0.05, -0.6, 0.3]]))
        body[2].weight.copy_(torch.tensor([[0.7, -0.2, 0.4], [-0.1, 0.9, 0.3]]))
        for bn, mean, var in ((body[1], [0.1, -0.2, 0.0], [0.25, 1.0, 0.5]),
                              (body[3], [0.0, 0.3], [2.0, 0.5])):
            bn.running_mean.copy_(torch.tensor(mean))
            bn.running_var.copy_(torch.tensor(var))
            bn.weight.copy_(torch.tensor([1.5, 0.5, 2.0][:len(mean)]))
            bn.bias.copy_(torch.tensor([0.1, -0.1, 0.2][:len(mean)]))
    return BinaryNet(body, (4,), 2).eval()


X = torch.tensor([[1.0, 0.0, 0.5, 0.25], [0.0, 1.0, 1.0, 0.0], [0.75, 0.5, 0.0, 1.0]])


def _hand_forward(net: BinaryNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The float network by hand: ``x W1^T``, BN, hard-tanh (a clamp), ``W2^T``, BN."""
    def bn(y, m):
        return (y - m.running_mean) / torch.sqrt(m.running_var + m.eps) * m.weight + m.bias

    body = net.body
    hidden = torch.clamp(bn(x @ body[0].real_weight().T, body[1]), -1.0, 1.0)
    return bn(hidden @ body[2].real_weight().T, body[3]), hidden


@pytest.mark.parametrize("param", ["dense", "svd"])
def test_float_forward_uses_real_weights_and_hardtanh(param):
    torch.manual_seed(0)
    latent = _tiny_net().state_dict()
    floating = parametrize_model(_tiny_net(), param, "learned", quantizer="float").eval()
    binary = parametrize_model(_tiny_net(), param, "learned", quantizer="binary").eval()
    with torch.no_grad():
        out = floating(X)
        expected, hidden = _hand_forward(floating, X)
        # the weights are the real reconstruction: the hand-set values themselves
        assert torch.allclose(floating.body[0].weight, latent["body.0.weight"], atol=1e-6)
        assert torch.allclose(out, expected, atol=1e-6)
        # the hidden activations are hard-tanh'ed, not signs: values strictly inside (-1, 1)
        inner = (hidden.abs() < 1).sum()
        assert inner > 0 and (hidden.abs() == 1).sum() > 0
        assert not torch.allclose(out, binary(X), atol=1e-3)
    for _, layer in binary_layers(floating):
        assert layer.binarizer is None and layer.quantizer is None and layer.is_float
    assert "activation=hardtanh" in repr(floating.body[2])
    assert "activation" not in repr(floating.body[0])  # the multi-bit input is not activated


def test_binarize_input_is_hardtanh_with_its_gradient_for_float_layers():
    floating = parametrize_model(_tiny_net(), "dense", quantizer="float").body[2]
    binary = parametrize_model(_tiny_net(), "dense", quantizer="binary").body[2]
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 0.9, 3.0], requires_grad=True)
    y = floating.binarize_input(x)
    assert y.tolist() == pytest.approx([-1.0, -0.5, 0.0, 0.3, 0.9, 1.0])
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert binary.binarize_input(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("param", ["tucker", "holistic-tucker", "cp"])
def test_float_keeps_the_factorization_and_trains_its_factors(param):
    torch.manual_seed(0)
    model = parametrize_model(build_model("tfc", (1, 8, 8), 10), param, "learned", None,
                              quantizer="float")
    for _, layer in binary_layers(model):
        chain = layer.parametrizations.weight
        assert type(chain[-1]).__name__ != "BinarizeWeight"
        assert torch.equal(layer.real_weight(), layer.weight)  # no binarization after the factors
        assert len(torch.unique(layer.weight)) > 2
    model(torch.rand(8, 1, 8, 8)).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_float_twin_is_the_float_model_of_a_binary_one():
    data = load_dataset("digits")
    config = TrainConfig(model="mlp-digits", param="svd", quantizer="binary")
    torch.manual_seed(0)
    binary = make_model(config, data).eval()
    twin = float_twin(binary, config, data)
    floating = make_model(TrainConfig(model="mlp-digits", param="svd", quantizer="float"),
                          data).eval()
    floating.load_state_dict(binary.state_dict(), strict=False)  # same factors and batch norms
    x = data.x_test[:32].float() * data.input_scale
    with torch.no_grad():
        assert torch.allclose(twin(x), floating(x), atol=1e-5)
    assert all(layer.is_float for _, layer in binary_layers(twin))


@pytest.mark.parametrize(("options", "message"), [
    (dict(sparsity=0.5), r"^--sparsity applies to --quantizer sparse only"),
    (dict(bases=2), r"^--bases applies to --quantizer composite only"),
    (dict(low_rank=4), r"^--low-rank applies to --quantizer composite only"),
])
def test_float_refuses_quantizer_options(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(quantizer="float", **options)


def test_cli_float_with_sparsity_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--quantizer", "float", "--sparsity", "0.5", "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bitfold train: error: --sparsity applies to --quantizer sparse only"]
    assert not out.exists()


def test_cli_run_refuses_float_up_front(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--quantizer", "float", "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bitfold run: error: --quantizer float trains the float baseline, "
                             "which has no binary form to compile")
    assert not out.exists()


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    """mlp-digits as the float baseline, 1 epoch on the embedded digits (a few seconds)."""
    out = tmp_path_factory.mktemp("float") / "run"
    config = TrainConfig(model="mlp-digits", dataset="digits", param="dense", quantizer="float",
                         epochs=1, batch_size=64, lr=1e-2)
    metrics = train(config, out, progress=False)
    return out, metrics


def test_float_mlp_learns_digits_in_one_epoch_and_reloads(float_run):
    out, metrics = float_run
    assert metrics["test_accuracy"] > 0.8  # chance is 0.1
    assert json.loads((out / "config.json").read_text())["quantizer"] == "float"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["epochs"] == 1 and len(saved["history"]) == 1
    model, config, data = load_run(out)
    assert config.quantizer == "float"
    assert all(layer.is_float for _, layer in binary_layers(model))
    with torch.no_grad():
        pred = model(data.x_test.float() * data.input_scale).argmax(1)
    assert float((pred == data.y_test).float().mean()) == pytest.approx(metrics["test_accuracy"])


@pytest.mark.parametrize("keep_config_json", [True, False])
def test_compile_refuses_a_float_run_writing_nothing(float_run, tmp_path, keep_config_json):
    run, _ = float_run
    if not keep_config_json:  # the checkpoint's own config decides
        run = tmp_path / "copy"
        run.mkdir()
        (run / "checkpoint.pt").write_bytes((float_run[0] / "checkpoint.pt").read_bytes())
    build = tmp_path / "build"
    res = subprocess.run([sys.executable, "-m", "bitfold", "compile", str(run), "--out", str(build)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"bitfold compile: error: {run} was trained with --quantizer float (the float baseline); "
        "it has no binary form to compile: train without --quantizer float"]
    assert not build.exists()
    with pytest.raises(ArtifactError, match="--quantizer float"):
        lower_run(run)


def test_export_refuses_float_layers_naming_the_first(float_run):
    model, config, data = load_run(float_run[0])
    with pytest.raises(ExportError, match=r"^body\.1: a layer of the float baseline"):
        export_network(model, data.input_bits, data.input_scale, name=config.model)


RESUME_SCRIPT = """
import sys
from bitfold.train.trainer import TrainConfig, train
out, stop, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
class Interrupt(Exception):
    pass
def on_epoch_end(epoch, record):
    if epoch == stop:
        raise Interrupt
config = TrainConfig(model="mlp-digits", dataset="digits", param="svd", quantizer="float",
                     epochs=2, batch_size=128, lr=1e-2, dropout=0.1)
try:
    train(config, out, resume=resume, progress=False, on_epoch_end=on_epoch_end)
except Interrupt:
    sys.exit(3)
"""


def _train_in_process(out, stop=0, resume=False) -> int:
    res = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(out), str(stop),
                          "1" if resume else "0"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode in (0, 3), res.stderr[-2000:]
    return res.returncode


def test_float_resume_after_interruption_is_bit_identical(tmp_path):
    _train_in_process(tmp_path / "straight")
    assert _train_in_process(tmp_path / "resumed", stop=1) == 3
    _train_in_process(tmp_path / "resumed", resume=True)
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)
            for r in ("straight", "resumed"))
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["history"][-1]["test_accuracy"] == b["history"][-1]["test_accuracy"]
