"""The residual stream's units in amaranth.sim against compiler.golden, with random stalls."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value, signed, unsigned

from bitfold.compiler import golden
from bitfold.compiler.ir import Add, AvgPool2d, Requantize, Threshold, Upsample2d
from bitfold.hw.residual import (
    AvgPoolStream,
    RequantAdd,
    StreamFork,
    StreamThreshold,
    UpsampleStream,
)
from bitfold.hw.simulate import pack, run_stream, simulate_bench, unpack

STALLS = [(0.0, 0.0), (0.35, 0.4)]


def _drive(dut, inputs: dict[str, list[int]], outputs: dict[str, int], p_idle: float,
           p_stall: float, seed: int) -> tuple[dict[str, list[int]], int]:
    """Feed each input stream its payloads and take ``outputs[name]`` beats from each output
    stream, every port idling or stalling at random on its own; returns the beats taken
    and the cycles it took."""
    rng = np.random.default_rng(seed)
    got: dict[str, list[int]] = {name: [] for name in outputs}
    cycles = [0]

    async def bench(ctx) -> None:
        pos = dict.fromkeys(inputs, 0)
        while any(len(got[n]) < k for n, k in outputs.items()):
            assert cycles[0] < 5000 + 40 * sum(map(len, inputs.values())), "no progress"
            offered = {}
            for name, words in inputs.items():
                port = getattr(dut, name)
                offered[name] = pos[name] < len(words) and not rng.random() < p_idle
                ctx.set(port.valid, offered[name])
                if offered[name]:
                    ctx.set(Value.cast(port.payload), words[pos[name]])
            ready = {}
            for name in outputs:
                ready[name] = not rng.random() < p_stall
                ctx.set(getattr(dut, name).ready, ready[name])
            for name in inputs:
                if offered[name] and ctx.get(getattr(dut, name).ready):
                    pos[name] += 1
            for name in outputs:
                port = getattr(dut, name)
                if ready[name] and ctx.get(port.valid):
                    got[name].append(ctx.get(Value.cast(port.payload)))
            await ctx.tick()
            cycles[0] += 1

    simulate_bench(dut, bench)
    return got, cycles[0]


def _pixels(x: np.ndarray, bits: int) -> list[int]:
    """A map's pixels (last axis the channels), one payload each."""
    return [pack(p, bits) for p in x.reshape(-1, x.shape[-1])]


def _unpixels(words: list[int], c: int, bits: int, is_signed: bool = True) -> np.ndarray:
    return np.array([unpack(w, c, bits, is_signed) for w in words], dtype=np.int64)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("c,bits", [(3, 4), (8, 8), (1, 2)])
def test_stream_threshold_is_the_threshold_node(c, bits, stall) -> None:
    rng = np.random.default_rng(c * bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (40, c))
    thresholds = rng.integers(lo, hi + 2, c)
    thresholds[0] = lo if c > 1 else thresholds[0]  # always +1
    want = golden.threshold(Threshold("t", "x", thresholds), x, None)
    run = run_stream(StreamThreshold(c, bits, thresholds), _pixels(x, bits), len(x),
                     p_idle=stall[0], p_stall=stall[1], seed=1)
    assert _unpixels(run.outputs, c, 1, False).tolist() == want.tolist()
    if stall == (0.0, 0.0):  # a pixel a cycle
        assert run.out_cycles[-1] - run.out_cycles[0] == len(x) - 1


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("acc_signed,skip_c,lanes", [(False, 4, 4), (True, 2, 4), (False, 0, 4),
                                                     (True, 3, 2), (False, 2, 1)])
def test_requant_add_is_requantize_then_add(acc_signed, skip_c, lanes, stall) -> None:
    rng = np.random.default_rng(skip_c + lanes)
    c, bits, shift, n = 4, 6, 5, 50
    beats = c // lanes  # an MVU's neuron folds: lanes channels a beat
    acc_shape = signed(9) if acc_signed else unsigned(8)
    acc = rng.integers(-256 if acc_signed else 0, 256, (n, c))
    mult, bias = rng.integers(-90, 90, c), rng.integers(-3000, 3000, c)
    q = golden.requantize(Requantize("q", "acc", mult, bias, shift, bits), acc, None)
    inputs = {"i_stream": _pixels(acc.reshape(n * beats, lanes), acc_shape.width)}
    want = q
    if skip_c:
        skip = rng.integers(-32, 32, (n, skip_c))
        want = golden.add(Add("r", "q", "s", bits), q, skip)
        inputs["skip_stream"] = _pixels(skip, bits)
    dut = RequantAdd(c, acc_shape, mult, bias, shift, bits, skip_c, lanes=lanes)
    got, cycles = _drive(dut, inputs, {"o_stream": n * beats}, stall[0], stall[1], seed=2)
    assert _unpixels(got["o_stream"], lanes, bits).reshape(n, c).tolist() == want.tolist()
    assert (np.abs(want) == 32).any() or (want == 31).any()  # saturation is reached
    if stall == (0.0, 0.0):
        assert cycles <= n * beats + 5  # a beat a cycle, four registered stages


