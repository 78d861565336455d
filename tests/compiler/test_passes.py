"""Passes leave the golden model's outputs unchanged (exactly, or within the documented bound)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Binary, Composite, Sparse
from bitfold.compiler.errors import IRError
from bitfold.compiler.golden import run_reference
from bitfold.compiler.ir import (
    AffineArgMax,
    AffineSign,
    Graph,
    Input,
    Layer,
    Threshold,
)
from bitfold.compiler.passes import (
    exact_threshold,
    fold,
    fold_scores_into_integers,
    fold_signs_into_thresholds,
    score_error_bound,
    score_exponent,
)
from bitfold.compiler.verify import build_graph, value_ranges

from .randgraphs import SCHEMES, lowered_graphs, random_inputs

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(graph=lowered_graphs(schemes=SCHEMES), seed=st.integers(0, 2**16))
def test_fold_signs_into_thresholds_is_exact(graph, seed) -> None:
    x = random_inputs(graph, 16, seed)
    before = run_reference(graph, x)
    folded = fold_signs_into_thresholds(graph)
    after = run_reference(folded, x)
    assert not any(isinstance(n, AffineSign) for n in folded.nodes)
    for node in graph.nodes:
        if graph.types[node.name].bipolar or node.name in graph.outputs:
            assert np.array_equal(before[node.name], after[node.name]), node.name


@SETTINGS
@given(graph=lowered_graphs(schemes=SCHEMES), seed=st.integers(0, 2**16), bits=st.integers(8, 40))
def test_fold_scores_changes_a_prediction_only_at_a_near_tie(graph, seed, bits) -> None:
    x = random_inputs(graph, 16, seed)
    exact = run_reference(graph, x)
    folded = fold_scores_into_integers(graph, bits)
    after = run_reference(folded, x)
    assert folded.types["out_scores"].bits <= bits
    head = graph.node("out")
    lo, hi = value_ranges(graph)["fc_out"]
    k = [Fraction(v) for v in head.slope]
    c = [Fraction(v) for v in head.offset]
    scale = Fraction(2) ** score_exponent(k, c, lo, hi, bits)
    bound = score_error_bound(lo, hi)
    for i in np.flatnonzero(exact["out"] != after["out"]):
        a = exact["fc_out"][i]
        was, now = int(exact["out"][i]), int(after["out"][i])
        gap = (k[was] * int(a[was]) + c[was]) - (k[now] * int(a[now]) + c[now])
        assert 0 <= gap * scale <= 2 * bound


@SETTINGS
@given(graph=lowered_graphs(schemes=SCHEMES), seed=st.integers(0, 2**16))
def test_fold_is_idempotent_and_leaves_folded_graphs_alone(graph, seed) -> None:
    once = fold(graph)
    assert once.folded
    assert fold(once) == once
    x = random_inputs(graph, 8, seed)
    assert np.array_equal(run_reference(once, x)["out"], run_reference(fold(once), x)["out"])


def _exhaustive(graph: Graph) -> np.ndarray:
    t = graph.types["x"]
    hi = 1 if t.bipolar else t.hi
    return np.array(list(itertools.product(range(hi + 1), repeat=t.shape[0])))


@pytest.mark.parametrize("bipolar", [True, False])
@pytest.mark.parametrize(("slope", "offset"), [
    (1.0, -2.0), (-1.0, 2.0), (-0.5, 0.0), (0.5, -0.25), (-3.0, -1.0), (2.0, 7.0),
    (0.0, 0.0), (0.0, -1e-300), (0.0, 5.0), (-1e-9, 1e-12), (1e300, -1e300),
])
def test_negative_and_degenerate_slopes_fold_exactly(bipolar, slope, offset) -> None:
    bits = 1 if bipolar else 3
    g = build_graph("g", [Input("x", (3,), bits, bipolar),
                          Layer("d", "x", Binary([[1, 0, 1], [0, 1, 1]])),
                          AffineSign("s", "d", [slope, -slope], [offset, offset])], ["s"])
    folded = fold_signs_into_thresholds(g)
    x = _exhaustive(g)
    assert np.array_equal(run_reference(g, x)["s"], run_reference(folded, x)["s"])
    dense = folded.node("d")
    # the channel with a negative slope has its weight row negated, the other is kept
    for row, k in enumerate([slope, -slope]):
        original = g.node("d").weight[row]
        assert np.array_equal(dense.weight[row], 1 - original if k < 0 else original)


def test_threshold_values() -> None:
    # popcount p over 8 inputs, slope 2, offset -5: 2p - 5 >= 0 <=> p >= 3 (2.5 rounds up)
    assert exact_threshold(2.0, -5.0, 0, 8, 8) == (3, False)
    # tie: 2p - 6 >= 0 <=> p >= 3 (sign(0) = +1)
    assert exact_threshold(2.0, -6.0, 0, 8, 8) == (3, False)
    # negative slope: -2p + 6 >= 0 <=> p <= 3 <=> (8 - p) >= 5
    assert exact_threshold(-2.0, 6.0, 0, 8, 8) == (5, True)
    # signed accumulator a in -20..20, negative slope: -a + 3 >= 0 <=> -a >= -3
    assert exact_threshold(-1.0, 3.0, -20, 20, 0) == (-3, True)
    # constant channels: always on is the lowest value, always off one past the highest
    assert exact_threshold(0.0, 0.0, 0, 8, 8) == (0, False)
    assert exact_threshold(0.0, -1.0, 0, 8, 8) == (9, False)
    # crossing outside the range clips to the same constant behaviour
    assert exact_threshold(1.0, -100.0, 0, 8, 8) == (9, False)
    assert exact_threshold(1.0, 100.0, 0, 8, 8) == (0, False)


def test_negating_a_shared_layer_is_refused() -> None:
    g = build_graph("g", [Input("x", (2,), 1, True), Layer("d", "x", Binary([[1, 0]])),
                          AffineSign("s1", "d", [-1.0], [0.0]),
                          AffineSign("s2", "d", [1.0], [0.0])],
                    ["s1", "s2"])
    with pytest.raises(IRError, match=r"^graph 'g': cannot negate rows of 'd': it is read by "
                                      r"\['s1', 's2'\], not only by 's1'$"):
        fold_signs_into_thresholds(g)


def test_negation_applies_to_the_producing_layer() -> None:
    g = build_graph("g", [Input("x", (2,), 1, True), Layer("d", "x", Binary([[1, 0]])),
                          Threshold("t", "d", [1]), Layer("e", "t", Binary([[1]])),
                          AffineSign("s", "e", [-1.0], [0.0])], ["s"])
    folded = fold_signs_into_thresholds(g)
    assert folded.node("e").weight.tolist() == [[0]]
    assert folded.node("d").weight.tolist() == [[1, 0]]


def test_negative_slope_needs_a_binary_layer() -> None:
    g = build_graph("g", [Input("x", (2,), 4), AffineSign("s", "x", [-1.0, 1.0], [0.0, 0.0])],
                    ["s"])
    with pytest.raises(IRError, match=r"^graph 'g': 's' has negative slopes, but its input 'x' "
                                      r"is a Input, not a binary layer"):
        fold_signs_into_thresholds(g)


def test_dyadic_scores_fold_without_rounding_ties_included() -> None:
    g = build_graph("g", [Input("x", (1,), 4), Layer("d", "x", Binary([[1], [1], [0]])),
                          AffineArgMax("a", "d", [0.5, 0.25, -0.125], [0.0, 0.5, 0.75])], ["a"])
    folded = fold_scores_into_integers(g, 16)
    x = _exhaustive(g)
    assert np.array_equal(run_reference(g, x)["a"], run_reference(folded, x)["a"])
    scores = folded.node("a_scores")
    assert scores.scale.tolist()[0] == 2 * scores.scale.tolist()[1]  # exact ratio kept
    assert folded.types["a_scores"].bits <= 16


def test_score_bits_must_be_usable() -> None:
    g = build_graph("g", [Input("x", (1,), 4), Layer("d", "x", Binary([[1]])),
                          AffineArgMax("a", "d", [1.0], [0.0])], ["a"])
    with pytest.raises(IRError, match=r"^score_bits must be 2\.\.62, not 70$"):
        fold_scores_into_integers(g, 70)


@pytest.mark.parametrize("bipolar", [True, False])
@pytest.mark.parametrize(("slope", "offset"), [(1.0, -1.0), (-1.0, 1.5), (-0.5, 0.0), (0.0, 1.0)])
def test_sparse_rows_with_different_nonzeros_fold_exactly(bipolar, slope, offset) -> None:
    bits = 1 if bipolar else 2
    mask = [[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    g = build_graph("g", [Input("x", (4,), bits, bipolar),
                          Layer("d", "x", Sparse(mask, [1, 0, 1])),
                          AffineSign("s", "d", [slope, -slope, slope], [offset] * 3)], ["s"])
    folded = fold_signs_into_thresholds(g)
    x = _exhaustive(g)
    assert np.array_equal(run_reference(g, x)["s"], run_reference(folded, x)["s"])
    # a negative slope flips the row's polarity; the mask is kept
    d = folded.node("d")
    assert np.array_equal(d.mask, g.node("d").mask)
    for row, k in enumerate([slope, -slope, slope]):
        assert d.polarity[row] == (1 - g.node("d").polarity[row] if k < 0 else
                                   g.node("d").polarity[row])


@pytest.mark.parametrize("bipolar", [True, False])
def test_composite_negation_flips_every_plane(bipolar) -> None:
    bits = 1 if bipolar else 2
    planes = [[[1, 0, 1], [0, 1, 1]], [[0, 0, 1], [1, 1, 1]]]
    g = build_graph("g", [Input("x", (3,), bits, bipolar),
                          Layer("d", "x", Composite(planes, [256, 77])),
                          AffineSign("s", "d", [-1.0, 1.0], [300.0, -400.0])], ["s"])
    folded = fold_signs_into_thresholds(g)
    x = _exhaustive(g)
    assert np.array_equal(run_reference(g, x)["s"], run_reference(folded, x)["s"])
    w = folded.node("d").weight
    assert np.array_equal(w[:, 0], 1 - np.array(planes)[:, 0])
    assert np.array_equal(w[:, 1], np.array(planes)[:, 1])
