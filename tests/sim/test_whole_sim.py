"""``BUILD/sim/`` is whole or absent, ``simulate`` ends its simulator when interrupted, and a
build folder whose path holds spaces, quotes or ``$(...)`` simulates as any other."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitfold.artifacts import read_json

from .conftest import make_build, need, small_mlp

CHOICE = {"fc0": (8, 32), "fc1": (2, 8)}
# bitfold simulate in a child, its stalls near-total (95% idle input and output backpressure),
# so that it is still streaming when the test interrupts it
SLOW_CHILD = ("import functools, sys; import bitfold.sim.runner as r; "
              "r.simulate = functools.partial(r.simulate, p_idle=0.95, p_stall=0.95); "
              "from bitfold.cli import main; sys.exit(main(sys.argv[1:]))")
# bitfold in a child whose simulator tools are looked up beside another interpreter path first
# (sim.tools.simulator_path), where the test puts a failing stand-in
FAKE_CHILD = ("import sys; sys.executable = sys.argv[1]; from bitfold.cli import main; "
              "sys.exit(main(sys.argv[2:]))")


def _digits_build(path: Path) -> Path:
    build, _ = make_build(path, small_mlp(), CHOICE)
    (build / "compile.json").write_text(json.dumps({"schema": 1, "dataset": "digits",
                                                    "data_dir": None}))
    return build


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bitfold", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=900)


def _processes() -> dict[int, tuple[str, int, int, str]]:
    """Every process: pid -> (command name, parent pid, process group, state)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        state, ppid, pgrp = text[text.rindex(")") + 2:].split()[:3]
        out[int(stat.parent.name)] = (name, int(ppid), int(pgrp), state)
    return out


def _group_alive(pgrp: int) -> list[str]:
    return [name for name, _, group, state in _processes().values()
            if group == pgrp and state not in ("Z", "X")]


@pytest.mark.parametrize("sig, simulator, tool, inner", [
    (signal.SIGINT, "icarus", "vvp", None),  # streaming frames
    (signal.SIGTERM, "icarus", "vvp", None),
    (signal.SIGTERM, "verilator", "make", "cc1plus"),  # building: make, g++ and its compiler
], ids=["SIGINT-vvp", "SIGTERM-vvp", "SIGTERM-verilator-make"])
def test_an_interrupted_simulate_ends_its_simulator_and_keeps_the_previous_run(tmp_path, sig,
                                                                               simulator, tool,
                                                                               inner):
    need("icarus")
    need(simulator)
    build = _digits_build(tmp_path / "b")
    first = _cli("simulate", str(build), "--frames", "6")
    assert first.returncode == 0, first.stderr
    sim = build / "sim"
    before = _snapshot(sim)
    assert read_json(sim / "report.json")["frames"] == 6
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, "simulate", str(build), "--stalls",
                             "--simulator", simulator],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    pid = None
    while pid is None:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{tool} never started"
        pid = next((p for p, (name, ppid, _, _) in _processes().items()
                    if name == tool and ppid == proc.pid), None)
        time.sleep(0.05)
    group = _processes()[pid][2]
    while inner is not None and inner not in _group_alive(group):  # a grandchild of bitfold's
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{inner} never started"
        time.sleep(0.05)
    assert group != os.getpgrp()  # the simulator runs in a process group of its own
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert re.fullmatch(rf"bitfold simulate: interrupted \({name}\)\n", err), err
    assert _group_alive(group) == [], "the simulation's tools outlived it"
    assert sorted(p.name for p in build.iterdir() if p.name.startswith((".sim", "sim"))) == \
        ["sim"]  # no temporary or failed folder
    assert _snapshot(sim) == before  # the previous report, vectors and build cache, together


def test_a_failed_simulation_keeps_the_previous_run_and_its_logs_aside(tmp_path):
    need("icarus")
    build = _digits_build(tmp_path / "b")
    assert _cli("simulate", str(build), "--frames", "6").returncode == 0
    sim = build / "sim"
    before = _snapshot(sim)
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    (tools / "vvp").write_text("#!/bin/sh\necho 'vvp: a simulated crash' >&2\nexit 1\n")
    (tools / "vvp").chmod(0o755)
    res = subprocess.run([sys.executable, "-c", FAKE_CHILD, str(tools / "python"), "simulate",
                          str(build), "--frames", "8"], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 2, res.stderr
    failed = build / "sim.failed"
    assert res.stderr == (f"bitfold simulate: error: icarus ended without a result; see "
                          f"{failed}/icarus/sim.log\n")
    assert "vvp: a simulated crash" in (failed / "icarus" / "sim.log").read_text()
    assert _snapshot(sim) == before  # the previous whole run
    assert read_json(sim / "report.json")["frames"] == 6
    again = _cli("simulate", str(build), "--frames", "8")
    assert again.returncode == 0, again.stderr
    assert read_json(sim / "report.json")["frames"] == 8
    assert not failed.exists()  # the outdated failure's logs go with the next whole run


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_a_build_folder_with_spaces_quotes_and_substitutions_simulates(tmp_path, simulator):
    need(simulator)
    here = tmp_path / "cwd"
    here.mkdir()
    build = _digits_build(tmp_path / "it's \"a\" build $(touch PWNED) `touch PWNED2`")
    res = subprocess.run([sys.executable, "-m", "bitfold", "simulate", str(build), "--frames", "5",
                          "--simulator", simulator], capture_output=True, text=True, cwd=here,
                         timeout=900)
    assert res.returncode == 0, res.stderr
    report = read_json(build / "sim" / "report.json")
    assert (report["frames"], report["mismatches"], report["simulator"]) == (5, 0, simulator)
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    assert (build / "sim" / simulator / "build" / "bitfold-build.sha256").is_file()  # cached


def test_a_design_the_simulator_cannot_build_is_one_line_with_its_error_and_log(tmp_path):
    need("icarus")
    build = _digits_build(tmp_path / "b")
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    (tools / "iverilog").write_text("#!/bin/sh\necho 'Parsing the sources'\n"
                                    "echo 'core.v:3: syntax error'\necho 'I give up.'\nexit 2\n")
    (tools / "iverilog").chmod(0o755)
    res = subprocess.run([sys.executable, "-c", FAKE_CHILD, str(tools / "python"), "simulate",
                          str(build), "--frames", "4"], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 2, res.stderr
    assert res.stderr == ("bitfold simulate: error: icarus could not build bitfold_small_mlp: "
                          f"core.v:3: syntax error; see {build}/sim.failed/icarus/build/"
                          "build.log\n")
    assert "I give up." in (build / "sim.failed" / "icarus" / "build" / "build.log").read_text()
    assert not (build / "sim").exists()  # no half a simulation folder
    assert not [p for p in build.iterdir() if p.name.startswith(".")]
