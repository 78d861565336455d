"""The training loop, its artifacts, exact resume, models and export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitfold.artifacts import ArtifactError
from bitfold.train.data import load_dataset
from bitfold.train.export import ExportError, export_network
from bitfold.train.layers import parametrize_model
from bitfold.train.models import MODELS, build_model
from bitfold.train.trainer import TrainConfig, load_run, train

from .helpers import weights_sha256

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tiny(**kw) -> TrainConfig:
    base = dict(model="mlp-digits", dataset="digits", param="holistic-tucker", alpha="learned",
                epochs=3, batch_size=128, lr=1e-2, dropout=0.1)
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


# Each training runs in its own process, as a user's runs and a --resume do. (Repeats in
# one process differed too until the holistic projection stopped using torch's gelsy
# least squares, whose pivot array is uninitialized memory; see test_parametrize.)
TRAIN_SCRIPT = """
import sys
from bitfold.train.trainer import TrainConfig, train
out, seed, param = sys.argv[1], int(sys.argv[2]), sys.argv[3]
stop, resume = int(sys.argv[4]), sys.argv[5] == "1"
class Interrupt(Exception):
    pass
def on_epoch_end(epoch, record):
    if epoch == stop:
        raise Interrupt
config = TrainConfig(model="mlp-digits", dataset="digits", param=param, alpha="learned", epochs=3,
                     batch_size=128, lr=1e-2, dropout=0.1, seed=seed)
try:
    train(config, out, resume=resume, progress=False, on_epoch_end=on_epoch_end)
except Interrupt:
    sys.exit(3)
"""


def train_in_process(out, seed=0, param="holistic-tucker", stop=0, resume=False) -> int:
    res = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(out), str(seed), param, str(stop),
                          "1" if resume else "0"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode in (0, 3), res.stderr[-2000:]
    return res.returncode


def weights(run) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("param", ["dense", "holistic-tucker"])
def test_resume_after_interruption_is_bit_identical(tmp_path, param):
    train_in_process(tmp_path / "straight", param=param)
    assert train_in_process(tmp_path / "resumed", param=param, stop=2) == 3  # interrupted
    assert weights(tmp_path / "resumed")["epoch"] == 2
    train_in_process(tmp_path / "resumed", param=param, resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train_in_process(tmp_path / name, seed=seed)
    a, b, c = (weights(tmp_path / n)["model"] for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_with_other_options_is_refused(tmp_path):
    train(tiny(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"^--resume with a different configuration \(lr\)"):
        train(tiny(epochs=1, lr=0.5), tmp_path, resume=True, progress=False)
    with pytest.raises(ArtifactError, match=r"nothing to resume"):
        train(tiny(epochs=1), tmp_path / "empty", resume=True, progress=False)


def test_run_records_each_machine_that_trained_it(tmp_path, monkeypatch):
    from bitfold.train import trainer

    train(tiny(epochs=1), tmp_path, progress=False)
    first = json.loads((tmp_path / "machine.json").read_text())["machine"]
    assert first == trainer.machine_words(tiny())
    assert f"{torch.get_num_threads()} torch threads" in first
    stamp = (tmp_path / "machine.json").stat().st_mtime_ns
    train(tiny(epochs=1), tmp_path, resume=True, progress=False)  # nothing left to train
    assert (tmp_path / "machine.json").stat().st_mtime_ns == stamp
    monkeypatch.setattr(trainer, "machine_words", lambda config: "Other CPU, 8 cores, 4 torch threads")
    train(tiny(epochs=2), tmp_path, resume=True, progress=False)  # moved machines
    both = json.loads((tmp_path / "machine.json").read_text())["machine"]
    assert both == f"{first}; Other CPU, 8 cores, 4 torch threads"
    train(tiny(epochs=3), tmp_path, resume=True, progress=False)  # same one again: no repeat
    assert json.loads((tmp_path / "machine.json").read_text())["machine"] == both


def test_load_run_restores_the_trained_model(tmp_path):
    train(tiny(epochs=1, param="svd"), tmp_path, progress=False)
    model, config, data = load_run(tmp_path)
    assert config.param == "svd" and not model.training
    x = data.x_test[:50].float() * data.input_scale
    logits = model(x)
    assert logits.shape == (50, 10)


def test_rmsprop_and_step_schedule(tmp_path):
    metrics = train(tiny(optimizer="rmsprop", schedule="step", step_size=1, gamma=0.5, lr=1e-3),
                    tmp_path, progress=False)
    lrs = [h["lr"] for h in metrics["history"]]
    assert lrs == pytest.approx([5e-4, 2.5e-4, 1.25e-4])


def test_init_from_float_weights(tmp_path):
    """A dense run's real weights seed a factorized run exactly (before any training)."""
    train(tiny(epochs=1, param="dense", alpha="analytic"), tmp_path / "float", progress=False)
    dense = torch.load(tmp_path / "float" / "checkpoint.pt", weights_only=True)["model"]
    from bitfold.train.trainer import make_model

    data = load_dataset("digits")
    model = make_model(tiny(param="tucker", init_from=str(tmp_path / "float")), data)
    for name, layer in model.named_modules():
        if hasattr(layer, "real_weight"):
            latent = dense[f"{name}.parametrizations.weight.original"]
            assert torch.allclose(layer.real_weight(), latent, atol=1e-5), name
    wrong = tiny(model="sfc", init_from=str(tmp_path / "float"))
    with pytest.raises(ArtifactError, match=r"weights do not fit this model"):
        make_model(wrong, data)


