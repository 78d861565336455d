"""The cocotb testbench of many accelerators in one simulator build (:mod:`bitfold.sim.multi`).

The top (``bitfold_batch`` by default) has one set of AXI-Stream ports per design,
named ``nK_s_axis_tdata`` ... ``nK_m_axis_tready``, all on one clock and reset.
The runner hands over a JSON configuration in ``BITFOLD_SIM_CONFIG``: per design,
its port prefix, its vectors file, its input and output format (from its
``manifest.json``), its idle-input and backpressure patterns (a pause fraction
and a mean burst length each, :func:`pause_pattern`), a seed and a cycle limit.

One coroutine steps every design at every rising edge with the source, sink and
scoreboard of :mod:`bitfold.sim.testbench` (each design its own, its own random
pauses and its own golden expectations). When a design has produced all its
expected frames it stays in the loop for ``drain_cycles`` more cycles with its
output ready: any further beat is counted as an extra (a duplicated or
spurious frame). A design that stops short of its frames within its cycle limit
has lost frames (``timed_out``); one that takes or gives no beat for ``stuck_cycles``
is stopped there (``stuck``). The result file holds one record per design;
the test fails if any design differed, timed out or sent extra beats.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cocotb
from cocotb.utils import get_sim_steps, get_sim_time

from bitfold.hw.simulate import steady_cycles_per_frame

from .frames import Vectors, pack_beats
from .multi import PORTS
from .testbench import (
    PERIOD_NS,
    AxisSink,
    AxisSource,
    Scoreboard,
    clock_and_reset,
)

__all__ = ["pause_pattern", "run_designs"]

CONFIG_ENV = "BITFOLD_SIM_CONFIG"


def pause_pattern(p: float, burst: float, rng: random.Random) -> Iterator[bool]:
    """An endless pause pattern: ``True`` (pause this cycle) in a fraction ``p`` of cycles.

    ``burst <= 1``: each cycle independently (as :func:`bitfold.sim.testbench.pauses`).
    Otherwise pauses come in runs of mean length ``burst`` (a two-state Markov chain whose
    stationary pause fraction is ``p``), so FIFOs fill up and drain completely.
    """
    if p <= 0:
        while True:
            yield False
    if burst <= 1 or p >= 1:
        while True:
            yield rng.random() < p
    leave = 1.0 / burst  # pause -> run
    enter = min(1.0, p * leave / (1.0 - p))  # run -> pause
    paused = rng.random() < p
    while True:
        paused = rng.random() >= leave if paused else rng.random() < enter
        yield paused


class Design:
    """One design of the batch: its ports, source, sink, scoreboard and counters."""

    def __init__(self, dut, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        prefix = cfg["prefix"]
        ports = SimpleNamespace(**{p: getattr(dut, f"{prefix}_{p}") for p in PORTS})
        vectors = Vectors.load(cfg["vectors"])
        inp = cfg["input"]
        beats = pack_beats(vectors.frames, inp["elements_per_beat"], inp["element_bits"])
        self.n_beats = len(beats)
        self.n = len(vectors.classes)
        rng = random.Random(cfg["seed"])
        self.source = AxisSource(ports, beats, pause_pattern(cfg["p_idle"], cfg["idle_burst"], rng))
        self.sink = AxisSink(ports, pause_pattern(cfg["p_stall"], cfg["stall_burst"], rng))
        self.board = Scoreboard(vectors, cfg["output"])
        self.frame_cycles: list[int] = []
        self.extra = 0
        self.done_at: int | None = None  # the cycle its last expected frame was taken
        self.progress = 0  # the last cycle a beat went in or came out
        self.stuck = False
        self.stopped_at: int | None = None  # unfinished: the cycle it was given up

    def step(self, cycle: int) -> None:
        if self.source.step(cycle):
            self.progress = cycle
        beat = self.sink.step(cycle)
        if beat is None:
            return
        self.progress = cycle
        if self.done_at is not None:
            self.extra += 1
        elif self.board.check(beat):
            self.frame_cycles.append(self.sink.cycles[-1])
            if self.board.checked == self.n:
                self.done_at = cycle

    def result(self, cycle: int) -> dict[str, Any]:
        first_in = self.source.accepted[0] if self.source.accepted else None
        return {
            "name": self.cfg["name"],
            "frames": self.board.checked,
            "frames_expected": self.n,
            "mismatches": self.board.mismatches,
            "first_mismatch": self.board.first,
            "extra_beats": self.extra,
            "partial_beats": len(self.board.beats),
            "beats_sent": self.source.sent,
            "beats_total": self.n_beats,
            "timed_out": self.done_at is None,
            "stuck": self.stuck,
            "cycles": next(c for c in (self.done_at, self.stopped_at, cycle) if c is not None),
            "cycles_per_frame": steady_cycles_per_frame(self.frame_cycles),
            "latency_cycles": (self.frame_cycles[0] - first_in)
            if self.frame_cycles and first_in is not None else None,
            "classes": self.board.got,
        }


@cocotb.test()
async def run_designs(dut) -> None:
    """Stream every design's frames concurrently; check each against its golden outputs."""
    cfg = json.loads(Path(os.environ[CONFIG_ENV]).read_text())
    designs = [Design(dut, c) for c in cfg["designs"]]
    drain = int(cfg["drain_cycles"])

    edge = await clock_and_reset(dut)

    start = time.perf_counter()
    period = get_sim_steps(PERIOD_NS, "ns")
    t0 = get_sim_time()
    cycle = 0
    active = list(designs)
    while active:
        await edge
        cycle = (get_sim_time() - t0) // period
        still = []
        for d in active:
            d.step(cycle)
            if d.done_at is not None:
                if cycle - d.done_at < drain:
                    still.append(d)
            elif cycle - d.progress > d.cfg.get("stuck_cycles", d.cfg["max_cycles"]):
                d.stuck, d.stopped_at = True, cycle  # no beat in or out that long: given up
            elif cycle < d.cfg["max_cycles"]:
                still.append(d)
            else:
                d.stopped_at = cycle
        active = still
    wall = time.perf_counter() - start
    results = [d.result(cycle) for d in designs]
    doc = {"cycles": cycle, "sim_wall_s": wall, "designs": results}
    Path(cfg["result"]).write_text(json.dumps(doc) + "\n")
    bad = [r["name"] for r in results
           if r["mismatches"] or r["timed_out"] or r["extra_beats"] or r["partial_beats"]]
    if bad:  # raised, not asserted, so it holds under python -O too
        raise AssertionError(f"{len(bad)} of {len(results)} designs differ from the golden "
                             f"model, lost or added frames: {', '.join(bad[:10])}")