@pytest.mark.parametrize("p_stall", [0.0, 0.5])
def test_fork_gives_both_consumers_every_beat(p_stall) -> None:
    data = list(range(1, 61))
    got, cycles = _drive(StreamFork(8), {"i_stream": data},
                         {"a_stream": len(data), "b_stream": len(data)}, 0.2, p_stall, seed=3)
    assert got["a_stream"] == data and got["b_stream"] == data
    if p_stall == 0.0:
        assert cycles <= len(data) * 1.6  # only the input's idle cycles slow it


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("h,w,c,k", [(4, 6, 2, 2), (5, 5, 1, 2), (8, 8, 3, 4)])
def test_avg_pool_stream_floors_like_the_node(h, w, c, k, stall) -> None:
    rng = np.random.default_rng(h * w)
    bits = 5
    x = rng.integers(-16, 16, (2, h, w, c))
    want = golden.avg_pool2d(AvgPool2d("p", "r", k, k), x, None)
    run = run_stream(AvgPoolStream(h, w, c, bits, k, k), _pixels(x, bits),
                     want[..., 0].size, p_idle=stall[0], p_stall=stall[1], seed=4)
    assert _unpixels(run.outputs, c, bits).tolist() == want.reshape(-1, c).tolist()


def test_avg_pool_refuses_a_window_it_cannot_divide_by() -> None:
    with pytest.raises(ValueError, match=r"^kernel 3: the hardware divides by a power of two"):
        AvgPoolStream(6, 6, 1, 4, 3, 3)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("h,w,f", [(2, 3, 2), (3, 1, 3), (1, 4, 2)])
def test_upsample_stream_repeats_like_the_node(h, w, f, stall) -> None:
    rng = np.random.default_rng(h + w + f)
    x = rng.integers(-8, 8, (3, h, w, 2))
    want = golden.upsample2d(Upsample2d("u", "r", f), x, None)
    run = run_stream(UpsampleStream(h, w, 2 * 4, f), _pixels(x, 4), want[..., 0].size,
                     p_idle=stall[0], p_stall=stall[1], seed=5)
    assert _unpixels(run.outputs, 2, 4).tolist() == want.reshape(-1, 2).tolist()
    if stall == (0.0, 0.0):  # an output pixel a cycle
        assert run.out_cycles[-1] - run.out_cycles[0] == want[..., 0].size - 1


def _block_case(rng: np.random.Generator, h: int, w: int, c_in: int, c_out: int, stride: int,
                bits: int = 5):
    """A random pre-activation block, its golden graph's pieces and input maps."""
    from bitfold.compiler.encodings import Binary
    from bitfold.compiler.ir import Layer, TensorType, Window

    weights = rng.integers(0, 2, (c_out, 3, 3, c_in)).astype(np.uint8)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    thresholds = rng.integers(lo, hi + 2, c_in)
    mult, bias = rng.integers(-40, 40, c_out), rng.integers(-600, 600, c_out)
    x = rng.integers(lo, hi + 1, (3, h, w, c_in))
    pad_bit = int(rng.integers(0, 2))
    a = golden.threshold(Threshold("a", "r", thresholds), x, None)
    conv = Layer("conv", "a", Binary(weights), Window(3, stride, 1, 2 * pad_bit - 1))
    acc = golden.layer(conv, a, TensorType((h, w, c_in), 1, True))
    q = golden.requantize(Requantize("q", "conv", mult, bias, 6, bits), acc, None)
    skip = golden.avg_pool2d(AvgPool2d("p", "r", 2, 2), x, None) if stride == 2 else x
    want = golden.add(Add("r1", "q", "s", bits), q, skip)
    return dict(thresholds=thresholds, weights=weights, stride=stride, pad_bit=pad_bit,
                mult=mult, bias=bias, shift=6), x, want


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("h,w,c_in,c_out,stride,pe,simd", [
    (4, 5, 2, 2, 1, 1, 9), (6, 4, 2, 3, 2, 3, 6), (5, 5, 1, 2, 1, 2, 3)])
def test_residual_block_is_the_unit_of_the_golden_model(h, w, c_in, c_out, stride, pe, simd,
                                                        stall) -> None:
    from bitfold.hw.residual import ResidualBlock

    params, x, want = _block_case(np.random.default_rng(h * w + c_out), h, w, c_in, c_out,
                                  stride)
    dut = ResidualBlock.from_weights(h, w, c_in, 5, pe=pe, simd=simd, **params)
    run = run_stream(dut, _pixels(x, 5), want.size // pe, p_idle=stall[0],
                     p_stall=stall[1], seed=6)
    got = _unpixels(run.outputs, pe, 5).reshape(-1, c_out)  # pe channels a beat
    assert got.tolist() == want.reshape(-1, c_out).tolist()


def test_a_skip_fifo_below_the_minimum_is_refused_and_would_deadlock() -> None:
    from bitfold.hw.residual import ResidualBlock, skip_fifo_min

    h, w = 5, 6
    assert skip_fifo_min(h, w, 3, 1, 1) == 2 * w  # output row i waits for input row i + 1
    assert skip_fifo_min(8, 8, 3, 2, 1) == 4  # a pooled row
    params, x, want = _block_case(np.random.default_rng(0), h, w, 2, 2, 1)
    with pytest.raises(ValueError, match=r"^skip FIFO of 6 pixels: the block needs at least 12 "
                                         r"\(5x6 input, kernel 3, stride 1\) or its dataflow "
                                         r"can deadlock$"):
        ResidualBlock.from_weights(h, w, 2, 5, pe=2, simd=6, skip_depth=6, **params)
    exact = ResidualBlock.from_weights(h, w, 2, 5, pe=2, simd=6, skip_depth=12, **params)
    run = run_stream(exact, _pixels(x, 5), want[..., 0].size, p_idle=0.3, p_stall=0.3, seed=1)
    assert _unpixels(run.outputs, 2, 5).tolist() == want.reshape(-1, 2).tolist()
    small = ResidualBlock.from_weights(h, w, 2, 5, pe=2, simd=6, skip_depth=6, unsafe_depth=True,
                                       **params)
    with pytest.raises(RuntimeError, match=r"^no progress"):
        run_stream(small, _pixels(x, 5), want[..., 0].size, max_cycles=3000)