def test_model_catalog_names_every_model_and_the_cli_needs_no_torch():
    from bitfold.train.catalog import MODEL_NAMES

    assert tuple(MODELS) == MODEL_NAMES
    code = "import sys; from bitfold.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "False", res.stderr


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_runs_forward_and_backward(name):
    shapes = {"mlp-digits": (1, 8, 8), "cnn-digits": (1, 8, 8), "tfc": (1, 28, 28),
              "sfc": (1, 28, 28), "lfc": (1, 28, 28), "cnv": (3, 32, 32),
              "resnet8": (1, 28, 28), "resnet18": (3, 32, 32), "resnet18-w8": (1, 28, 28),
              "hourglass": (3, 64, 64),
              "hourglass-hw": (3, 64, 64)}
    torch.manual_seed(0)
    model = build_model(name, shapes[name], 4)
    parametrize_model(model, "holistic-tucker", "learned", rank=0.5)
    out = model(torch.rand(2, *shapes[name]))
    expected = (2, 4, 16, 16) if name.startswith("hourglass") else (2, 4)
    assert out.shape == expected
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_resnet18_takes_28x28_images_and_groups_each_stages_same_shaped_convolutions():
    torch.manual_seed(0)
    model = build_model("resnet18-w8", (1, 28, 28), 10)
    sizes = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, o: sizes.append(o.shape[1:]))
    parametrize_model(model, "holistic-tucker", "learned")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # 28 -> 14 -> 7 -> 4: the strided convolution and its pooled shortcut round up alike.
    assert [tuple(s) for s in sizes[::4]] == [(8, 28, 28), (16, 14, 14), (32, 7, 7), (64, 4, 4)]
    groups = sorted((g.num_layers, g.layer_shape) for g in model.factor_groups)
    # Each stage's four 3x3 convolutions but the first of a wider stage share a group.
    assert groups == [(1, (16, 8, 3, 3)), (1, (32, 16, 3, 3)), (1, (64, 32, 3, 3)),
                      (3, (16, 16, 3, 3)), (3, (32, 32, 3, 3)), (3, (64, 64, 3, 3)),
                      (4, (8, 8, 3, 3))]


@pytest.mark.slow
@pytest.mark.parametrize("model, dataset", [("resnet18", "synthetic"), ("hourglass", "synthetic-pose")])
def test_paper_networks_train_on_small_data(tmp_path, model, dataset):
    metrics = train(TrainConfig(model=model, dataset=dataset, param="holistic-tucker",
                                alpha="learned", epochs=2, batch_size=32, lr=1e-3),
                    tmp_path, progress=False)
    first, last = metrics["history"][0]["train_loss"], metrics["history"][-1]["train_loss"]
    assert np.isfinite(last) and last < first


def test_export_gives_binary_weights_and_alphas_that_reproduce_torch():
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = build_model("mlp-digits", data.input_shape, 10)
    parametrize_model(model, "holistic-tucker", "learned")
    with torch.no_grad():  # trained-like statistics: untrained ones put many sums exactly on 0
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-3, 3), mod.running_var.uniform_(0.5, 4)
                mod.weight.uniform_(-1, 1), mod.bias.uniform_(-1, 1)
    model.eval()
    net = export_network(model, data.input_bits, data.input_scale, "mlp-digits")
    kinds = [type(s).__name__ for s in net.steps]
    assert kinds[:3] == ["ExportedFlatten", "ExportedBinaryLayer", "ExportedBatchNorm"]
    assert "factor" not in repr(net.steps[1].__dict__.keys())
    # Re-run the network from the export alone, in float64 numpy.
    x = data.x_test[:100].numpy().astype(np.float64) * data.input_scale
    h = x.reshape(len(x), -1)
    for step in net.steps[1:]:
        if type(step).__name__ == "ExportedBinaryLayer":
            assert set(np.unique(step.weight)) <= {-1, 1} and step.weight.dtype == np.int8
            inp = h if step.input_mode == "multibit" else np.where(h >= 0, 1.0, -1.0)
            h = step.alpha * (inp @ step.weight.T.astype(np.float64))
        else:
            h = step.gamma * (h - step.mean) / np.sqrt(step.var + step.eps) + step.beta
    with torch.no_grad():
        ref = model(data.x_test[:100].float() * data.input_scale).double().numpy()
    assert np.allclose(h, ref, atol=1e-3)


