"""Tools a stage starts run in a process group of their own, ended with the stage.

``bitfold build`` (yosys, nextpnr) and ``bitfold simulate`` (iverilog, vvp, verilator, make,
the compiler it calls, the simulation binary) start tools that start tools. Each runs in a new
session, so a Ctrl-C at the terminal reaches bitfold alone, and bitfold ends the whole group
(SIGTERM, then SIGKILL) when it is interrupted (SIGINT, or SIGTERM through
:class:`bitfold.cli.Terminated`) or fails while they run: no tool outlives the stage.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from bitfold.artifacts import held_signals

__all__ = ["end_group", "first_error", "group", "run_in_group"]


def end_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """End every process of ``proc``'s group: SIGTERM, then SIGKILL for what is left after
    ``grace_s``; return when none is left (``proc`` reaped; the tools it started are reaped by
    init)."""
    with held_signals():  # a second Ctrl-C must not cut the clean-up short
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                proc.poll()
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                continue
            break
        proc.wait()


@contextmanager
def group(cmd: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen]:
    """``Popen(cmd, **popen)`` as the leader of a new process group; a block that raises
    (an interrupt included) ends the group before the exception goes on."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, **popen)
    try:
        yield proc
    except BaseException:
        end_group(proc)
        raise
    proc.wait()


def run_in_group(cmd: Sequence[str], *, cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, stdout: IO[Any] | None = None,
                 stderr: int | IO[Any] | None = None) -> int:
    """Run ``cmd`` to its end in a process group of its own; return its exit status."""
    with group(cmd, cwd=cwd, env=env, stdout=stdout, stderr=stderr) as proc:
        return proc.wait()


# what a tool's error line starts with or holds, most specific first: yosys' and nextpnr's
# ERROR:, Verilator's %Error, iverilog's and gcc's "file:line: [syntax] error", make's ***
_ERRORS = (re.compile(r"^(ERROR:|%Error)"), re.compile(r":\s*(syntax |fatal )?error\b", re.I),
           re.compile(r"\*\*\*"), re.compile(r"\berror\b", re.I))


def first_error(log: str, limit: int = 240) -> str:
    """The first line of a tool's log that reports an error (the most specific kind first),
    else its last line; stripped and cut to ``limit`` characters, for a one-line message."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for pattern in _ERRORS:
        line = next((x for x in lines if pattern.search(x)), None)
        if line is not None:
            break
    else:
        line = lines[-1] if lines else "no output"
    return line if len(line) <= limit else line[:limit - 3] + "..."
