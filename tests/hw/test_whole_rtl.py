"""``BUILD/rtl/`` is whole or absent: generate swaps it in with its folding.json, and simulate and
build refuse a folder that is not what generate wrote from this graph and folding."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bitfold.artifacts import ArtifactError, write_json
from bitfold.cli import main
from bitfold.compiler.folding import evaluate_folding
from bitfold.compiler.serialize import save_graph
from bitfold.hw.generate import check_rtl, generate, read_manifest
from bitfold.sim.runner import simulate
from tests.boards.helpers import tiny_graph

# bitfold generate in a child that stops for good just before it writes the new manifest:
# the new core and wrapper are written by then (the moment issue 15 found rtl/ mixed at)
CHILD = """
import sys, time
from pathlib import Path
import bitfold.hw.generate as g
real = g.write_json
def slow(path, data):
    if Path(path).name == "manifest.json":
        Path(sys.argv[1]).write_text("ready")
        time.sleep(600)
    return real(path, data)
g.write_json = slow
from bitfold.cli import main
sys.exit(main(sys.argv[2:]))
"""
A = {"fc0": (2, 4), "fc1": (1, 2)}
B = {"fc0": (4, 8), "fc1": (3, 4)}


def _snapshot(build: Path) -> dict[str, str]:
    files = [p for p in sorted((build / "rtl").rglob("*")) if p.is_file()]
    files.append(build / "folding.json")
    return {p.relative_to(build).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def _build(tmp_path: Path, choice=A) -> Path:
    graph = tiny_graph()
    save_graph(graph, tmp_path)
    generate(tmp_path, graph, evaluate_folding(graph, choice, 12.0, "ice40"))
    return tmp_path


def _folding_file(path: Path, choice) -> Path:
    write_json(path, evaluate_folding(tiny_graph(), choice, 12.0, "ice40").to_json())
    return path


def test_only_the_verilog_and_its_manifest_are_written(tmp_path) -> None:
    build = tmp_path / "b"
    (build / "rtl" / "mem").mkdir(parents=True)
    (build / "rtl" / "mem" / "old_weights.mem").write_text("from an older bitfold\n")
    _build(build)
    man = read_manifest(build / "rtl")
    names = sorted(p.relative_to(build / "rtl").as_posix()
                   for p in (build / "rtl").rglob("*") if p.is_file())
    assert names == sorted([*man["files"], "manifest.json"])  # no .mem, nothing left over
    assert man["files"] == ["bitfold_tiny.v", "bitfold_tiny_core.v"]
    assert "weights[0] = " in (build / "rtl" / "bitfold_tiny_core.v").read_text()  # built in
    assert set(man["sha256"]) == set(man["files"])
    assert check_rtl(build / "rtl", build) == man


def test_an_interrupted_generate_keeps_the_previous_rtl_and_folding(tmp_path) -> None:
    build = _build(tmp_path / "b")
    before = _snapshot(build)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ready), "generate", str(build),
                             "--folding", str(_folding_file(tmp_path / "b.json", B))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "generate never reached its manifest"
        time.sleep(0.05)
    staged = [p for p in build.iterdir() if p.name.startswith(".rtl.new-")]
    assert len(staged) == 1 and (staged[0] / "bitfold_tiny_core.v").is_file()  # the new core
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and re.fullmatch(r"bitfold generate: interrupted \(SIGINT\)\n",
                                                   err), err
    assert _snapshot(build) == before  # the old rtl/ and its folding.json, together
    assert not [p for p in build.iterdir() if p.name.startswith(".")]
    assert check_rtl(build / "rtl", build)["folding"]["layers"]["fc0"]["pe"] == 2


def test_a_core_from_another_generate_is_refused(tmp_path, capsys) -> None:
    build = _build(tmp_path / "b")
    rtl = build / "rtl"
    other_core = (rtl / "bitfold_tiny_core.v").read_bytes()
    assert main(["generate", str(build), "--folding",
                 str(_folding_file(tmp_path / "b.json", B))]) == 0
    capsys.readouterr()
    (rtl / "bitfold_tiny_core.v").write_bytes(other_core)  # new wrapper and manifest, old core
    msg = (rf"{re.escape(str(rtl))}/bitfold_tiny_core\.v: changed since bitfold generate wrote "
           rf"it \(SHA-256 differs from {re.escape(str(rtl))}/manifest\.json\); rerun `bitfold "
           rf"generate {re.escape(str(build))} --folding {re.escape(str(build))}/folding\.json`")
    with pytest.raises(ArtifactError, match=rf"^{msg}$"):
        simulate(build, np.zeros((2, 4, 4, 1), int), sim_dir=tmp_path / "sim")
    assert not (tmp_path / "sim").exists()
    assert main(["build", str(build), "--board", "icebreaker", "--no-build"]) == 2
    assert re.fullmatch(rf"bitfold build: error: {msg}\n", capsys.readouterr().err)
    assert not (build / "boards").exists()


@pytest.mark.parametrize("changed", ["folding.json", "graph.json"])
def test_rtl_from_another_folding_or_graph_is_refused(tmp_path, capsys, changed) -> None:
    build = _build(tmp_path / "b")
    if changed == "folding.json":  # a bitfold fold after generate
        assert main(["fold", str(build), "--folding",
                     str(_folding_file(tmp_path / "b.json", B))]) == 0
    else:  # compiled again, to another network
        doc = json.loads((build / "graph.json").read_text())
        doc["name"] = "another"
        (build / "graph.json").write_text(json.dumps(doc))
    capsys.readouterr()
    rtl = build / "rtl"
    msg = (rf"{re.escape(str(rtl))}: generated from another {re.escape(changed)} than "
           rf"{re.escape(str(build / changed))} \(it changed since, or generate was "
           rf"interrupted\); rerun `bitfold generate {re.escape(str(build))} --folding "
           rf"{re.escape(str(build))}/folding\.json`")
    with pytest.raises(ArtifactError, match=rf"^{msg}$"):
        check_rtl(rtl, build)
    if changed == "folding.json":
        with pytest.raises(ArtifactError, match=rf"^{msg}$"):
            simulate(build, np.zeros((2, 4, 4, 1), int), sim_dir=tmp_path / "sim")
        assert main(["build", str(build), "--board", "icebreaker", "--no-build"]) == 2
        assert re.fullmatch(rf"bitfold build: error: {msg}\n", capsys.readouterr().err)
        assert not (build / "boards").exists()
        # the command the message names makes the folder whole again
        assert main(["generate", str(build), "--folding", str(build / "folding.json")]) == 0
        assert check_rtl(rtl, build)["folding"]["layers"]["fc0"]["pe"] == 4