def test_export_refuses_residual_networks():
    model = parametrize_model(build_model("resnet18", (3, 32, 32), 10), "dense", "analytic")
    with pytest.raises(ExportError, match=r"^resnet18 \(ResNet18\) cannot be lowered to hardware yet: "
                       r"layer stem\.0 is a real-valued Conv2d and block blocks\.0 adds a real-valued "
                       r"residual shortcut; "):
        export_network(model, 8, 1 / 255, "resnet18")


def run_cli(*args, **env):
    return subprocess.run([str(BIN / "bitfold"), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, timeout=600)


def test_cli_bad_dataset_folder_is_one_line_error(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage!")
    res = run_cli("train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out",
                  str(tmp_path / "run"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith(f"bitfold train: error: {tmp_path}/train-images-idx3-ubyte: not an IDX file")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.ci
def test_cli_digits_mlp_holistic_learned_reaches_90_percent(tmp_path):
    """The issue's headline command (its wall time is measured in BENCHMARKS.md, not here)."""
    res = run_cli("train", "--dataset", "digits", "--model", "mlp-digits", "--param",
                  "holistic-tucker", "--alpha", "learned", "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] >= 0.90


@pytest.mark.slow
@pytest.mark.ci
def test_ddp_two_processes_follow_single_process(tmp_path):
    """2-process DDP (gloo) trains and its loss follows the single-process run within 15%.

    The global batch is the same; what differs is batch norm, whose batch statistics
    each process takes over its half of the batch. Measured on the 2-core CI machine
    (torch 2.13.0, numpy 2.4): 3%, 5%, 10% and 13% above the single process in epochs
    1-4, identical on every rerun and with the trainer of the previous release, so the
    gap is batch norm's, not a regression; an earlier environment gave within 4%.
    """
    args = ["train", "--dataset", "digits", "--model", "mlp-digits", "--param",
            "holistic-tucker", "--alpha", "learned", "--epochs", "4", "--batch-size", "256",
            "--lr", "1e-2", "--quiet"]
    single = run_cli(*args, "--out", str(tmp_path / "single"), OMP_NUM_THREADS="1")
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python",
         str(BIN / "bitfold"), *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert "Warning" not in ddp.stderr, ddp.stderr[-2000:]
    s = json.loads((tmp_path / "single" / "metrics.json").read_text())
    d = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert d["world_size"] == 2 and s["world_size"] == 1
    for hs, hd in zip(s["history"], d["history"], strict=True):
        assert hd["train_loss"] == pytest.approx(hs["train_loss"], rel=0.15)
    assert d["history"][-1]["train_loss"] < d["history"][0]["train_loss"]
    assert d["test_accuracy"] >= s["test_accuracy"] - 0.05


def test_sfc_on_mnist_repeats_bit_identically_in_separate_processes(tmp_path, mnist_dir):
    """The reported failure: sfc on MNIST, same options and seed, separate processes.

    Three 1-thread runs gave three accuracies (0.8059, 0.7574, 0.7682), and two runs with
    the default threads diverged in epoch 1 (the holistic group's row, see
    test_parametrize). Here on the first 2,000 MNIST training frames (an npz folder, the
    same reader path after the files), 2 epochs, 3 processes with 1 thread and 2 with 2:
    the weights' sha256 is one per thread count. Different thread counts are not
    promised to agree (batch norm's statistics and MKL's SVD split their sums by thread).
    """
    from bitfold.train.data import load_dataset

    data = load_dataset("mnist", mnist_dir)
    subset = tmp_path / "mnist-2k"
    subset.mkdir()
    np.savez(subset / "train.npz", x=data.x_train[:2000, 0].numpy(), y=data.y_train[:2000].numpy())
    np.savez(subset / "test.npz", x=data.x_test[:500, 0].numpy(), y=data.y_test[:500].numpy())
    hashes: dict[str, set[str]] = {}
    for threads, runs in (("1", 3), ("2", 2)):
        for i in range(runs):
            out = tmp_path / f"t{threads}-{i}"
            res = run_cli("train", "--model", "sfc", "--dataset", "npz", "--data-dir", str(subset),
                          "--epochs", "2", "--out", str(out), "--quiet", OMP_NUM_THREADS=threads)
            assert res.returncode == 0, res.stderr[-2000:]
            hashes.setdefault(threads, set()).add(weights_sha256(out))
            assert json.loads((out / "metrics.json").read_text())["threads"] == int(threads)
    assert {t: len(h) for t, h in hashes.items()} == {"1": 1, "2": 1}, hashes
