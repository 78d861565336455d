"""Bad inputs to train, compile and golden: one line, exit status 2, nothing partial left.

Each case is what a user met (issue 15): a malicious or truncated checkpoint.
The verbs run in this process through ``bitfold.cli.main``, as ``bitfold run`` runs
them; one case also runs the installed command in its own process.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bitfold.cli import main

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

