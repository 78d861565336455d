"""Every stream component in amaranth.sim against the golden model, with random stalls.

Each test streams several frames through one component with random idle
input cycles and output backpressure, and checks every output beat (no lost,
duplicated or wrong beats) against ``compiler.golden``'s function for the
node the component implements.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from bitfold.compiler import golden
from bitfold.compiler.encodings import Binary, Composite, Domain, Sparse
from bitfold.compiler.ir import (
    Layer,
    MaxPool2d,
    ScoreAffine,
    TensorType,
    Window,
)
from bitfold.compiler.memlayout import window_order
from bitfold.hw.mvu import MVU
from bitfold.hw.pool import MaxPool
from bitfold.hw.score import ScoreArgMax, score_widths
from bitfold.hw.simulate import pack, run_stream, unpack
from bitfold.hw.streams import SkidBuffer, StreamFIFO, WidthConverter
from bitfold.hw.swu import SlidingWindow
from bitfold.hw.weights import unit_weights

from .helpers import accumulator_range

STALLS = [(0.0, 0.0), (0.35, 0.4)]


def _words(vectors: np.ndarray, per_word: int, bits: int) -> list[int]:
    flat = np.asarray(vectors).reshape(-1)
    return [pack(flat[i:i + per_word], bits) for i in range(0, flat.size, per_word)]


def _elems(words: list[int], per_word: int, bits: int, is_signed: bool = False) -> list[int]:
    return [e for w in words for e in unpack(w, per_word, bits, is_signed)]


def _dense_case(rng: np.random.Generator, node, weights: np.ndarray, bits: int, thr: bool,
                n: int, **kw):
    """``n`` random input vectors of a dense layer ``node``, its golden accumulators, the
    narrowest accumulator shape (:func:`accumulator_range` of ``weights`` and ``kw``) and, with
    ``thr``, random thresholds in the accumulators' range."""
    mh, mw = weights.shape[-2:]
    bipolar = bits == 1
    t_in = TensorType((mw,), 1, True) if bipolar else TensorType((mw,), bits, False)
    x = rng.integers(0, 2 if bipolar else 1 << bits, (n, mw))
    acc = golden.layer(node, x, t_in)
    lo, hi = accumulator_range(weights, bits, bipolar, **kw)
    shape = unsigned(max(1, hi.bit_length())) if lo >= 0 else \
        signed(max(hi.bit_length(), (-lo - 1).bit_length()) + 1)
    thresholds = rng.integers(acc.min(), acc.max() + 2, mh) if thr else None
    return x, acc, shape, thresholds


