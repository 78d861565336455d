"""bitfold.processes: a tool and everything it starts end with the stage that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitfold.processes import run_in_group

# a stage in a child: it runs a shell that starts a grandchild (as make starts the compiler)
# and records both pids, then waits on it
CHILD = ("import sys; from bitfold.cli import Terminated, main; import signal\n"
         "from bitfold.processes import run_in_group\n"
         "signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(Terminated()))\n"
         "try:\n"
         "    run_in_group(['sh', '-c', 'sleep 600 & echo $$ $! > \"$1\"; wait', 'sh', sys.argv[1]])\n"
         "except KeyboardInterrupt:\n"
         "    sys.exit(130)\n")


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_a_command_runs_to_its_end_and_gives_its_exit_status(tmp_path) -> None:
    assert run_in_group(["sh", "-c", "echo hi > out; exit 3"], cwd=tmp_path) == 3
    assert (tmp_path / "out").read_text() == "hi\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_stage_ends_the_tool_and_what_the_tool_started(tmp_path, sig) -> None:
    pids = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(pids)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not (pids.is_file() and len(pids.read_text().split()) == 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the tool never started"
        time.sleep(0.05)
    shell, sleep = map(int, pids.read_text().split())
    assert os.getpgid(shell) == shell != os.getpgrp()  # its own process group
    assert not _ended(sleep)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 130
    deadline = time.monotonic() + 10
    while not (_ended(shell) and _ended(sleep)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ended(shell) and _ended(sleep), "a tool outlived the stage"
