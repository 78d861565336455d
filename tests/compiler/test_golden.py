"""The reference interpreter on hand-computed values (docs/architecture.md, 3); the packed executor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Binary, Composite, Sparse
from bitfold.compiler.errors import CompilerError
from bitfold.compiler.golden import run_reference
from bitfold.compiler.ir import (
    AffineArgMax,
    AffineSign,
    ArgMax,
    Input,
    Layer,
    MaxPool2d,
    ScoreAffine,
    Threshold,
    Window,
)
from bitfold.compiler.packed import PackedExecutor, pack_bits, run_packed
from bitfold.compiler.passes import fold
from bitfold.compiler.verify import build_graph

from .randgraphs import SCHEMES, lowered_graphs, random_inputs


def test_popcount_of_xnor_and_threshold() -> None:
    # x = (+1, -1, +1, +1), w = (+1, +1, -1, +1): xnor = 1,0,0,1 -> popcount 2, dot = 2*2-4 = 0
    g = build_graph("g", [Input("x", (4,), 1, True), Layer("d", "x", Binary([[1, 1, 0, 1]])),
                          Threshold("t", "d", [2]), ], ["t"])
    out = run_reference(g, np.array([[1, 0, 1, 1]]))
    assert out["d"].tolist() == [[2]]
    assert out["t"].tolist() == [[1]]  # popcount 2 >= 2: sign(0) = +1


def test_multibit_accumulator_is_the_signed_sum() -> None:
    g = build_graph("g", [Input("x", (3,), 8), Layer("d", "x", Binary([[1, 0, 1], [0, 0, 0]]))],
                    ["d"])
    out = run_reference(g, np.array([[10, 200, 3]]))
    assert out["d"].tolist() == [[10 - 200 + 3, -213]]


@pytest.mark.parametrize(("pad_value", "expected"), [(-1, 1), (1, 9)])
def test_conv_padding_value_is_a_bipolar_constant(pad_value, expected) -> None:
    # 1x1 map of +1, 3x3 kernel of all +1, pad 1: the 8 padded positions match iff pad is +1
    g = build_graph("g", [Input("x", (1, 1, 1), 1, True),
                          Layer("c", "x", Binary(np.ones((1, 3, 3, 1))), Window(3, 1, 1, pad_value))], ["c"])
    x = np.ones((1, 1, 1, 1), np.int64)
    assert run_reference(g, x)["c"].item() == expected
    assert run_packed(g, x)["c"].item() == expected


def test_multibit_conv_pads_with_the_integer() -> None:
    g = build_graph("g", [Input("x", (1, 1, 1), 4),
                          Layer("c", "x", Binary(np.ones((1, 3, 3, 1))), Window(3, 1, 1, 2))], ["c"])
    assert run_reference(g, np.full((1, 1, 1, 1), 7))["c"].item() == 7 + 8 * 2


def test_max_pool_is_or_and_argmax_ties_go_low() -> None:
    g = build_graph("g", [Input("x", (2, 2, 1), 1, True), MaxPool2d("p", "x", 2, 2)], ["p"])
    x = np.array([[[[0], [0]], [[0], [1]]], [[[0], [0]], [[0], [0]]]])
    assert run_reference(g, x)["p"].ravel().tolist() == [1, 0]
    g = build_graph("g", [Input("x", (3,), 1, True), Layer("d", "x", Binary(np.eye(3))),
                          ScoreAffine("s", "d", [1, 1, 1], [0, 0, 0]), ArgMax("a", "s")], ["a"])
    x = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]])  # scores (2,2,1), (1,2,2), (1,1,1)
    assert run_reference(g, x)["a"].tolist() == [0, 1, 0]
    assert run_packed(g, x)["a"].tolist() == [0, 1, 0]


def test_prefold_nodes_are_exact_at_ties() -> None:
    g = build_graph("g", [Input("x", (2,), 4), Layer("d", "x", Binary([[1, 1]])),
                          AffineSign("s", "d", [0.1], [-0.3])], ["s"])
    # the doubles nearest 0.1 and 0.3 are 0.1 + 5.6e-18 and 0.3 - 1.1e-17, so exactly
    # 3 * 0.1 - 0.3 = 2.8e-17 > 0 (+1); 2 * 0.1 - 0.3 < 0 (-1)
    out = run_reference(g, np.array([[1, 2], [1, 1], [0, 0]]))["s"]
    assert out.ravel().tolist() == [1, 0, 0]
    g = build_graph("g", [Input("x", (1,), 4), Layer("d", "x", Binary([[1], [1]])),
                          AffineArgMax("a", "d", [0.5, 0.25], [0.0, 0.5])], ["a"])
    # scores 0.5 x and 0.25 x + 0.5 tie at x = 2 -> class 0
    assert run_reference(g, np.array([[1], [2], [3]]))["a"].tolist() == [1, 0, 0]


def test_inputs_are_checked() -> None:
    g = build_graph("g", [Input("x", (2, 2, 1), 4), Layer("d", "x", Binary(np.ones((1, 4))))], ["d"])
    with pytest.raises(CompilerError, match=r"^input 'x': frames of shape \(4,\), expected "
                                            r"\(2, 2, 1\)"):
        run_reference(g, np.zeros((1, 4), np.int64))
    with pytest.raises(CompilerError, match=r"^input 'x': values 16\.\.16 outside 0\.\.15 "):
        run_packed(g, np.full((1, 2, 2, 1), 16))
    with pytest.raises(CompilerError, match=r"^input 'x': expected integers, not float64"):
        run_packed(g, np.zeros((1, 2, 2, 1)))


def test_packed_refuses_unfolded_graphs() -> None:
    g = build_graph("g", [Input("x", (2,), 4), Layer("d", "x", Binary([[1, 1]])),
                          AffineSign("s", "d", [1.0], [0.0])], ["s"])
    with pytest.raises(CompilerError, match=r"^graph 'g' is not folded \(has AffineSign\); run "):
        PackedExecutor(g)


def test_pack_bits_layout() -> None:
    bits = np.zeros((1, 70), np.uint8)
    bits[0, [0, 63, 64, 69]] = 1
    words = pack_bits(bits)
    assert words.shape == (1, 2) and words.dtype == np.dtype("<u8")
    assert int(words[0, 0]) == (1 << 63) | 1 and int(words[0, 1]) == (1 << 5) | 1


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=lowered_graphs(schemes=SCHEMES), seed=st.integers(0, 2**16), batch=st.integers(1, 9),
       bit_serial=st.booleans())
def test_packed_equals_reference_on_random_graphs(graph, seed, batch, bit_serial) -> None:
    folded = fold(graph)
    x = random_inputs(folded, 12, seed)
    ref = run_reference(folded, x)
    fast = run_packed(folded, x, batch=batch, bit_serial=bit_serial)
    assert set(ref) == set(fast)
    for name in ref:
        assert ref[name].shape == fast[name].shape, name
        assert np.array_equal(ref[name], fast[name]), name


def test_multibit_paths_agree_on_a_wide_first_layer() -> None:
    rng = np.random.default_rng(1)
    g = build_graph("g", [Input("x", (28, 28, 1), 8),
                          Layer("d", "x", Binary(rng.integers(0, 2, (64, 784)))),
                          ScoreAffine("s", "d", rng.integers(-9, 10, 64), np.zeros(64, np.int64)),
                          ArgMax("a", "s")], ["a"])
    x = rng.integers(0, 256, (40, 28, 28, 1))
    x[:10] = 255  # the extremes of the accumulator
    ref = run_reference(g, x)["d"]
    assert np.array_equal(run_packed(g, x)["d"], ref)
    assert np.array_equal(run_packed(g, x, bit_serial=True)["d"], ref)


def test_sparse_layer_is_a_masked_popcount_with_row_polarity() -> None:
    # x = (+1, -1, +1, +1); row 0 keeps positions 0, 1 and counts +1s; row 1 keeps 1, 2, 3, counts -1s
    g = build_graph("g", [Input("x", (4,), 1, True),
                          Layer("s", "x", Sparse([[1, 1, 0, 0], [0, 1, 1, 1]], [1, 0]))], ["s"])
    x = np.array([[1, 0, 1, 1]])
    assert run_reference(g, x)["s"].tolist() == [[1, 1]]
    assert run_packed(g, x)["s"].tolist() == [[1, 1]]
    assert g.types["s"].describe() == "uint2[2]"  # 0 .. 3 non-zeros
    m = build_graph("m", [Input("x", (3,), 8),
                          Layer("s", "x", Sparse([[1, 0, 1], [1, 1, 0]], [1, 0]))], ["s"])
    assert run_reference(m, np.array([[10, 200, 3]]))["s"].tolist() == [[13, -210]]


def test_composite_layer_adds_scaled_plane_popcounts() -> None:
    planes = [[[1, 1, 0, 1]], [[0, 0, 0, 0]]]  # popcounts 2 and 1 for x = (+1, -1, +1, +1)
    g = build_graph("g", [Input("x", (4,), 1, True),
                          Layer("c", "x", Composite(planes, [256, 64]))], ["c"])
    x = np.array([[1, 0, 1, 1]])
    assert run_reference(g, x)["c"].tolist() == [[2 * 256 + 1 * 64]]
    assert run_packed(g, x)["c"].tolist() == [[2 * 256 + 1 * 64]]
    assert g.types["c"].describe() == "uint11[1]"  # 0 .. 4 * 320


def test_low_rank_pair_is_two_binary_layers() -> None:
    # the inner popcounts (0..4) are the unsigned multi-bit input of the outer layer
    g = build_graph("g", [Input("x", (4,), 1, True),
                          Layer("inner", "x", Binary([[1, 1, 0, 1], [0, 0, 0, 0]])),
                          Layer("outer", "inner", Binary([[1, 0]]))], ["outer"])
    x = np.array([[1, 0, 1, 1]])
    assert run_reference(g, x)["outer"].tolist() == [[2 - 1]]
    assert run_packed(g, x)["outer"].tolist() == [[2 - 1]]
