"""The host driver over a pseudo-terminal, against a board model that runs the golden model."""

from __future__ import annotations

import os
import pty
import threading
import tty

import numpy as np
import pytest

from bitfold.boards.host import BridgeFormat, HostError, infer_serial, read_selftest
from bitfold.compiler.golden import run_reference
from bitfold.hw.plan import build_plan

from .helpers import tiny_folding, tiny_graph


def _board_model(fd: int, fmt: BridgeFormat, graph, frames: int) -> None:
    """Read frames from the master side; answer each with its golden scores, then its class."""
    per_frame = fmt.in_bytes * fmt.beats_per_frame
    for _ in range(frames):
        data = b""
        while len(data) < per_frame:
            data += os.read(fd, per_frame - len(data))
        elems = []
        for b in range(fmt.beats_per_frame):
            word = int.from_bytes(data[b * fmt.in_bytes:(b + 1) * fmt.in_bytes], "little")
            elems += [(word >> (i * fmt.in_bits)) & ((1 << fmt.in_bits) - 1)
                      for i in range(fmt.in_elems)]
        x = np.array(elems).reshape(1, *fmt.input_shape)
        ref = run_reference(graph, x)
        out = b"".join(s.to_bytes(fmt.score_bytes, "little", signed=True)
                       for s in ref["scores"][0].tolist())
        os.write(fd, out + int(ref["class"][0]).to_bytes(fmt.class_bytes, "little"))


def test_infer_serial_sends_frames_and_decodes_results() -> None:
    graph = tiny_graph()
    fmt = BridgeFormat.from_plan(build_plan(graph, tiny_folding(graph)), 115200, 12.0)
    x = np.random.default_rng(5).integers(0, 16, (4, 4, 4, 1))
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    board = threading.Thread(target=_board_model, args=(master, fmt, graph, len(x)), daemon=True)
    board.start()
    try:
        got = infer_serial(fmt, os.ttyname(slave), x, timeout=10.0)
    finally:
        board.join(timeout=10)
        os.close(master)
        os.close(slave)
    ref = run_reference(graph, x)
    assert [c for c, _ in got] == ref["class"].tolist()
    assert [s for _, s in got] == ref["scores"].tolist()


def test_missing_port_is_a_one_line_error(tmp_path) -> None:
    fmt = BridgeFormat((2, 2, 1), 2, 4, 2, 2, 3, 8, 115200, 12.0)
    with pytest.raises(HostError, match=r"^cannot open .*nope: "):
        infer_serial(fmt, str(tmp_path / "nope"), [np.zeros(4)])


def test_read_selftest_decodes_the_record() -> None:
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    record = b"P\x00" + (16).to_bytes(2, "little") + (2048).to_bytes(4, "little")

    def board() -> None:
        os.read(master, 1)
        os.write(master, record)

    thread = threading.Thread(target=board, daemon=True)
    thread.start()
    try:
        got = read_selftest(os.ttyname(slave), 115200, 12e6, timeout=10.0)
    finally:
        thread.join(timeout=10)
        os.close(master)
        os.close(slave)
    assert got == {"passed": True, "mismatches": 0, "frames": 16, "cycles": 2048,
                   "fps": 16 * 12e6 / 2048}
