"""The UART bridge and the self-test top in amaranth.sim against the golden model."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from bitfold.boards.host import BridgeFormat, decode_result, encode_frame
from bitfold.boards.tops import RECORD_BYTES, SelfTest, Serializer, UARTBridge, parse_record
from bitfold.compiler.golden import run_reference
from bitfold.hw.plan import build_plan
from bitfold.hw.simulate import pack, run_stream

from .helpers import tiny_folding, tiny_graph, uart_receive, uart_send

DIVISOR = 8


def _frames(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 16, (n, 4, 4, 1))


def _stop_and_wait(dut, fmt, frames, got):
    """The host protocol of ``bitfold infer``: send a frame, read its result, repeat."""

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for frame in frames:
            await uart_send(ctx, dut.rx, encode_frame(fmt, frame), DIVISOR)
            got.append(decode_result(fmt, await uart_receive(ctx, dut.tx, fmt.out_bytes,
                                                             DIVISOR)))
    return host


def test_uart_bridge_returns_the_golden_class_and_scores() -> None:
    graph = tiny_graph()
    plan = build_plan(graph, tiny_folding(graph))
    fmt = BridgeFormat.from_plan(plan, baud=1_500_000, clock_mhz=12.0)
    x = _frames(3)
    ref = run_reference(graph, x)
    dut = UARTBridge(plan, DIVISOR)
    got = []

    sim = Simulator(dut)
    sim.add_clock(1 / 12e6)
    sim.add_testbench(_stop_and_wait(dut, fmt, x, got))
    sim.run()
    assert [c for c, _ in got] == ref["class"].tolist()
    assert [s for _, s in got] == ref["scores"].tolist()


def _selftest(expected_flip: bool) -> tuple[dict, bool, bool]:
    graph = tiny_graph()
    plan = build_plan(graph, tiny_folding(graph))
    x = _frames(4)
    classes = run_reference(graph, x)["class"].tolist()
    if expected_flip:
        classes[2] = (classes[2] + 1) % 3
    beats = [pack(b, plan.stages[0].in_bits) for f in x for b in plan.frame_beats(f)]
    dut = SelfTest(plan, beats, classes, DIVISOR)
    seen = {}

    async def tb(ctx):
        record = await uart_receive(ctx, dut.tx, RECORD_BYTES, DIVISOR)
        seen.update(parse_record(record, 12e6), passed_led=ctx.get(dut.passed),
                    failed_led=ctx.get(dut.failed))

    sim = Simulator(dut)
    sim.add_clock(1 / 12e6)
    sim.add_testbench(tb)
    sim.run()
    return seen


def test_selftest_passes_on_golden_classes_and_reports_fps() -> None:
    seen = _selftest(expected_flip=False)
    assert seen["passed"] and seen["passed_led"] and not seen["failed_led"]
    assert seen["mismatches"] == 0 and seen["frames"] == 4
    assert seen["cycles"] > 0 and seen["fps"] == pytest.approx(4 * 12e6 / seen["cycles"])


def test_selftest_fails_when_an_expected_class_is_flipped() -> None:
    seen = _selftest(expected_flip=True)
    assert not seen["passed"] and seen["failed_led"] and not seen["passed_led"]
    assert seen["mismatches"] == 1


def test_uart_bridge_buffers_a_frame_sent_back_to_back() -> None:
    graph = tiny_graph()
    plan = build_plan(graph, tiny_folding(graph))
    fmt = BridgeFormat.from_plan(plan, baud=1_500_000, clock_mhz=12.0)
    x = _frames(2, seed=7)
    dut = UARTBridge(plan, DIVISOR)
    got = []

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for frame in x:
            await uart_send(ctx, dut.rx, encode_frame(fmt, frame), DIVISOR)

    async def listener(ctx):
        for _ in x:
            got.append(decode_result(fmt, await uart_receive(ctx, dut.tx, fmt.out_bytes,
                                                             DIVISOR)))

    sim = Simulator(dut)
    sim.add_clock(1 / 12e6)
    sim.add_testbench(host, background=True)
    sim.add_testbench(listener)
    sim.run()
    assert [c for c, _ in got] == run_reference(graph, x)["class"].tolist()


@pytest.mark.parametrize("score_bits,class_bits", [(8, 2), (12, 4), (17, 9)])
def test_serializer_sends_each_score_then_the_class_after_the_last(score_bits, class_bits) -> None:
    rng = np.random.default_rng(score_bits)
    classes, frames = 3, 6
    scores = rng.integers(-(1 << (score_bits - 1)), 1 << (score_bits - 1), (frames, classes))
    index = rng.integers(0, 1 << class_bits, (frames, classes))
    last = np.arange(classes) == classes - 1
    beats = [int(s) & ((1 << score_bits) - 1) | int(c) << score_bits |
             int(t) << (score_bits + class_bits)
             for s, c, t in zip(scores.ravel(), index.ravel(), np.tile(last, frames), strict=True)]
    ns, nc = (score_bits + 7) // 8, (class_bits + 7) // 8
    want = b"".join(b"".join(int(s).to_bytes(ns, "little", signed=True) for s in row_s) +
                    int(row_c[-1]).to_bytes(nc, "little")
                    for row_s, row_c in zip(scores, index, strict=True))
    run = run_stream(Serializer(score_bits, class_bits), beats, len(want), p_idle=0.3,
                     p_stall=0.4, seed=score_bits)
    assert bytes(run.outputs) == want


def test_selftest_refuses_a_wrong_number_of_beats() -> None:
    graph = tiny_graph()
    plan = build_plan(graph, tiny_folding(graph))
    with pytest.raises(ValueError, match=r"^2 frames need \d+ input beats, not 1$"):
        SelfTest(plan, [0], [0, 1], DIVISOR)


def test_encode_decode_round_trip() -> None:
    fmt = BridgeFormat((2, 2, 1), 2, 4, 2, 2, 3, 8, 115200, 12.0)
    assert encode_frame(fmt, np.array([1, 2, 15, 3])) == bytes([0x21, 0x3F])
    assert fmt.out_bytes == 4  # three 1-byte scores, then the class
    assert decode_result(fmt, bytes([0xFF, 0x05, 0x80, 0x02])) == (2, [-1, 5, -128])
    with pytest.raises(ValueError, match=r"^a result is 4 bytes, not 3$"):
        decode_result(fmt, bytes(3))
    with pytest.raises(ValueError, match=r"^a frame has 4 elements"):
        encode_frame(fmt, np.zeros(5))


@pytest.mark.slow
def test_uart_bridge_with_trained_mlp_digits() -> None:
    """A digits frame over the simulated UART through the trained mlp-digits returns golden."""
    from pathlib import Path

    from bitfold.compiler.folding import fold_for_budget
    from bitfold.compiler.serialize import load_graph

    build = Path(__file__).resolve().parents[2] / "build" / "mlp-digits-digits"
    if not (build / "graph.json").is_file():
        pytest.skip(f"{build} not built (bitfold train + compile mlp-digits on digits)")
    from sklearn.datasets import load_digits

    graph = load_graph(build)
    plan = build_plan(graph, fold_for_budget(graph, 1000, 26, 12.0, "ice40"))
    fmt = BridgeFormat.from_plan(plan, baud=1_500_000, clock_mhz=12.0)
    x = load_digits().images[-2:].astype(np.int64)[..., None]
    ref = run_reference(graph, x)
    dut = UARTBridge(plan, DIVISOR)
    got = []

    sim = Simulator(dut)
    sim.add_clock(1 / 12e6)
    sim.add_testbench(_stop_and_wait(dut, fmt, x, got))
    sim.run()
    assert [c for c, _ in got] == ref[graph.outputs[0]].tolist()
