"""Bad inputs to train, compile and golden: one line, exit status 2, nothing partial left.

Each case is what a user met (issue 15): a malicious or truncated checkpoint, a broken
``.npz``, labels outside the classes, a run folder another training would overwrite, and
``run`` with a model that cannot be built. The verbs run in this process through
``bitfold.cli.main``, as ``bitfold run`` runs them; one case also runs the installed
command in its own process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitfold.cli import main

from .test_data import write_idx_set

BIN = Path(sys.executable).parent
QUICK = ["--epochs", "1", "--batch-size", "128", "--quiet"]


def one_line_error(capsys, code: int, pattern: str) -> str:
    """The verb failed with exit status 2 and exactly one stderr line matching ``pattern``."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert re.match(pattern, err), err
    assert "Traceback" not in err and "weights_only" not in err, err
    return err


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Evil:
    """Unpickling it would run a shell command that leaves a marker file."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A real run (one epoch of mlp-digits) and its build."""
    root = tmp_path_factory.mktemp("good")
    run, build = root / "run", root / "build"
    assert main(["train", *QUICK, "--out", str(run)]) == 0
    assert main(["compile", str(run), "--out", str(build)]) == 0
    return run, build


def bad_run(trained, tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A copy of the good run whose checkpoint is ``kind``; returns it and the marker path."""
    run = tmp_path / f"run-{kind}"
    shutil.copytree(trained[0], run)
    marker = tmp_path / "code-ran"
    Evil.marker = str(marker)
    ckpt = run / "checkpoint.pt"
    if kind == "malicious":  # a torch zip whose pickle calls os.system
        torch.save({"schema": 1, "model": Evil()}, ckpt)
    elif kind == "plain-pickle":  # a bare pickle, as pickle.dump writes it
        ckpt.write_bytes(pickle.dumps({"model": Evil()}, protocol=4))
    else:  # truncated: the first half of a real checkpoint
        raw = ckpt.read_bytes()
        ckpt.write_bytes(raw[: len(raw) // 2])
    return run, marker


CKPT_MESSAGE = {
    "malicious": r"holds Python objects other than tensors and plain values; bitfold loads "
                 r"weights only and refuses it \(retrain, or use a checkpoint written by bitfold "
                 r"train\)$",
    "plain-pickle": r"holds Python objects other than tensors and plain values; ",
    "truncated": r"truncated or corrupted checkpoint \(PytorchStreamReader failed reading zip "
                 r"archive: failed finding central directory\); retrain, or restore the file$",
}


@pytest.mark.parametrize("kind", list(CKPT_MESSAGE))
@pytest.mark.parametrize("verb", ["compile", "golden", "train --resume"])
def test_unsafe_or_truncated_checkpoint_is_refused_in_one_line(trained, tmp_path, capsys, kind,
                                                                verb):
    run, marker = bad_run(trained, tmp_path, kind)
    before = tree_hash(run)
    good_build = tmp_path / "build"
    shutil.copytree(trained[1], good_build)
    build_before = tree_hash(good_build)
    out = tmp_path / "new-build"
    argv = {"compile": ["compile", str(run), "--out", str(out)],
            "golden": ["golden", str(good_build), "--run", str(run)],
            "train --resume": ["train", *QUICK, "--resume", "--out", str(run)]}[verb]
    one_line_error(capsys, main(argv),
                   rf"^bitfold {verb.split()[0]}: error: {re.escape(str(run))}/checkpoint\.pt: "
                   + CKPT_MESSAGE[kind])
    assert not marker.exists()  # the pickle's code never ran
    assert tree_hash(run) == before and tree_hash(good_build) == build_before
    assert not out.exists()


def test_malicious_checkpoint_in_its_own_process(trained, tmp_path):
    """The installed command, as the user ran it: no traceback, no unsafe advice."""
    run, marker = bad_run(trained, tmp_path, "malicious")
    res = subprocess.run([str(BIN / "bitfold"), "compile", str(run), "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1, res.stderr
    assert re.match(rf"^bitfold compile: error: {re.escape(str(run))}/checkpoint\.pt: holds Python "
                    r"objects other than tensors", res.stderr)
    assert "weights_only" not in res.stderr and not marker.exists()
    assert not (tmp_path / "b").exists()


def write_npz_set(folder: Path, y_train, y_test) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, y in (("train", y_train), ("test", y_test)):
        y = np.asarray(y)
        np.savez(folder / f"{split}.npz", x=rng.integers(0, 256, (len(y), 8, 8), dtype=np.uint8), y=y)
    return folder


def train_on(data: Path, out: Path, dataset: str = "npz") -> int:
    return main(["train", "--dataset", dataset, "--data-dir", str(data), *QUICK, "--out", str(out)])


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize("kind, message", [
    ("truncated", r"truncated or corrupted \.npz \(File is not a zip file\); write it with "
                  r"np\.savez\(path, x=images, y=labels\)$"),
    ("text", r"not an \.npz archive \(it starts with b'x,y\\n', not a zip header\); write it "
             r"with np\.savez"),
    ("objects", r"x or y is an array of Python objects, which bitfold does not unpickle; store "
                r"numbers \(uint8 x, integer y\)"),
])
def test_broken_npz_is_one_line_and_no_run(tmp_path, capsys, kind, message):
    data = write_npz_set(tmp_path / "data", np.arange(40) % 10, np.arange(20) % 10)
    train = data / "train.npz"
    if kind == "truncated":
        _truncate(train)
    elif kind == "text":
        train.write_text("x,y\n1,2\n")
    else:
        np.savez(train, x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    out = tmp_path / "run"
    one_line_error(capsys, train_on(data, out),
                   rf"^bitfold train: error: {re.escape(str(train))}: {message}")
    assert not out.exists()


@pytest.mark.parametrize("y_train, y_test, where, message", [
    # 10**9: was a 512 GB allocation for the output layer
    ([*(np.arange(39) % 10), 10**9], np.arange(20) % 10, "train",
     r"labels must be the class indices 0\.\.K-1, each present in train\.npz; found 11 distinct "
     r"labels from 0 to 1000000000 \(first missing: 10, 11, 12, 13, 14\); renumber them"),
    # 5000: was silently 5001 classes
    ([*(np.arange(39) % 10), 5000], np.arange(20) % 10, "train",
     r"labels must be the class indices 0\.\.K-1, each present in train\.npz; found 11 distinct "
     r"labels from 0 to 5000 "),
    # a label only in the test split: was silently 7 classes, one never trained
    (np.arange(40) % 6, np.arange(21) % 7, "test",
     r"label 6 is out of range \(train\.npz has classes 0\.\.5\); fix the labels or point "
     r"--data-dir at the right files$"),
    ([*(np.arange(39) % 10), -3], np.arange(20) % 10, "train",
     r"label -3 is negative; labels are class indices 0, 1, \.\.\.$"),
])
def test_npz_labels_outside_the_classes_are_refused_up_front(tmp_path, capsys, y_train, y_test,
                                                            where, message):
    data = write_npz_set(tmp_path / "data", y_train, y_test)
    out = tmp_path / "run"
    one_line_error(capsys, train_on(data, out),
                   rf"^bitfold train: error: {re.escape(str(data / where))}\.npz: {message}")
    assert not out.exists()


def test_idx_labels_out_of_range_are_refused_before_training(tmp_path, capsys):
    """Was ``IndexError: Target 12 is out of bounds`` mid-epoch, with config.json left behind."""
    data = tmp_path / "mnist"
    data.mkdir()
    write_idx_set(data, n_train=40, n_test=10, gz=False)
    labels = data / "train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8 + 17] = 12
    labels.write_bytes(bytes(raw))
    out = tmp_path / "run"
    code = main(["train", "--dataset", "mnist", "--model", "tfc", "--data-dir", str(data), *QUICK,
                 "--out", str(out)])
    one_line_error(capsys, code, rf"^bitfold train: error: {re.escape(str(labels))}: label 12 is "
                                 r"out of range \(mnist has classes 0\.\.9\); fix the labels")
    assert not out.exists()


def test_a_failure_before_the_first_checkpoint_leaves_no_run(tmp_path, monkeypatch):
    import bitfold.train.trainer as trainer

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(trainer, "_loss", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train(trainer.TrainConfig(epochs=1), out, progress=False)
    assert not out.exists()
    kept = tmp_path / "kept"  # a folder that was there before: kept, without a config.json
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train(trainer.TrainConfig(epochs=1), kept, progress=False)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_a_run_with_other_options_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    before = tree_hash(out)
    one_line_error(capsys, main(["train", *QUICK, "--lr", "0.02", "--out", str(out)]),
                   rf"^bitfold train: error: {re.escape(str(out))} holds a run with other options "
                   r"\(lr\); pass --force to overwrite it, --resume to continue it \(only --epochs "
                   r"may change\), or choose another --out$")
    assert tree_hash(out) == before
    assert main(["train", *QUICK, "--out", str(out)]) == 0  # the same options: trained again
    capsys.readouterr()
    assert main(["train", *QUICK, "--lr", "0.02", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "config.json").read_text())["lr"] == 0.02
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["lr"] == 0.02


def test_resume_extends_the_epochs_on_a_replanned_cosine_schedule(tmp_path, capsys):
    short, fresh = tmp_path / "short", tmp_path / "fresh"
    args = ["--batch-size", "128", "--quiet"]
    assert main(["train", *args, "--epochs", "2", "--out", str(short)]) == 0
    assert main(["train", *args, "--epochs", "4", "--resume", "--out", str(short)]) == 0
    assert main(["train", *args, "--epochs", "4", "--out", str(fresh)]) == 0
    ext = json.loads((short / "metrics.json").read_text())
    ref = json.loads((fresh / "metrics.json").read_text())
    assert ext["epochs"] == 4 and [h["epoch"] for h in ext["history"]] == [1, 2, 3, 4]
    assert ext["extended"] == [{"at_epoch": 2, "from": 2, "to": 4}] and "extended" not in ref
    # epochs 3-4 run at the 4-epoch schedule's rates (epochs 1-2 had the 2-epoch one's)
    assert [h["lr"] for h in ext["history"][2:]] == pytest.approx([h["lr"] for h in ref["history"][2:]])
    assert json.loads((short / "config.json").read_text())["epochs"] == 4
    capsys.readouterr()
    one_line_error(capsys, main(["train", *args, "--epochs", "3", "--resume", "--out", str(short)]),
                   rf"^bitfold train: error: --resume --epochs 3: {re.escape(str(short))} has "
                   r"already trained 4 epochs; give --epochs 4 or more$")
    one_line_error(capsys, main(["train", *args, "--epochs", "4", "--lr", "0.5", "--resume",
                                 "--out", str(short)]),
                   r"^bitfold train: error: --resume with a different configuration \(lr\); ")


def test_run_refuses_a_golden_only_model_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--model", "hourglass-hw", "--out", str(out), "--epochs", "1"])
    one_line_error(capsys, code, r"^bitfold run: error: --model hourglass-hw compiles and runs in "
                                 r"the golden model, but its upsampling joins have no hardware "
                                 r"yet; ")
    assert not out.exists()


@pytest.mark.parametrize("model", ["resnet18", "hourglass"])
def test_run_refuses_a_model_it_cannot_build_before_training(tmp_path, capsys, model):
    out = tmp_path / "out"
    code = main(["run", "--model", model, "--out", str(out), "--epochs", "1", "--no-bitstream"])
    one_line_error(capsys, code, rf"^bitfold run: error: --model {model} trains but cannot be "
                                 r"lowered to hardware")
    assert not out.exists()
