"""Residual streams in the IR: Requantize, Add, AvgPool2d, Upsample2d (docs/ir.md,
"Residual streams"): hand-computed values, what verify refuses, the file round trip, and
random residual networks through both executors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Binary
from bitfold.compiler.errors import IRError
from bitfold.compiler.golden import run_reference
from bitfold.compiler.ir import (
    Add,
    AffineArgMax,
    AffineSign,
    AvgPool2d,
    Input,
    Layer,
    Requantize,
    Threshold,
    Upsample2d,
    Window,
)
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold
from bitfold.compiler.serialize import load_graph, save_graph
from bitfold.compiler.verify import build_graph, value_ranges

from .randgraphs import random_inputs, residual_graphs


def _stream(values: list[int], bits: int = 4):
    """A graph whose ``r`` is ``values`` (one channel each) on a bipolar 1-input layer."""
    c = len(values)
    weight = np.ones((c, 1), np.uint8)  # popcount of xnor(x, 1): 1 for x = +1
    return [Input("x", (1,), 1, signed=True), Layer("acc", "x", Binary(weight)),
            Requantize("r", "acc", np.zeros(c, np.int64), np.array(values, np.int64), 0, bits)]


def test_requantize_floors_toward_minus_infinity_and_saturates() -> None:
    # acc in 0..3 (a 3-input popcount); mult 5, bias -7, shift 2: floor((5 a - 7) / 4)
    nodes = [Input("x", (3,), 1, signed=True), Layer("acc", "x", Binary(np.ones((2, 3), np.uint8))),
             Requantize("r", "acc", np.array([5, -9]), np.array([-7, 3]), 2, 3)]
    g = build_graph("g", nodes, ["r"])
    x = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])  # acc = 0, 1, 2, 3
    got = run_reference(g, x)["r"]
    # channel 0: floor(-7/4) = -2, floor(-2/4) = -1, floor(3/4) = 0, floor(8/4) = 2
    # channel 1: floor(3/4) = 0, floor(-6/4) = -2, floor(-15/4) = -4 (the int3 floor), -6 -> -4
    assert got.tolist() == [[-2, 0], [-1, -2], [0, -4], [2, -4]]
    assert g.types["r"].bits == 3 and g.types["r"].signed
    assert value_ranges(g)["r"] == (-4, 2)


def test_add_saturates_and_zero_extends_a_narrower_skip() -> None:
    nodes = _stream([7, -8, 3]) + [
        Layer("acc2", "x", Binary(np.ones((2, 1), np.uint8))),
        Requantize("s", "acc2", np.zeros(2, np.int64), np.array([5, -5]), 0, 4),
        Add("sum", "r", "s", 4)]
    g = build_graph("g", nodes, ["sum"])
    got = run_reference(g, np.array([[1]]))["sum"]
    assert got.tolist() == [[7, -8, 3]]  # 7 + 5 and -8 - 5 saturate to int4; channel 2 + 0
    assert run_packed(g, np.array([[1]]))["sum"].tolist() == [[7, -8, 3]]


def test_avg_pool_floors_and_upsample_repeats() -> None:
    # a 2x2 map of one channel: -1, -2 / 0, 0 -> sum -3 -> floor(-3 / 4) = -1
    rows = np.array([[1, 1, 0, 0]], np.uint8).T  # 4 outputs on a 1-input layer
    nodes = [Input("x", (2, 2, 1), 1, signed=True),
             Layer("acc", "x", Binary(np.ones((1, 1, 1, 1), np.uint8)), Window(1, 1, 0, 1)),
             Requantize("r", "acc", np.array([1]), np.array([-2]), 0, 4),
             AvgPool2d("p", "r", 2, 2), Upsample2d("u", "p", 3)]
    g = build_graph("g", nodes, ["u"])
    x = rows.reshape(1, 2, 2, 1)  # r = acc - 2: -1, -1, -2, -2 -> sum -6 -> floor(-1.5) = -2
    out = run_reference(g, x)
    assert out["r"].reshape(-1).tolist() == [-1, -1, -2, -2]
    assert out["p"].reshape(-1).tolist() == [-2]
    assert out["u"].shape == (1, 3, 3, 1) and (out["u"] == -2).all()
    assert run_packed(g, x)["u"].tolist() == out["u"].tolist()


def test_a_stream_thresholds_into_a_bipolar_map() -> None:
    nodes = _stream([-3, 2]) + [Threshold("t", "r", np.array([-3, 3]))]
    g = build_graph("g", nodes, ["t"])
    assert run_reference(g, np.array([[1]]))["t"].tolist() == [[1, 0]]


@pytest.mark.parametrize(("extra", "message"), [
    ([Add("sum", "r", "x", 4)], r"input 'x' is bipolar\[1\]; an Add joins signed integer "
                                r"streams"),
    ([Layer("acc2", "x", Binary(np.ones((2, 1), np.uint8))),
      Requantize("s", "acc2", np.ones(2, np.int64), np.zeros(2, np.int64), 0, 4),
      Add("sum", "s", "r", 4)], r"skip 'r' int4\[3\] does not fit 's' int4\[2\]"),
    ([Add("sum", "r", "r", 1)], r"bits must be 2\.\.32 \(a signed stream\), not 1"),
    ([Requantize("s", "acc", np.ones(3, np.int64), np.zeros(3, np.int64), 40, 4)],
     r"shift must be 0\.\.32, not 40"),
    ([Requantize("s", "acc", np.ones(2, np.int64), np.zeros(3, np.int64), 0, 4)],
     r"mult has 2 entries, expected 3"),
    ([AvgPool2d("p", "r", 2, 2)], r"must be an integer \(H, W, C\) map"),
    ([Upsample2d("u", "r", 2)], r"must be an \(H, W, C\) map"),
])
def test_verify_refuses_what_has_no_meaning(extra, message) -> None:
    with pytest.raises(IRError, match=message):
        build_graph("g", _stream([1, 2, 3]) + extra, [extra[-1].name])


def test_requantize_of_a_bipolar_map_is_refused() -> None:
    nodes = [Input("x", (3,), 1, signed=True),
             Requantize("r", "x", np.ones(3, np.int64), np.zeros(3, np.int64), 0, 4)]
    with pytest.raises(IRError, match=r"input 'x' is bipolar\[3\], expected an integer "
                                      r"accumulator"):
        build_graph("g", nodes, ["r"])


def test_a_negative_slope_on_a_stream_is_refused_by_folding() -> None:
    nodes = _stream([1, 2]) + [AffineSign("a", "r", np.array([1.0, -1.0]), np.zeros(2)),
                              Layer("fc", "a", Binary(np.ones((2, 2), np.uint8))),
                              AffineArgMax("out", "fc", np.ones(2), np.zeros(2))]
    with pytest.raises(IRError, match=r"'a' has negative slopes, but its input 'r' is a "
                                      r"Requantize, not a binary layer"):
        fold(build_graph("g", nodes, ["out"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=residual_graphs(), seed=st.integers(0, 2**16), batch=st.integers(1, 7))
def test_packed_equals_reference_on_random_residual_networks(graph, seed, batch) -> None:
    folded = fold(graph)
    x = random_inputs(folded, 10, seed)
    ref = run_reference(folded, x)
    fast = run_packed(folded, x, batch=batch)
    ranges = value_ranges(folded)
    for name, values in ref.items():
        assert np.array_equal(values, fast[name]), name
        t = folded.types[name]
        lo, hi = (0, 1) if t.bipolar else ranges[name]
        assert values.min() >= lo and values.max() <= hi, name  # the derived range holds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=residual_graphs())
def test_residual_graphs_survive_the_file_round_trip(graph, tmp_path_factory) -> None:
    folded = fold(graph)
    build = tmp_path_factory.mktemp("res")
    save_graph(folded, build)
    assert load_graph(build) == folded


def test_folding_prices_the_stream_and_refuses_an_add_outside_a_unit_in_one_line() -> None:
    from bitfold.compiler.errors import FoldingError
    from bitfold.compiler.folding import fold_for_budget

    head = _stream([1, 2])
    tail = [Layer("fc", "t", Binary(np.ones((2, 2), np.uint8))),
            AffineArgMax("out", "fc", np.ones(2), np.zeros(2))]
    graph = fold(build_graph("g", head + [Threshold("t", "r", np.array([1, 2]))] + tail,
                             ["out"]))
    folding = fold_for_budget(graph, max_luts=10_000)
    assert [(s.name, s.kind, s.cycles) for s in folding.stages][0] == ("t", "stream sign", 1)
    assert any(s.name == "r_join" for s in folding.streams)
    twice = head + [Add("r2", "r", "r", 6), Threshold("t", "r2", np.array([2, 4]))] + tail
    graph = fold(build_graph("g", twice, ["out"]))
    with pytest.raises(FoldingError, match=r"^graph 'g': Add 'r2' does not add a Requantize of "
                                           r"a convolution; the hardware builds pre-activation "
                                           r"units .*\(docs/ir.md, \"Residual streams\"\)$"):
        fold_for_budget(graph, max_luts=10_000)
