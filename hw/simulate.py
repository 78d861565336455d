"""Drive stream components in ``amaranth.sim``: beats in, beats out, cycle stamps.

:func:`run_stream` feeds a component's ``i_stream`` with given payloads and
reads ``o_stream`` with optional random idle input cycles and output
backpressure; it returns every output payload with the cycle it was taken in.
:func:`pack` and :func:`unpack` convert between element vectors and payloads
(element ``i`` at bits ``[i*bits, (i+1)*bits)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitfold.compiler.bitpack import pack_ints

__all__ = ["NetworkRun", "StreamRun", "decode_beats", "pack", "run_stream", "simulate_bench",
           "simulate_network", "steady_cycles_per_frame", "unpack"]


def pack(elems: Sequence[int] | np.ndarray, bits: int) -> int:
    """One payload from integer elements (two's complement, ``bits`` each)."""
    return pack_ints(np.asarray(elems).reshape(1, -1), bits)[0]


def unpack(word: int, n: int, bits: int, signed: bool = False) -> list[int]:
    """``n`` elements of ``bits`` bits from a payload."""
    mask = (1 << bits) - 1
    out = []
    for i in range(n):
        v = (word >> (i * bits)) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


@dataclass
class StreamRun:
    """What :func:`run_stream` saw: output payloads, their cycles, and input cycles."""

    outputs: list[int]
    out_cycles: list[int]
    in_cycles: list[int]
    cycles: int


def run_stream(dut, inputs: Sequence[int], n_out: int, *, p_idle: float = 0.0,
               p_stall: float = 0.0, seed: int = 0, max_cycles: int | None = None,
               vcd: str | None = None) -> StreamRun:
    """Simulate ``dut`` until ``n_out`` output beats were taken.

    Parameters
    ----------
    dut : wiring.Component
        Has ``i_stream`` and ``o_stream`` stream interfaces.
    inputs : sequence of int
        Input payloads, in order.
    p_idle, p_stall : float
        Probability of an idle input cycle (valid low) and of a stalled output
        cycle (ready low).
    max_cycles : int, optional
        Give up (``RuntimeError``) after this many cycles; default generous.
    """
    rng = np.random.default_rng(seed)
    inputs = list(inputs)
    if max_cycles is None:
        max_cycles = 1000 + 20 * (len(inputs) + n_out) * (1 + int(10 * max(p_idle, p_stall)))
    from amaranth.hdl import Value

    run = StreamRun([], [], [], 0)
    i_s, o_s = dut.i_stream, dut.o_stream
    # payloads as integers, also where they are data.Layout views
    i_payload, o_payload = Value.cast(i_s.payload), Value.cast(o_s.payload)

    async def bench(ctx) -> None:
        k = 0
        cycle = 0
        while len(run.outputs) < n_out:
            if cycle >= max_cycles:
                raise RuntimeError(f"no progress: {len(run.outputs)} of {n_out} outputs and "
                                   f"{k} of {len(inputs)} inputs after {cycle} cycles")
            valid = k < len(inputs) and not (p_idle and rng.random() < p_idle)
            ready = not (p_stall and rng.random() < p_stall)
            ctx.set(i_s.valid, valid)
            if valid:
                ctx.set(i_payload, inputs[k])
            ctx.set(o_s.ready, ready)
            if valid and ctx.get(i_s.ready):
                run.in_cycles.append(cycle)
                k += 1
            if ready and ctx.get(o_s.valid):
                run.outputs.append(ctx.get(o_payload))
                run.out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1
        ctx.set(i_s.valid, 0)
        run.cycles = cycle

    simulate_bench(dut, bench, vcd)
    return run


def simulate_bench(dut, bench, vcd: str | None = None) -> None:
    """Run the async testbench ``bench(ctx)`` on ``dut`` in a clocked top (optionally writing a
    VCD): for drivers other than :func:`run_stream`'s one stream in, one out."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    top = Module()  # a clock domain even for purely combinational components
    top.submodules.dut = dut
    tick = Signal()
    top.d.sync += tick.eq(~tick)
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


@dataclass
class NetworkRun:
    """Results of :func:`simulate_network`: per frame class and scores, and timing.

    ``out_cycles`` holds the cycle of each frame's last result beat; ``last``
    each beat's ``last`` flag, frame by frame (``(N, classes)``).
    """

    classes: np.ndarray
    scores: np.ndarray
    last: np.ndarray
    out_cycles: list[int]
    cycles: int

    def steady_cycles_per_frame(self, skip: int = 2) -> float:
        """Mean cycles between consecutive results after the first ``skip`` frames
        (:func:`steady_cycles_per_frame`)."""
        cycles = steady_cycles_per_frame(self.out_cycles, skip)
        if cycles is None:
            raise ValueError(f"need at least {skip + 2} frames to measure a steady state")
        return cycles


def steady_cycles_per_frame(out_cycles: Sequence[int], skip: int = 2) -> float | None:
    """Mean cycles between consecutive results (``out_cycles``, each frame's last beat)
    after the first ``skip``, over an even number of intervals (a unit computing two frames
    a pass sends them in pairs); ``None`` if too few."""
    t = list(out_cycles[skip:])
    if len(t) < 2:
        return None
    t = t[(len(t) - 1) % 2:] if len(t) > 2 else t
    return (t[-1] - t[0]) / (len(t) - 1)


def decode_beats(words: Sequence[int], classes: int, score_bits: int,
                 class_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames from result beats (:func:`~.score.result_layout`, ``classes`` per frame).

    Returns each frame's class (the argmax of its last beat), scores and ``last`` flags.
    """
    beats = np.asarray(words, dtype=object).reshape(-1, classes)
    scores = [[unpack(int(w), 1, score_bits, signed=True)[0] for w in row] for row in beats]
    cls = [(int(row[-1]) >> score_bits) & ((1 << class_bits) - 1) for row in beats]
    last = [[int(w) >> (score_bits + class_bits) & 1 for w in row] for row in beats]
    return (np.array(cls, dtype=np.int64), np.array(scores, dtype=np.int64).reshape(-1, classes),
            np.array(last, dtype=bool).reshape(-1, classes))


def simulate_network(plan, frames: np.ndarray, *, p_idle: float = 0.0, p_stall: float = 0.0,
                     seed: int = 0) -> NetworkRun:
    """Run ``frames`` (``(N, *input shape)``, bits for a bipolar input) through the whole network.

    Returns each frame's class and scores as the hardware produced them.
    """
    from .top import Dataflow

    frames = np.asarray(frames)
    inputs = [pack(beat, plan.input_bits) for f in frames for beat in plan.frame_beats(f)]
    dut = Dataflow(plan)
    slack = plan.cycles_per_frame * (len(frames) + 4) * (1 + int(10 * max(p_idle, p_stall)))
    n_out = len(frames) * plan.classes
    run = run_stream(dut, inputs, n_out, p_idle=p_idle, p_stall=p_stall, seed=seed,
                     max_cycles=10_000 + 4 * slack + 20 * (len(inputs) + n_out))
    classes, scores, last = decode_beats(run.outputs, plan.classes, plan.score_bits,
                                         plan.class_bits)
    return NetworkRun(classes, scores, last, run.out_cycles[plan.classes - 1::plan.classes],
                      run.cycles)
