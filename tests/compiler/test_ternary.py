"""Ternary layers ({-1, 0, +1} weights: a mask and signs) in the compiler, against the reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Binary, Composite, Sparse, Ternary
from bitfold.compiler.errors import IRError
from bitfold.compiler.golden import layer_rows, run_reference
from bitfold.compiler.ir import Input, Layer, TensorType, Window
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold, fold_signs_into_thresholds
from bitfold.compiler.serialize import load_graph, save_graph
from bitfold.compiler.verify import build_graph, channel_ranges

from .randgraphs import lowered_graphs, random_inputs


def ternary(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.6) -> Ternary:
    mask = (rng.random(shape) < density).astype(np.uint8)
    return Ternary(mask, mask & rng.integers(0, 2, shape))


def weights(t: Ternary) -> np.ndarray:
    """The ternary weights as integers -1, 0, +1."""
    return t.mask * np.where(t.sign == 1, 1, -1)


@pytest.mark.parametrize("bipolar", [True, False])
def test_accumulator_is_the_dot_product(bipolar) -> None:
    rng = np.random.default_rng(0)
    enc = ternary(rng, (6, 13))
    bits, signed = (1, True) if bipolar else (5, False)
    x = rng.integers(0, 2 if bipolar else 32, (20, 13))
    g = build_graph("g", [Input("x", (13,), bits, signed), Layer("t", "x", enc)], ["t"])
    acc = run_reference(g, x)["t"]
    w = weights(enc)
    if bipolar:  # agreements among the non-zero weights: dot = 2 acc - nnz
        assert np.array_equal(2 * acc - enc.mask.sum(axis=1), np.where(x == 1, 1, -1) @ w.T)
    else:
        assert np.array_equal(acc, x @ w.T)
    assert g.types["t"].signed != bipolar


def test_a_sparse_layer_is_a_ternary_one_with_a_sign_per_row() -> None:
    rng = np.random.default_rng(1)
    mask, polarity = rng.integers(0, 2, (5, 9)), rng.integers(0, 2, 5)
    for t in (TensorType((9,), 1, True), TensorType((9,), 3, False)):
        x = rng.integers(0, 2 if t.bipolar else 8, (30, 9))
        sparse = Sparse(mask, polarity)
        tern = Ternary(mask, mask * polarity[:, None])
        assert np.array_equal(sparse.reference(x, t), tern.reference(x, t))
        assert sparse.channel_ranges(t) == tern.channel_ranges(t)


@pytest.mark.parametrize("bipolar", [True, False])
def test_ranges_are_attained_hold_every_partial_sum_and_mirror(bipolar) -> None:
    t = TensorType((3,), 1, True) if bipolar else TensorType((3,), 2, False)
    values = [0, 1] if bipolar else range(4)
    for w in itertools.product([-1, 0, 1], repeat=3):
        w = np.array([w])
        enc = Ternary((w != 0).astype(np.uint8), (w == 1).astype(np.uint8))
        (lo, hi, mirror), = enc.channel_ranges(t)
        neg = enc.negated(np.array([True]))
        assert np.array_equal(weights(neg), -w)
        assert neg.channel_ranges(t) == [(mirror - hi, mirror - lo, mirror)]
        seen = set()
        for x in itertools.product(values, repeat=3):
            x = np.array([x])
            for n in range(4):  # every prefix: the hardware accumulates word by word
                part = Ternary(enc.mask[:, :n], enc.sign[:, :n]).reference(x[:, :n], t) \
                    if n else np.zeros((1, 1), np.int64)
                assert lo <= int(part[0, 0]) <= hi
            a = int(enc.reference(x, t)[0, 0])
            assert int(neg.reference(x, t)[0, 0]) == mirror - a
            seen.add(a)
        assert {lo, hi} <= seen


def test_verify_refuses_signs_without_weights() -> None:
    x = Input("x", (3,), 1, True)
    with pytest.raises(IRError, match=r"\(TernaryDense\): sign must be 0 where mask is 0"):
        build_graph("g", [x, Layer("t", "x", Ternary([[1, 0, 1]], [[1, 1, 0]]))], ["t"])
    with pytest.raises(IRError, match=r"sign has shape \(1, 2\), expected the mask's \(1, 3\)"):
        build_graph("g", [x, Layer("t", "x", Ternary([[1, 0, 1]], [[1, 0]]))], ["t"])
    with pytest.raises(IRError, match=r"^ternary sign must hold bits 0/1"):
        Ternary([[1, 0, 1]], [[2, 0, 0]])


def test_a_convolution_window_is_a_row() -> None:
    rng = np.random.default_rng(2)
    enc = ternary(rng, (4, 3, 3, 2))
    assert enc.mask.shape == (4, 18)
    g = build_graph("g", [Input("x", (5, 5, 2), 2), Layer("c", "x", enc, Window(3, 2, 1, 3))],
                    ["c"])
    x = rng.integers(0, 4, (7, 5, 5, 2))
    out = run_reference(g, x)["c"]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=3)
    row = padded[:, 2:5, 0:3, :].reshape(7, -1)  # output (1, 0)
    assert np.array_equal(out[:, 1, 0], row @ weights(enc).T)
    assert np.array_equal(run_packed(g, x)["c"], out)
    assert np.array_equal(run_packed(g, x, bit_serial=True)["c"], out)


TERNARY = ("ternary", "binary")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=lowered_graphs(schemes=TERNARY), seed=st.integers(0, 2**16),
       bit_serial=st.booleans())
def test_thresholds_fold_exactly_and_packed_equals_reference(graph, seed, bit_serial) -> None:
    x = random_inputs(graph, 16, seed)
    before = run_reference(graph, x)
    signs = fold_signs_into_thresholds(graph)  # negative slopes negate ternary rows
    after = run_reference(signs, x)
    for node in graph.nodes:
        if graph.types[node.name].bipolar or node.name in graph.outputs:
            assert np.array_equal(before[node.name], after[node.name]), node.name
    folded = fold(graph)
    ref = run_reference(folded, x)
    fast = run_packed(folded, x, bit_serial=bit_serial)
    assert set(ref) == set(fast)
    for name in ref:
        assert np.array_equal(ref[name], fast[name]), name


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(graph=lowered_graphs(schemes=TERNARY))
def test_round_trip_through_graph_json(tmp_path_factory, graph) -> None:
    for g in (graph, fold(graph)):
        a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
        save_graph(g, a)
        assert load_graph(a) == g
        save_graph(load_graph(a), b)
        assert (a / "graph.json").read_bytes() == (b / "graph.json").read_bytes()
        assert (a / "tensors.npz").read_bytes() == (b / "tensors.npz").read_bytes()


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**16), bipolar=st.booleans(), density=st.sampled_from([0.0, 0.3, 1.0]))
def test_the_unit_two_planes_and_thresholds_decide_as_the_layer(seed, bipolar, density) -> None:
    """The hardware's composite unit: planes (w >= 0, w > 0) at scales 1, 1 accumulate
    2 acc + zeros (2 acc multi-bit); its thresholds decide every channel as the layer's."""
    rng = np.random.default_rng(seed)
    enc = ternary(rng, (5, 11), density)
    t = TensorType((11,), 1, True) if bipolar else TensorType((11,), 3, False)
    x = rng.integers(0, 2 if bipolar else 8, (50, 11))
    acc = enc.reference(x, t)
    planes = enc.planes()
    unit = Composite(planes, [1, 1]).reference(x, t)
    zeros = (1 - enc.mask).sum(axis=1) if bipolar else 0
    assert np.array_equal(unit, 2 * acc + zeros)
    lo = min(r[0] for r in enc.channel_ranges(t))
    hi = max(r[1] for r in enc.channel_ranges(t))
    thresholds = rng.integers(lo, hi + 2, 5)
    assert np.array_equal(unit >= enc.unit_thresholds(thresholds, t), acc >= thresholds)
    params = enc.unit_params(planes, t)
    assert params["plane_scale"] == [1, 1] and params["weights"] is planes
    assert (1 << (params["acc_bits"] - params["acc_signed"])) > 2 * 11 * t.top


def test_the_binary_plane_of_a_dense_ternary_is_the_weight() -> None:
    """No zeros: both planes are the sign, and the layer is a binary one (acc = popcount)."""
    rng = np.random.default_rng(3)
    sign = rng.integers(0, 2, (3, 8))
    enc = Ternary(np.ones((3, 8), np.uint8), sign)
    assert np.array_equal(enc.planes(), np.stack([sign, sign]))
    t = TensorType((8,), 1, True)
    x = rng.integers(0, 2, (10, 8))
    node = Layer("t", "x", enc)
    assert np.array_equal(layer_rows(node, x, t), Binary(sign).reference(x, t))
    assert channel_ranges(node, t) == Binary(sign).channel_ranges(t)
