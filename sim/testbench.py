"""The cocotb testbench of a generated accelerator (``TOP.v`` with AXI-Stream ports).

Run by the simulator through :mod:`bitfold.sim.runner`; the runner hands over
a JSON configuration in ``BITFOLD_SIM_CONFIG`` (the vectors file, the output
format from ``manifest.json``, stall probabilities, a seed, where to write the
result). The clock runs in the simulator (cocotb's GPI clock, no Python per
edge). One coroutine drives the streams: after a rising edge it lets the
source, the sink and the scoreboard look at the handshakes of the cycle that
just ended (values before the edge) and drive the next one. Without stalls it
skips the cycles in which nothing can happen: after an edge without a
handshake it reads the settled ``s_axis_tready`` and ``m_axis_tvalid`` of the
new cycle and, if neither handshake is possible, sleeps until one of them rises
(the design is busy computing; a frame's input beats and its result are then
the only Python work). With stalls the pauses are drawn every cycle, so it
steps every cycle. Cycles are counted from the simulation time, so skipped
cycles count the same.

The result file (``result.json``) holds the counts, the first mismatch and the
cycle figures; the test then fails if any output differed from the golden
model or the design stopped making progress.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_steps, get_sim_time

from bitfold.hw.simulate import steady_cycles_per_frame

from .frames import Vectors, decode_output, pack_beats

__all__ = ["AxisSink", "AxisSource", "Scoreboard", "run_frames", "pauses"]

CONFIG_ENV = "BITFOLD_SIM_CONFIG"
PERIOD_NS = 10


def pauses(p: float, rng: random.Random) -> Iterator[bool]:
    """An endless pause pattern: ``True`` (pause this cycle) with probability ``p``."""
    if p <= 0:
        while True:
            yield False
    while True:
        yield rng.random() < p


class AxisSource:
    """Drives ``s_axis_*`` with ``beats`` in order; idles when ``pause`` says so."""

    def __init__(self, dut, beats: list[int], pause: Iterator[bool]) -> None:
        self.tdata, self.tvalid, self.tready = dut.s_axis_tdata, dut.s_axis_tvalid, dut.s_axis_tready
        self.beats = beats
        self.pause = pause
        self.sent = 0
        self.valid = False
        self.accepted: list[int] = []  # cycle of each accepted beat (first beats only kept)
        self.tvalid.value = 0
        self.tdata.value = 0

    @property
    def done(self) -> bool:
        return self.sent == len(self.beats)

    def step(self, cycle: int) -> bool:
        """Account for the handshake of ``cycle - 1`` and drive cycle ``cycle``.

        Returns whether a beat was taken in ``cycle - 1``.
        """
        took = self.valid and bool(int(self.tready.value))
        if took:
            if self.sent == 0:
                self.accepted.append(cycle - 1)
            self.sent += 1
        valid = self.sent < len(self.beats) and not next(self.pause)
        if valid and (took or not self.valid):  # a new beat on the bus
            self.tdata.value = self.beats[self.sent]
        if valid != self.valid:
            self.tvalid.value = int(valid)
            self.valid = valid
        return took


class AxisSink:
    """Takes ``m_axis_*`` beats (data and ``tlast``), applying backpressure when ``pause`` says so."""

    def __init__(self, dut, pause: Iterator[bool]) -> None:
        self.tdata, self.tvalid, self.tready = dut.m_axis_tdata, dut.m_axis_tvalid, dut.m_axis_tready
        self.tlast = dut.m_axis_tlast
        self.pause = pause
        self.ready = False
        self.cycles: list[int] = []
        self.tready.value = 0

    def step(self, cycle: int) -> tuple[int | str, int | str] | None:
        """The beat ``(tdata, tlast)`` taken in ``cycle - 1`` (or ``None``); drive ready for ``cycle``.

        A value with X or Z bits comes back as its bit string.
        """
        beat = None
        if self.ready and int(self.tvalid.value):
            beat = (_value(self.tdata.value), _value(self.tlast.value))
            self.cycles.append(cycle - 1)
        ready = not next(self.pause)
        if ready != self.ready:
            self.tready.value = int(ready)
            self.ready = ready
        return beat


def _value(v) -> int | str:
    """A ``LogicArray`` or (a 1-bit signal's) ``Logic`` as an integer; X or Z bits as a string."""
    if not v.is_resolvable:
        return str(v)  # a mismatch
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class Scoreboard:
    """Compares each frame's output beats, in order, with the golden class and scores.

    A frame is ``output["beats_per_frame"]`` beats (one per class); its class is
    the index on the last beat, and ``tlast`` must be set on that beat only.
    """

    def __init__(self, vectors: Vectors, output: dict[str, Any]) -> None:
        self.classes = vectors.classes.tolist()
        self.scores = vectors.scores.tolist()
        self.output = output
        self.per_frame = output["beats_per_frame"]
        self.beats: list[tuple[int | str, int | str]] = []  # of the frame being received
        self.checked = 0
        self.mismatches = 0
        self.first: dict[str, Any] | None = None
        self.got: list[int | None] = []  # the RTL's class of each frame (None: X or Z bits)

    def check(self, beat: tuple[int | str, int | str]) -> bool:
        """Take the next beat ``(tdata, tlast)``; check the frame it completes. Returns whether it did."""
        self.beats.append(beat)
        if len(self.beats) < self.per_frame:
            return False
        i, words = self.checked, [w for w, _ in self.beats]
        last = [t for _, t in self.beats]
        self.beats = []
        if any(isinstance(w, str) for w in words):
            cls, scores = None, [w if isinstance(w, str) else None for w in words]
        else:
            cls, scores = decode_output(words, self.output)
        self.got.append(cls)
        want_last = [0] * (self.per_frame - 1) + [1]
        if cls != self.classes[i] or scores != self.scores[i] or last != want_last:
            self.mismatches += 1
            if self.first is None:
                self.first = {"frame": i,
                              "expected": {"class": self.classes[i], "scores": self.scores[i],
                                           "tlast": want_last},
                              "got": {"class": cls, "scores": scores, "tlast": last}}
        self.checked += 1
        return True


async def clock_and_reset(dut) -> RisingEdge:
    """Start ``aclk`` and hold ``aresetn`` low for 4 cycles; return the clock's rising edge.

    The clock runs in the simulator (GPI): no Python per edge. Values read after
    ``RisingEdge(aclk)`` are those before the edge in Icarus and Verilator alike."""
    Clock(dut.aclk, PERIOD_NS, unit="ns", impl="gpi").start()
    edge = RisingEdge(dut.aclk)
    dut.aresetn.value = 0
    for _ in range(4):
        await edge
    dut.aresetn.value = 1
    await edge
    return edge


def _result(board: Scoreboard, source: AxisSource, n: int, cycle: int, frame_cycles: list[int],
            wall: float) -> dict[str, Any]:
    """The run's ``result.json``: what the scoreboard checked, the cycles, the latency."""
    first_in = source.accepted[0] if source.accepted else None
    return {
        "frames": board.checked,
        "frames_expected": n,
        "mismatches": board.mismatches,
        "first_mismatch": board.first,
        "beats_sent": source.sent,
        "cycles": cycle,
        "cycles_per_frame": steady_cycles_per_frame(frame_cycles),
        "latency_cycles": (frame_cycles[0] - first_in) if frame_cycles and first_in is not None
        else None,
        "timed_out": board.checked < n,
        "sim_wall_s": wall,
        "classes": board.got,
    }


@cocotb.test()
async def run_frames(dut) -> None:
    """Stream every frame of the vectors file through the design and check every result."""
    path = Path(os.environ[CONFIG_ENV])
    cfg = json.loads(path.read_text())
    vectors = Vectors.load(path.parent / cfg["vectors"])  # relative to the file (or absolute)
    inp = cfg["input"]
    beats = pack_beats(vectors.frames, inp["elements_per_beat"], inp["element_bits"])
    n = len(vectors.classes)
    rng = random.Random(cfg["seed"])
    source = AxisSource(dut, beats, pauses(cfg["p_idle"], rng))
    sink = AxisSink(dut, pauses(cfg["p_stall"], rng))
    board = Scoreboard(vectors, cfg["output"])

    edge = await clock_and_reset(dut)

    start = time.perf_counter()
    period = get_sim_steps(PERIOD_NS, "ns")
    t0 = get_sim_time()
    cycle = 0
    limit = cfg["max_cycles"]
    skip = cfg["p_idle"] <= 0 and cfg["p_stall"] <= 0
    ready_rises, valid_rises = RisingEdge(source.tready), RisingEdge(sink.tvalid)
    frame_cycles: list[int] = []  # the cycle of each frame's last beat
    while board.checked < n and cycle < limit:
        await edge
        cycle = (get_sim_time() - t0) // period
        took = source.step(cycle)
        beat = sink.step(cycle)
        if beat is not None:
            if board.check(beat):
                frame_cycles.append(sink.cycles[-1])
        elif skip and not took:
            # nothing happened at this edge: if no handshake is possible in the cycle
            # it started either, sleep until tready or tvalid rises (the next edge
            # then takes the beat), or until the cycle limit
            await ReadOnly()
            wake = []
            if source.valid and not int(source.tready.value):
                wake.append(ready_rises)
            if sink.ready and not int(sink.tvalid.value):
                wake.append(valid_rises)
            if wake and len(wake) == int(source.valid) + int(sink.ready):
                await First(*wake, Timer((limit - cycle) * period))
    result = _result(board, source, n, cycle, frame_cycles, time.perf_counter() - start)
    (path.parent / cfg["result"]).write_text(json.dumps(result, indent=2) + "\n")
    # the cocotb test's verdict: raised, not asserted, so it holds under python -O too
    if result["timed_out"]:
        raise AssertionError(
            f"no progress: {board.checked} of {n} results and {source.sent} of {len(beats)} "
            f"input beats after {cycle} cycles")
    if board.mismatches:
        raise AssertionError(
            f"{board.mismatches} of {n} frames differ from the golden model; first: frame "
            f"{board.first['frame']}, expected {board.first['expected']}, got "
            f"{board.first['got']}")