def _check_stream(dut, x, acc, shape, thresholds, per_word: int, bits: int, stall):
    """Stream ``x`` through ``dut`` (``per_word`` elements a word) under ``stall``; assert its
    outputs are the golden accumulators or threshold bits; return the run."""
    mh, pe = len(acc[0]), dut.pe
    run = run_stream(dut, _words(x, per_word, bits), len(x) * mh // pe, p_idle=stall[0],
                     p_stall=stall[1], seed=7)
    if thresholds is not None:
        want, got = (acc >= thresholds).astype(int), _elems(run.outputs, pe, 1)
    else:
        want, got = acc, _elems(run.outputs, pe, shape.width, shape.signed)
    assert got == want.ravel().tolist()
    return run


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("mh,mw,pe,simd,bits,thr", [
    (8, 12, 2, 3, 1, True), (6, 10, 6, 10, 1, False), (16, 64, 4, 16, 1, True),
    (5, 7, 1, 7, 1, True), (4, 9, 1, 1, 5, True), (4, 9, 2, 9, 3, False), (3, 20, 3, 4, 8, True),
    # PE >= 4 with thresholds: shared input-pair sums (even SIMD, and odd with a lone input)
    (8, 12, 4, 6, 8, True), (8, 14, 4, 7, 5, True), (16, 32, 8, 16, 8, True),
])
@pytest.mark.parametrize("register_reads,credit", [(True, False), (False, False), (True, True)])
def test_mvu_matches_golden_dense_and_threshold(mh, mw, pe, simd, bits, thr, stall,
                                                register_reads, credit) -> None:
    rng = np.random.default_rng(mh * 1000 + mw * 10 + simd)
    n = 6
    bipolar = bits == 1
    weight = rng.integers(0, 2, (mh, mw))
    node = Layer("fc", "x", Binary(weight))
    t_in = TensorType((mw,), 1, True) if bipolar else TensorType((mw,), bits, False)
    x = rng.integers(0, 2 if bipolar else 1 << bits, (n, mw))
    acc = golden.layer(node, x, t_in)
    hi = mw if bipolar else mw * ((1 << bits) - 1)
    shape = unsigned(hi.bit_length()) if bipolar else signed(hi.bit_length() + 1)
    thresholds = rng.integers(acc.min(), acc.max() + 2, mh) if thr else None
    if bipolar:
        dut = MVU(weight, pe, simd, shape, thresholds=thresholds, register_reads=register_reads,
                  credit=credit)
    else:
        dut = MVU(weight, pe, simd, shape, thresholds=thresholds, input_bits=bits,
                  bipolar=False, register_reads=register_reads, credit=credit)
    run = run_stream(dut, _words(x, simd, bits), n * mh // pe, p_idle=stall[0],
                     p_stall=stall[1], seed=7)
    if thr:
        want = (acc >= thresholds).astype(int)
        got = _elems(run.outputs, pe, 1)
    else:
        want = acc
        got = _elems(run.outputs, pe, shape.width, shape.signed)
    assert got == want.ravel().tolist()
    if stall == (0.0, 0.0):  # one vector every NF * SF cycles, no self-stalls
        nf_sf = (mh // pe) * (mw // simd)
        assert run.out_cycles[-1] - run.out_cycles[mh // pe - 1] == (n - 1) * nf_sf


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("h,w,c,bits,k,s,p,lanes", [
    (5, 6, 2, 1, 3, 1, 1, 1), (5, 6, 2, 1, 3, 1, 1, 3), (4, 4, 1, 5, 3, 2, 1, 1),
    (3, 7, 2, 3, 2, 2, 0, 2), (2, 2, 1, 1, 3, 1, 1, 1), (6, 5, 1, 1, 1, 2, 1, 1),
    (7, 3, 3, 2, 3, 2, 3, 3),
])
def test_sliding_window_then_mvu_matches_golden_conv(h, w, c, bits, k, s, p, lanes,
                                                     stall) -> None:
    rng = np.random.default_rng(h * 100 + w * 10 + k + lanes)
    n = 3
    bipolar = bits == 1
    t_in = TensorType((h, w, c), 1, True) if bipolar else TensorType((h, w, c), bits, False)
    pad_value = int(rng.choice([-1, 1])) if bipolar else int(rng.integers(0, 1 << bits))
    c_out = 3
    node = Layer("conv", "x", Binary(rng.integers(0, 2, (c_out, k, k, c))), Window(k, s, p, pad_value))
    x = rng.integers(0, 2 if bipolar else 1 << bits, (n, h, w, c))
    dut = SlidingWindow(h, w, c, bits, k, s, p, golden.pad_bit(node, t_in), lanes)
    per_window = k // lanes
    oh, ow = dut.oh, dut.ow
    run = run_stream(dut, _words(x, c, bits), n * oh * ow * per_window, p_idle=stall[0],
                     p_stall=stall[1], seed=3)
    windows = np.array(_elems(run.outputs, lanes * k * c, bits)).reshape(n, oh, ow, -1)
    # each window (in the unit's (kx, ky, c) order) against the permuted weights = golden conv
    flat_w = node.weight.reshape(c_out, -1)[:, window_order(k, c)]
    if bipolar:
        acc = np.stack([(windows == wr).sum(-1) for wr in flat_w], -1)
    else:
        acc = windows @ np.where(flat_w == 1, 1, -1).T
    np.testing.assert_array_equal(acc, golden.layer(node, x, t_in))


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("h,w,c,k,s", [(4, 4, 3, 2, 2), (5, 5, 2, 2, 1), (3, 4, 1, 1, 2),
                                       (5, 7, 4, 3, 2)])
def test_max_pool_matches_golden(h, w, c, k, s, stall) -> None:
    rng = np.random.default_rng(h + w + c + k + s)
    n = 3
    x = rng.integers(0, 2, (n, h, w, c))
    node = MaxPool2d("pool", "x", k, s)
    want = golden.max_pool2d(node, x, TensorType((h, w, c), 1, True))
    dut = MaxPool(h, w, c, k, s)
    run = run_stream(dut, _words(x, c, 1), want[:, :, :, 0].size, p_idle=stall[0],
                     p_stall=stall[1], seed=5)
    assert _elems(run.outputs, c, 1) == want.ravel().tolist()
    if stall == (0.0, 0.0):  # one input pixel per cycle
        assert run.in_cycles[-1] - run.in_cycles[0] == x[..., 0].size - 1


def _score_case(rng: np.random.Generator, classes: int, acc_shape, scale, bias, n: int):
    """``n`` random accumulator vectors (the first three tied), golden scores and classes."""
    lo, hi = (-(1 << (acc_shape.width - 1)), (1 << (acc_shape.width - 1)) - 1) \
        if acc_shape.signed else (0, (1 << acc_shape.width) - 1)
    acc = rng.integers(lo, hi + 1, (n, classes))
    acc[:3] = rng.integers(0, 2, (3, classes))  # ties: lowest index wins
    acc[3] = hi  # the extremes of the range
    acc[4] = lo
    node = ScoreAffine("scores", "acc", np.asarray(scale), np.asarray(bias))
    t = TensorType((classes,), acc_shape.width, acc_shape.signed)
    scores = golden.score_affine(node, acc, t)
    return acc, scores, golden.arg_max(None, scores, t)


def _running_argmax(scores: np.ndarray) -> list[int]:
    """Per beat: the index of the highest score so far in its frame (lowest of ties)."""
    return [int(np.argmax(row[:k + 1])) for row in scores for k in range(len(row))]


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("classes,acc_signed,scales", [
    (10, False, (-3, 4)), (1, True, (-3, 4)), (5, True, (-3, 4)), (4, False, (1 << 20, 1 << 21)),
    (4, True, (-(1 << 22), 1 << 21)),  # scales of both signs wider than one DSP port
    (3, True, (-(1 << 12), 1 << 12))])
@pytest.mark.parametrize("split", [True, False])
def test_score_argmax_streams_every_score_then_the_class(classes, acc_signed, scales,
                                                         stall, split) -> None:
    rng = np.random.default_rng(classes)
    n = 12
    acc_shape = signed(9) if acc_signed else unsigned(8)
    scale = rng.integers(*scales, classes) * (4 if scales[0] > 0 else 1)  # common factor
    bias = rng.integers(-20, 20, classes)
    score_bits = max(16, 2 + max(abs(int(s)) for s in scale).bit_length() + acc_shape.width)
    acc, scores, cls = _score_case(rng, classes, acc_shape, scale, bias, n)
    dut = ScoreArgMax(scale, bias, acc_shape, score_bits, split_products=split)
    run = run_stream(dut, _words(acc, 1, acc_shape.width), n * classes, p_idle=stall[0],
                     p_stall=stall[1], seed=9)
    sb, cb = score_bits, dut.cbits
    got = [unpack(w, 1, sb, True)[0] for w in run.outputs]
    assert got == scores.ravel().tolist()
    assert [(w >> sb) & ((1 << cb) - 1) for w in run.outputs] == _running_argmax(scores)
    assert [w >> (sb + cb) for w in run.outputs] == \
        [int(k == classes - 1) for _ in range(n) for k in range(classes)]
    assert [(w >> sb) & ((1 << cb) - 1) for w in run.outputs[classes - 1::classes]] == \
        cls.tolist()
    if stall == (0.0, 0.0):  # one accumulator in and one beat out per cycle
        assert run.in_cycles[-1] - run.in_cycles[0] == n * classes - 1
        assert run.out_cycles[-1] - run.out_cycles[0] == n * classes - 1


def test_score_widths_shrink_to_the_range() -> None:
    # 8-bit unsigned accumulators, scales sharing 2**3: a 4-bit multiplier operand
    shift, operand, product, sum_bits = score_widths([8, 24, 120], [-5, 0, 7], unsigned(8), 32)
    assert (shift, operand, product.width) == (3, unsigned(4), 12)
    assert sum_bits == 16  # 120 * 255 + 7 = 30607 needs 16 signed bits
    # scores that fill score_bits: the product is cut to the sum's width (exact modulo 2**32)
    shift, operand, product, sum_bits = score_widths([19224381], [-1258729390], unsigned(8), 32)
    assert (shift, product.width, sum_bits) == (0, 32, 32)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("a,b,bits", [(3, 9, 1), (9, 3, 1), (4, 3, 2), (3, 4, 2), (5, 5, 3),
                                      (2, 16, 1), (32, 1, 4)])
def test_width_converter_keeps_every_element_in_order(a, b, bits, stall) -> None:
    rng = np.random.default_rng(a * 10 + b)
    total = a * b * 5
    elems = rng.integers(0, 1 << bits, total)
    run = run_stream(WidthConverter(a, b, bits), _words(elems, a, bits), total // b,
                     p_idle=stall[0], p_stall=stall[1], seed=1)
    assert _elems(run.outputs, b, bits) == elems.tolist()
    if stall == (0.0, 0.0):  # a word per cycle on the narrower side
        side = run.out_cycles if a >= b else run.in_cycles
        assert side[-1] - side[0] == len(side) - 1


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_fifo_passes_every_beat(depth) -> None:
    data = list(range(40))
    run = run_stream(StreamFIFO(8, depth), data, len(data), p_idle=0.3, p_stall=0.4, seed=2)
    assert run.outputs == data


@pytest.mark.parametrize("stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.35, 0.4), (0.7, 0.7)])
def test_skid_buffer_passes_every_beat_once_in_order(stall) -> None:
    data = list(range(200))
    run = run_stream(SkidBuffer(8), data, len(data), p_idle=stall[0], p_stall=stall[1], seed=4)
    assert run.outputs == data
    if stall == (0.0, 0.0):  # a word per cycle on both sides
        assert run.in_cycles == list(range(len(data)))
        assert run.out_cycles == [c + 1 for c in run.in_cycles]


def test_skid_buffer_ready_is_registered_and_it_holds_two_words() -> None:
    from amaranth.sim import Simulator

    dut = SkidBuffer(8)
    seen = []

    async def bench(ctx) -> None:
        ctx.set(dut.i_stream.valid, 1)
        for k in range(6):  # the consumer never takes: two words go in, then ready falls
            ctx.set(dut.i_stream.payload, 10 + k)
            readies = []
            for o_ready in (0, 1, 0):  # ready must not follow o_stream.ready within a cycle
                ctx.set(dut.o_stream.ready, o_ready)
                readies.append(ctx.get(dut.i_stream.ready))
            seen.append(readies[0])
            assert len(set(readies)) == 1
            await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        ctx.set(dut.o_stream.ready, 1)
        out = []
        for _ in range(4):
            if ctx.get(dut.o_stream.valid):
                out.append(ctx.get(dut.o_stream.payload))
            await ctx.tick()
        assert out == [10, 11]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("make,match", [
    (lambda: MVU(np.ones((6, 4)), 4, 2, unsigned(3)), r"^pe must divide the output count 6"),
    (lambda: MVU(np.ones((6, 4)), 2, 3, unsigned(3)), r"^simd must divide the input count 4"),
    (lambda: MVU(np.ones((6, 4)), 2, 2, unsigned(2)), r"^acc_shape .* cannot hold"),
    (lambda: MVU(np.full((2, 2), 2), 1, 1, unsigned(2)), r"^weights must be"),
    (lambda: SlidingWindow(4, 4, 1, 1, 3, lanes=2), r"^lanes must divide the kernel 3"),
    (lambda: SlidingWindow(2, 2, 1, 1, 3), r"^kernel 3 does not fit"),
    (lambda: WidthConverter(0, 2, 1), r"^in_elems must be a positive integer"),
    (lambda: SkidBuffer(0), r"^width must be a positive integer"),
    (lambda: ScoreArgMax([1], [1, 2], unsigned(3), 8), r"^scale and bias must be"),
])
@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructors_refuse_bad_arguments(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("scheme", ["sparse", "composite", "domain"])
@pytest.mark.parametrize("mh,mw,pe,simd,bits,thr", [
    (8, 12, 2, 3, 1, True), (6, 10, 6, 10, 1, False), (6, 10, 6, 10, 1, True),
    (4, 9, 1, 1, 5, True), (4, 9, 2, 9, 3, False), (3, 20, 3, 4, 8, True),
])
def test_sparse_and_composite_mvus_match_golden(scheme, mh, mw, pe, simd, bits, thr,
                                                stall) -> None:
    rng = np.random.default_rng(mh * 1000 + mw * 10 + simd + len(scheme))
    n = 5
    bipolar = bits == 1
    if scheme == "sparse":
        mask = (rng.random((mh, mw)) < 0.4).astype(np.uint8)
        polarity = rng.integers(0, 2, mh)
        node = Layer("fc", "x", Sparse(mask, polarity))
        kw = dict(polarity=polarity)
        weights = mask
    elif scheme == "domain":  # offsets of both signs, beyond +-scale too
        weights = rng.integers(0, 2, (mh, mw))
        offset = rng.integers(-700, 700, mh)
        scale = 256 if mh % 2 == 0 else 3
        node = Layer("fc", "x", Domain(weights, offset, scale))
        kw = dict(offset=offset, offset_scale=scale)
    else:
        weights = rng.integers(0, 2, (3, mh, mw))
        plane_scale = [256, 77, 5]
        node = Layer("fc", "x", Composite(weights, plane_scale))
        kw = dict(plane_scale=plane_scale)
    x, acc, shape, thresholds = _dense_case(rng, node, weights, bits, thr, n, **kw)
    dut = MVU(unit_weights(weights, **kw), pe, simd, shape, thresholds=thresholds,
              input_bits=bits, bipolar=bipolar)
    _check_stream(dut, x, acc, shape, thresholds, simd, bits, stall)


def _sparse_mask(rng: np.random.Generator, mh: int, mw: int, density: float,
                 equal_rows: bool) -> np.ndarray:
    """A random mask; ``equal_rows``: every row keeps ``round(density * mw)`` inputs (>= 1)."""
    if not equal_rows:
        return (rng.random((mh, mw)) < density).astype(np.uint8)
    nnz = max(1, round(density * mw))
    mask = np.zeros((mh, mw), np.uint8)
    for r in range(mh):
        mask[r, rng.choice(mw, nnz, replace=False)] = 1
    return mask


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("mh,mw,density,equal,pe,simd,in_elems,bits,thr", [
    (8, 12, 0.5, True, 2, 3, 2, 1, True),     # NF=4, SF=2: words of 2 load in 6 <= 8 cycles
    (6, 16, 0.25, True, 3, 2, None, 1, False),
    (4, 20, 0.3, False, 1, 1, None, 1, True),  # ragged rows: valid bits
    (4, 9, 0.5, False, 2, 1, 9, 5, True),      # multi-bit input, whole vector per word
    (3, 20, 0.75, True, 3, 15, 20, 8, False),  # NF * SF == 1: constant positions
    (10, 32, 0.25, True, 5, 4, None, 1, True),
    (5, 7, 0.0, False, 5, 1, None, 3, True),   # an all-zero mask: one padding slot per row
])
def test_index_mvu_matches_golden_sparse_dense(mh, mw, density, equal, pe, simd, in_elems,
                                               bits, thr, stall) -> None:
    from bitfold.hw.index_mvu import IndexMVU

    rng = np.random.default_rng(mh * 1000 + mw * 10 + simd + bits)
    n = 6
    bipolar = bits == 1
    mask = _sparse_mask(rng, mh, mw, density, equal)
    polarity = rng.integers(0, 2, mh)
    node = Layer("fc", "x", Sparse(mask, polarity))
    x, acc, shape, thresholds = _dense_case(rng, node, mask, bits, thr, n, polarity=polarity)
    dut = IndexMVU(mask, pe, simd, shape, polarity=polarity, thresholds=thresholds,
                   input_bits=bits, bipolar=bipolar, in_elems=in_elems)
    assert dut.ragged == (mask.sum(1).min() < max(1, mask.sum(1).max()))
    nf_sf = (mh // pe) * dut.sf
    assert dut.sf * simd == max(1, mask.sum(1).max())  # cycles follow the kept inputs
    assert mw // dut.in_elems <= nf_sf
    run = _check_stream(dut, x, acc, shape, thresholds, dut.in_elems, bits, stall)
    if stall == (0.0, 0.0):  # one vector every NF * SF cycles: loading overlaps computing
        assert run.out_cycles[-1] - run.out_cycles[mh // pe - 1] == (n - 1) * nf_sf


def test_index_layout_memory_is_what_the_cost_model_counts() -> None:
    from bitfold.compiler.cost import DEVICES, LayerShape, layer_cost
    from bitfold.hw.index_mvu import IndexMVU

    rng = np.random.default_rng(5)
    for equal in (True, False):
        mask = _sparse_mask(rng, 12, 40, 0.25, equal)
        k = int(mask.sum(1).max())
        dut = IndexMVU(mask, 4, 2 if k % 2 == 0 else 1, unsigned(6), polarity=np.ones(12))
        shape = LayerShape("fc", False, 12, 40, 1, 1, 6, 40, "sparse", 1, float(mask.mean()), k,
                           not equal)
        cost = layer_cost(shape, dut.pe, dut.simd, DEVICES["ecp5"], "index")
        assert cost.weight_bits == dut.weight_width * len(dut.weight_words())
        assert cost.weight_memory == dut.weight_memory and cost.sf == dut.sf
        assert dut.slot_bits == 6 + (0 if equal else 1)  # ceil(log2 40) bits, valid bit if ragged


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("mh,mw,group,kept,ragged,pe,simd,bits,thr", [
    (8, 16, 4, 1, False, 2, 2, 1, True),     # 1:4, NF=4, SF=2
    (6, 16, 2, 1, False, 3, 4, 1, False),    # 1:2, SF=2, integer output
    (4, 32, 8, 3, True, 2, 1, 1, True),      # ragged groups: valid bits
    (4, 12, 4, 2, False, 2, 3, 5, True),     # multi-bit input, SF=1
    (3, 16, 4, 1, True, 3, 4, 4, False),     # NF * SF == 1: constant positions, padding pruned
    (10, 64, 16, 4, False, 5, 2, 1, True),
])
def test_group_mvu_matches_golden_sparse_dense(mh, mw, group, kept, ragged, pe, simd, bits, thr,
                                               stall) -> None:
    from bitfold.hw.group_mvu import GroupMVU

    from .helpers import group_mask

    rng = np.random.default_rng(mh * 1000 + mw * 10 + group + bits)
    n = 6
    bipolar = bits == 1
    mask = group_mask(rng, mh, mw, group, kept, ragged)
    polarity = rng.integers(0, 2, mh)
    node = Layer("fc", "x", Sparse(mask, polarity))
    x, acc, shape, thresholds = _dense_case(rng, node, mask, bits, thr, n, polarity=polarity)
    dut = GroupMVU(mask, group, pe, simd, shape, polarity=polarity, thresholds=thresholds,
                   input_bits=bits, bipolar=bipolar)
    counts = mask.reshape(mh, -1, group).sum(axis=2)
    assert dut.kept == max(1, counts.max()) and dut.ragged == (counts.min() < dut.kept)
    nf_sf = (mh // pe) * dut.sf
    assert dut.sf * simd * group == mw  # SIMD groups of G inputs a cycle
    run = _check_stream(dut, x, acc, shape, thresholds, simd * group, bits, stall)
    if stall == (0.0, 0.0):  # one vector every NF * SF cycles
        assert run.out_cycles[-1] - run.out_cycles[mh // pe - 1] == (n - 1) * nf_sf


def test_group_layout_memory_is_what_the_cost_model_counts() -> None:
    from bitfold.compiler.cost import DEVICES, LayerShape, group_structure, layer_cost
    from bitfold.hw.group_mvu import GroupMVU

    from .helpers import group_mask

    rng = np.random.default_rng(6)
    for group, kept, ragged in ((4, 1, False), (2, 1, False), (8, 1, True)):
        mask = group_mask(rng, 12, 64, group, kept, ragged)
        g, n, rag = group_structure(mask)
        assert g == group and n == max(1, mask.reshape(12, -1, group).sum(2).max())
        dut = GroupMVU(mask, g, 4, 2, unsigned(7), polarity=np.ones(12))
        shape = LayerShape("fc", False, 12, 64, 1, 1, 7, 64, "sparse", 1, float(mask.mean()),
                           int(mask.sum(1).max()), False, g, n, rag)
        cost = layer_cost(shape, dut.pe, dut.simd, DEVICES["ecp5"], "group")
        assert cost.weight_bits == dut.weight_width * len(dut.weight_words())
        assert cost.weight_memory == dut.weight_memory and cost.sf == dut.sf
        assert cost.weight_bits < 12 * 64  # smaller than the mask, or there is no group layout
    assert group_structure(group_mask(rng, 12, 64, 8, 2, True)) == (0, 0, False)  # 1 bit/weight
    assert group_structure(rng.integers(0, 2, (12, 64))) == (0, 0, False)  # no structure


@pytest.mark.parametrize("block_pes", [1, 3, 4])
@pytest.mark.parametrize("register_reads,credit", [(True, True), (False, False)])
def test_mvu_with_some_pes_weights_forced_into_block_ram(block_pes, register_reads,
                                                         credit) -> None:
    from amaranth.back import rtlil

    rng = np.random.default_rng(block_pes)
    weight = rng.integers(0, 2, (8, 64))  # NF 2, SF 16: 32 words, read synchronously
    node = Layer("fc", "x", Binary(weight))
    x, acc, shape, thresholds = _dense_case(rng, node, weight, 1, True, 5)
    dut = MVU(weight, 4, 4, shape, thresholds=thresholds, register_reads=register_reads,
              credit=credit, block_pes=block_pes)
    _check_stream(dut, x, acc, shape, thresholds, 4, 1, STALLS[1])
    text = rtlil.convert(MVU(weight, 4, 4, shape, thresholds=thresholds, block_pes=block_pes))
    assert text.count('attribute \\rom_style "block"') == 1
    with pytest.raises(ValueError, match=r"^block_pes=5 needs 1\.\.4 PEs"):
        MVU(weight, 4, 4, shape, block_pes=5)
    with pytest.raises(ValueError, match=r"^block_pes=1 needs .* not 'lutrom'"):
        MVU(weight, 4, 16, shape, block_pes=1)  # 8 words: a LUT ROM
