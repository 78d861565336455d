"""Domain binary layers ({a, b} weights: signs, offsets, a scale) in the compiler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bitfold.compiler.cost import DEVICES, layer_cost, mvu_layers
from bitfold.compiler.encodings import Binary, Domain
from bitfold.compiler.errors import IRError
from bitfold.compiler.golden import run_reference
from bitfold.compiler.ir import (
    AffineArgMax,
    AffineSign,
    Input,
    Layer,
    TensorType,
    Window,
)
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold
from bitfold.compiler.verify import build_graph, channel_ranges


@pytest.mark.parametrize("bipolar", [True, False])
def test_accumulator_is_scale_times_binary_plus_offset_times_input_sum(bipolar):
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2, (5, 11))
    offset = np.array([-700, -3, 0, 40, 513])
    bits, signed = (1, True) if bipolar else (4, False)
    x = rng.integers(0, 2 if bipolar else 16, (9, 11))
    nodes = [Input("x", (11,), bits, signed), Layer("d", "x", Domain(w, offset, 256)),
             Layer("b", "x", Binary(w))]
    g = build_graph("g", nodes, ["d", "b"])
    out = run_reference(g, x)
    assert np.array_equal(out["d"], 256 * out["b"] + offset * x.sum(axis=1)[:, None])
    # the exact dot product with the weights d (s + offset / scale), d = 1
    s = np.where(w == 1, 1, -1)
    xv = np.where(x == 1, 1, -1) if bipolar else x
    dot = xv @ (s + offset[:, None] / 256).T
    got = (2 * out["d"] - 11 * (256 + offset)) / 256 if bipolar else out["d"] / 256
    assert np.allclose(got, dot)


@pytest.mark.parametrize("bipolar", [True, False])
def test_ranges_hold_every_value_and_partial_sum_and_mirror_exactly(bipolar):
    t = TensorType((3,), 1, True) if bipolar else TensorType((3,), 2, False)
    top = 1 if bipolar else 3
    values = [0, 1] if bipolar else range(top + 1)
    for offset, w in itertools.product([-600, -256, -5, 0, 7, 256, 900],
                                       itertools.product([0, 1], repeat=3)):
        node = Layer("d", "x", Domain(np.array([w]), np.array([offset]), 256))
        (lo, hi, mirror), = channel_ranges(node, t)
        neg = Layer("d", "x", Domain(1 - np.array([w]), np.array([-offset]), 256))
        (nlo, nhi, nmirror), = channel_ranges(neg, t)
        assert (nlo, nhi, nmirror) == (mirror - hi, mirror - lo, mirror)
        for x in itertools.product(values, repeat=3):
            terms = [256 * ((xi == wi) if bipolar else (xi if wi else -xi)) + offset * xi
                     for xi, wi in zip(x, w, strict=True)]
            for k in range(4):  # every prefix: the hardware accumulator between words
                assert lo <= sum(terms[:k]) <= hi
            acc_neg = sum(256 * ((xi == 1 - wi) if bipolar else (-xi if wi else xi)) - offset * xi
                          for xi, wi in zip(x, w, strict=True))
            assert acc_neg == mirror - sum(terms)


def test_fold_negates_rows_exactly_and_the_executors_agree():
    rng = np.random.default_rng(1)
    nodes = [Input("x", (5, 5, 2), 3),
             Layer("c", "x", Domain(rng.integers(0, 2, (4, 3, 3, 2)), rng.integers(-500, 500, 4), 256),
                   Window(3, 1, 1, 2)),
             AffineSign("s", "c", np.array([1.5, -0.25, 0.0, -3.0]),
                        np.array([100.0, -7.5, 1.0, 2000.0])),
             Layer("d", "s", Domain(rng.integers(0, 2, (3, 100)), rng.integers(-900, 900, 3), 256)),
             AffineArgMax("out", "d", np.array([1.0, -2.0, 0.5]), np.array([0.0, 3.0, -1.0]))]
    lowered = build_graph("g", nodes, ["out"])
    folded = fold(lowered)
    x = rng.integers(0, 8, (40, 5, 5, 2))
    ref, packed = run_reference(folded, x), run_packed(folded, x)
    assert np.array_equal(ref["s"], run_reference(lowered, x)["s"])
    assert np.array_equal(ref["out"], packed["out"]) and np.array_equal(ref["d"], packed["d"])


def test_verify_refuses_bad_offsets_and_scales():
    w = np.zeros((3, 4), np.uint8)
    with pytest.raises(IRError, match="offset has 2 entries, expected 3"):
        build_graph("g", [Input("x", (4,), 1, True), Layer("d", "x", Domain(w, [1, 2], 4))], ["d"])
    with pytest.raises(IRError, match="scale must be a positive integer"):
        build_graph("g", [Input("x", (4,), 1, True), Layer("d", "x", Domain(w, [1, 2, 3], 0))],
                    ["d"])
    with pytest.raises(IRError, match="scale must be an integer"):
        Layer("d", "x", Domain(w, [1, 2, 3], 1.5))


def test_cost_model_prices_the_input_sum_tree_and_offsets():
    rng = np.random.default_rng(2)
    w = rng.integers(0, 2, (16, 64))
    nodes = [Input("x", (64,), 1, True), Layer("d", "x", Domain(w, rng.integers(-300, 300, 16), 256)),
             Layer("b", "x", Binary(w))]
    layers = {layer.name: layer for layer in mvu_layers(build_graph("g", nodes, ["d", "b"]))}
    assert layers["d"].scheme == "domain" and layers["d"].offset_bits == 10
    model = DEVICES["ecp5"]
    for pe, simd in [(1, 64), (4, 16), (16, 8)]:
        domain, binary = (layer_cost(layers[n], pe, simd, model) for n in "db")
        assert domain.cycles == binary.cycles and domain.luts > binary.luts
