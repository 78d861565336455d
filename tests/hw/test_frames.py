"""Two-frame MVUs (``frames=2``, hw/frames.py) in amaranth.sim against the golden model.

Every weight encoding and input kind the dense layout builds, odd and even frame counts
(the last frame of an odd stream goes alone), random stalls on both sides, with and
without credits; and, unstalled, two frames every ``NF * SF`` cycles.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Binary, Composite, Domain, Sparse
from bitfold.compiler.errors import FoldingError
from bitfold.compiler.folding import evaluate_folding, fold_for_fps
from bitfold.compiler.ir import Layer
from bitfold.hw.frames import Unpair
from bitfold.hw.mvu import MVU
from bitfold.hw.simulate import run_stream
from bitfold.hw.weights import unit_weights

from ..compiler.randgraphs import SCHEMES, lowered_graphs, random_inputs
from .helpers import folded, random_folding
from .test_components import STALLS, _check_stream, _dense_case, _elems, _words
from .test_network import check_network, small_mlp


def _layer(scheme: str, rng: np.random.Generator, mh: int, mw: int):
    """A random layer of ``scheme``, its weights and the unit's keyword arguments."""
    if scheme == "sparse":
        mask = (rng.random((mh, mw)) < 0.4).astype(np.uint8)
        polarity = rng.integers(0, 2, mh)
        return Layer("fc", "x", Sparse(mask, polarity)), mask, dict(polarity=polarity)
    if scheme == "domain":
        weights = rng.integers(0, 2, (mh, mw))
        offset, scale = rng.integers(-300, 300, mh), 3
        return (Layer("fc", "x", Domain(weights, offset, scale)), weights,
                dict(offset=offset, offset_scale=scale))
    if scheme == "composite":
        planes, plane_scale = rng.integers(0, 2, (2, mh, mw)), [9, 2]
        return Layer("fc", "x", Composite(planes, plane_scale)), planes, \
            dict(plane_scale=plane_scale)
    weights = rng.integers(0, 2, (mh, mw))
    return Layer("fc", "x", Binary(weights)), weights, {}


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("scheme,mh,mw,pe,simd,bits,thr", [
    ("binary", 8, 12, 2, 3, 1, True), ("binary", 16, 64, 4, 16, 1, True),
    ("binary", 6, 10, 3, 5, 1, False), ("binary", 4, 9, 2, 3, 5, True),
    ("binary", 8, 12, 4, 6, 8, True),  # PE >= 4, thresholds: shared input pairs
    ("binary", 4, 20, 2, 4, 8, False), ("sparse", 8, 12, 2, 3, 1, True),
    ("sparse", 6, 10, 2, 5, 3, False), ("composite", 8, 12, 2, 3, 1, True),
    ("domain", 8, 12, 2, 3, 1, True), ("domain", 6, 10, 3, 5, 3, False),
])
@pytest.mark.parametrize("credit", [False, True])
def test_two_frame_mvu_matches_golden(scheme, mh, mw, pe, simd, bits, thr, n, stall,
                                      credit) -> None:
    rng = np.random.default_rng(mh * 1000 + mw * 10 + simd + len(scheme) + n)
    node, weights, kw = _layer(scheme, rng, mh, mw)
    x, acc, shape, thresholds = _dense_case(rng, node, weights, bits, thr, n, **kw)
    dut = MVU(unit_weights(weights, **kw), pe, simd, shape, thresholds=thresholds,
              input_bits=bits, bipolar=bits == 1, credit=credit, frames=2)
    run = _check_stream(dut, x, acc, shape, thresholds, simd, bits, stall)
    if stall == (0.0, 0.0) and n == 8:  # a pair every NF * SF cycles: half a pass a frame
        nf, nf_sf = mh // pe, (mh // pe) * (mw // simd)
        ends = run.out_cycles[2 * nf - 1::2 * nf]  # each pair's last word
        assert np.diff(ends).tolist() == [nf_sf] * (n // 2 - 1)


def test_a_lone_frame_leaves_without_a_partner() -> None:
    """One frame alone comes out (after the lone timer), exactly, and the next pair after it."""
    rng = np.random.default_rng(3)
    node, weights, _ = _layer("binary", rng, 8, 12)
    x, acc, shape, thresholds = _dense_case(rng, node, weights, 1, True, 3)
    for frames in (x[:1], x):
        dut = MVU(weights, 2, 3, shape, thresholds=thresholds, frames=2)
        _check_stream(dut, frames, acc[:len(frames)], shape, thresholds, 3, 1, (0.0, 0.0))


@pytest.mark.parametrize("stall", STALLS)
def test_unpair_sends_each_frame_in_order_and_drops_a_lone_partner(stall) -> None:
    width, folds = 5, 3
    rng = np.random.default_rng(1)
    words, want = [], []
    for lone, first in ((0, 0), (1, 0), (0, 1), (0, 0), (1, 1), (0, 1)):
        a, b = rng.integers(0, 1 << width, (2, folds))
        words += [int(a[k]) | int(b[k]) << width | lone << 2 * width | first << 2 * width + 1
                  for k in range(folds)]
        earlier, later = (b, a) if first else (a, b)
        want += earlier.tolist() + ([] if lone else later.tolist())
    run = run_stream(Unpair(width, folds), words, len(want), p_idle=stall[0],
                     p_stall=stall[1], seed=5)
    assert run.outputs == want


@pytest.mark.parametrize("kw", [dict(pe=8, simd=3), dict(pe=2, simd=12)])
def test_two_frames_need_two_folds_each_way(kw) -> None:
    weights = np.random.default_rng(0).integers(0, 2, (8, 12))
    with pytest.raises(ValueError, match="frames must be 1, or 2 for the dense layout"):
        MVU(weights, acc_shape=4, thresholds=np.zeros(8, int), frames=2, **kw)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lowered_graphs(max_layers=2, schemes=SCHEMES), st.integers(0, 2**16))
def test_random_networks_with_two_frame_layers_are_bit_exact(graph, seed) -> None:
    graph = folded(graph)
    folding = random_folding(graph, np.random.default_rng(seed), frames=0.9)
    x = random_inputs(graph, 5, seed)  # odd: the last frame goes alone
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=seed)


def test_two_frame_network_meets_the_cycle_model_and_the_search_finds_it() -> None:
    graph = small_mlp()
    folding = evaluate_folding(graph, {"fc0": (2, 4, None, 0, 2), "fc1": (1, 2, None, 0, 2)})
    assert [c.cycles for c in folding.layers] == [8, 6]
    x = np.random.default_rng(1).integers(0, 16, (12, 4, 4, 1))
    run = check_network(graph, folding, x)
    assert run.steady_cycles_per_frame() == folding.cycles_per_frame
    # for a budget the one-frame units reach only with twice the lanes, the search may
    # take two frames a pass, and only when asked
    one = fold_for_fps(graph, 12.5e6, clock_mhz=100)
    assert all(c.frames == 1 for c in one.layers)
    two = fold_for_fps(graph, 12.5e6, clock_mhz=100, two_frame=True)
    assert two.cycles_per_frame <= 8 and two.total("luts") <= one.total("luts")
    check_network(graph, two, x, p_idle=0.3, p_stall=0.3, seed=4)


def test_illegal_two_frame_entries_are_refused_naming_the_layer() -> None:
    graph = small_mlp()
    with pytest.raises(FoldingError, match="layer 'fc0': frames=2 is illegal"):
        evaluate_folding(graph, {"fc0": (8, 4, None, 0, 2), "fc1": (1, 2)})  # NF = 1
    with pytest.raises(FoldingError, match="frames=3 is illegal"):
        evaluate_folding(graph, {"fc0": (2, 4, None, 0, 3), "fc1": (1, 2)})


def test_a_partner_begun_early_waits_for_the_lone_pass_and_keeps_its_place() -> None:
    """A unit upstream may send the first words of the next frame early (a padded sliding
    window does): the frame before still leaves alone after the lone timer, and the early
    frame, finished later, is the first of the next pass."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(5)
    node, weights, _ = _layer("binary", rng, 8, 12)
    x, acc, shape, thresholds = _dense_case(rng, node, weights, 1, True, 4)
    dut = MVU(weights, 2, 3, shape, thresholds=thresholds, frames=2)
    words = _words(x, 3, 1)  # 4 words a frame, NF = 4: a pass of 16 cycles
    got: list[int] = []
    seen_at_pause: list[int] = []

    async def tick(ctx) -> None:  # a cycle; an output beat is taken when valid (ready is 1)
        if ctx.get(dut.o_stream.valid):
            got.append(ctx.get(dut.o_stream.payload))
        await ctx.tick()

    async def bench(ctx) -> None:
        ctx.set(dut.o_stream.ready, 1)
        for k, word in enumerate(words):
            if k == 5:  # frame 0 and one word of frame 1, then nothing for a while
                ctx.set(dut.i_stream.valid, 0)
                for _ in range(80):
                    await tick(ctx)
                seen_at_pause.append(len(got))
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, word)
            while not ctx.get(dut.i_stream.ready):
                await tick(ctx)
            await tick(ctx)  # the word is taken at this edge
        ctx.set(dut.i_stream.valid, 0)
        for _ in range(200):
            await tick(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen_at_pause == [4]  # frame 0 came out alone during the pause
    assert _elems(got, 2, 1) == (acc >= thresholds).astype(int).ravel().tolist()


def test_a_board_fit_check_keeps_two_frames() -> None:
    from bitfold.boards.flow import check_fits
    from bitfold.boards.targets import get_board

    graph = small_mlp()
    folding = evaluate_folding(graph, {"fc0": (2, 4, None, 0, 2), "fc1": (1, 2, None, 0, 2)})
    costed = check_fits(graph, folding, get_board("ulx3s-85f"))
    assert [c.frames for c in costed.layers] == [2, 2]
    assert costed.cycles_per_frame == folding.cycles_per_frame == 8
