"""IR construction, type inference and verify()."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bitfold.compiler.encodings import Binary, Composite, Sparse
from bitfold.compiler.errors import IRError
from bitfold.compiler.geometry import DENSE
from bitfold.compiler.ir import (
    AffineArgMax,
    AffineSign,
    ArgMax,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    ScoreAffine,
    TensorType,
    Threshold,
    Window,
    mvu_matrix,
)
from bitfold.compiler.verify import build_graph, value_ranges, verify


def small_cnn() -> Graph:
    return build_graph("cnn", [
        Input("x", (6, 6, 1), bits=8),
        Layer("c0", "x", Binary(np.ones((4, 3, 3, 1))),
              Window(kernel=3, stride=1, pad=1, pad_value=0)),
        Threshold("t0", "c0", np.zeros(4, np.int64)),
        MaxPool2d("p0", "t0", 2, 2),
        Layer("c1", "p0", Binary(np.zeros((5, 3, 3, 4))),
              Window(kernel=3, stride=2, pad=1, pad_value=-1)),
        Threshold("t1", "c1", np.full(5, 18)),
        Layer("fc", "t1", Binary(np.ones((3, 20)))),
        ScoreAffine("s", "fc", np.array([1, -2, 3]), np.array([0, 5, -5])),
        ArgMax("cls", "s"),
    ], ["cls"])


def test_types_are_derived_exactly_from_fan_in() -> None:
    g = small_cnn()
    t = g.types
    # multi-bit input: 9 inputs of 0..255, signed sum -2295..2295 -> 13 bits signed
    assert t["c0"] == TensorType((6, 6, 4), 13, True)
    assert t["t0"].bipolar and t["p0"].shape == (3, 3, 4)
    # popcount over 3*3*4 = 36 inputs: 0..36 -> 6 bits unsigned; stride 2 with pad 1: 2x2
    assert t["c1"] == TensorType((2, 2, 5), 6, False)
    assert t["fc"] == TensorType((3,), 5, False)  # 0..20
    ranges = value_ranges(g)
    assert ranges["c0"] == (-2295, 2295) and ranges["fc"] == (0, 20)
    # scores: 1*a, -2*a + 5, 3*a - 5 over a in 0..20: -35..55
    assert ranges["s"] == (-35, 55) and t["s"] == TensorType((3,), 7, True)
    assert t["cls"] == TensorType((), 2, False)


def test_graph_equality_compares_arrays() -> None:
    assert small_cnn() == small_cnn()
    other = small_cnn()
    nodes = list(other.nodes)
    nodes[2] = Threshold("t0", "c0", np.ones(4, np.int64))
    assert build_graph("cnn", nodes, ["cls"]) != small_cnn()


def test_a_layer_is_a_geometry_times_a_weight_encoding() -> None:
    conv = Layer("c", "x", Sparse(np.ones((2, 3, 3, 4)), [1, 0]), Window(3, 2, 1, -1))
    assert (conv.op, conv.kind, conv.conv) == ("Layer", "SparseConv2d", True)
    # a convolution's (C_out, k, k, C_in) weights are the encoding's (C_out, k k C_in) rows
    assert conv.encoding.mask.shape == (2, 36) and conv.encoding.shape == (2, 36)
    # the layer reads its halves' fields as its own
    assert conv.mask is conv.encoding.mask and (conv.kernel, conv.stride, conv.pad,
                                                conv.pad_value) == (3, 2, 1, -1)
    assert mvu_matrix(conv).shape == (1, 2, 36)
    fc = Layer("f", "x", Composite(np.ones((3, 2, 5)), [4, 2, 1]))
    assert (fc.kind, fc.conv, fc.geometry) == ("CompositeDense", False, DENSE)
    assert mvu_matrix(fc).shape == (3, 2, 5)
    with pytest.raises(AttributeError, match="kernel"):
        _ = fc.kernel
    with pytest.raises(TypeError, match="needs an encoding"):
        Layer("f", "x")
    assert Layer("f", "x", Binary(np.eye(2))) == Layer("f", "x", Binary(np.eye(2)))
    assert Layer("f", "x", Binary(np.eye(2))) != Layer("f", "x", Binary(1 - np.eye(2)))
    assert Layer("f", "x", Binary(np.eye(2))) != Layer("f", "x", Binary(np.eye(2)),
                                                       Window(1, 1, 0, -1))


def test_arrays_are_frozen_copies() -> None:
    w = np.ones((2, 3))
    node = Layer("fc", "x", Binary(w))
    w[0, 0] = 0
    assert node.encoding.weight[0, 0] == 1 and node.weight is node.encoding.weight
    with pytest.raises(ValueError):
        node.encoding.weight[0, 0] = 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Input("1x", (2,)), r"^node name '1x' must match"),
    (lambda: Binary(np.full((2, 3), 2)), r"^binary weight must hold bits 0/1"),
    (lambda: Binary(np.ones(3)), r"^binary weight must have 2 dimensions"),
    (lambda: Layer("fc", "x", np.ones((2, 3))), r"^fc\.encoding must be a weight encoding"),
    (lambda: Layer("fc", "x", Binary(np.ones((2, 3))), (3, 1)), r"^fc\.geometry must be DENSE"),
    (lambda: Window(2.5), r"^kernel must be an integer, not 2\.5$"),
    (lambda: Threshold("t", "x", np.array([0.5])), r"^t\.thresholds must be integers"),
    (lambda: AffineSign("a", "x", [np.nan], [0.0]), r"^a\.slope must be finite"),
])
def test_constructors_check_their_arguments(make, message) -> None:
    with pytest.raises(IRError, match=message):
        make()


def _bad(nodes, outputs=("y",)):
    return lambda: build_graph("g", nodes, list(outputs))


X = Input("x", (4,), bits=1, signed=True)


@pytest.mark.parametrize(("build", "message"), [
    (_bad([X, Layer("y", "x", Binary(np.ones((2, 5))))]),
     r"^graph 'g': node 'y' \(BinaryDense\): weight has 5 columns, expected 4 \(the fan-in of "
     r"'x' bipolar\[4\]\)$"),
    (_bad([X, Layer("y", "z", Binary(np.ones((2, 4))))]),
     r"^graph 'g': node 'y' \(BinaryDense\): reads 'z', which no earlier node produces$"),
    (_bad([X, Layer("x", "x", Binary(np.ones((2, 4))))]),
     r"^graph 'g': two nodes are named 'x'"),
    (_bad([X, Threshold("y", "x", [0, 0, 0, 0])]),
     r"^graph 'g': node 'y' \(Threshold\): input 'x' is bipolar"),
    (_bad([X, Layer("d", "x", Binary(np.ones((2, 4)))), Threshold("y", "d", [0, 6])]),
     r"^graph 'g': node 'y' \(Threshold\): threshold 6 of channel 1 is outside 0\.\.5"),
    (_bad([X, Layer("d", "x", Binary(np.ones((2, 4)))), Threshold("y", "d", [0])]),
     r"^graph 'g': node 'y' \(Threshold\): thresholds has 1 entries, expected 2"),
    (_bad([Input("x", (3, 3, 2), 4),
           Layer("y", "x", Binary(np.ones((1, 3, 3, 2))), Window(3, 1, 1, -1))]),
     r"^graph 'g': node 'y' \(BinaryConv2d\): pad_value -1 must be 0\.\.15 for uint4"),
    (_bad([Input("x", (3, 3, 2), 1, True),
           Layer("y", "x", Binary(np.ones((1, 3, 3, 2))), Window(3, 1, 1, 0))]),
     r"^graph 'g': node 'y' \(BinaryConv2d\): pad_value 0 must be -1 or \+1"),
    (_bad([Input("x", (2, 2, 1), 4),
           Layer("y", "x", Binary(np.ones((1, 3, 3, 1))), Window(3, 1, 0, 0))]),
     r"^graph 'g': node 'y' \(BinaryConv2d\): kernel 3 does not fit the padded 2x2 input$"),
    (_bad([Input("x", (3, 3, 2), 4), Layer("y", "x", Binary(np.ones((1, 9))), Window(3, 1, 1, 0))]),
     r"^graph 'g': node 'y' \(BinaryConv2d\): weight has 9 columns, expected 18 \(a 3x3 window "
     r"of 2 channels"),
    (_bad([Input("x", (2, 2, 1), 4), MaxPool2d("y", "x", 2, 2)]),
     r"^graph 'g': node 'y' \(MaxPool2d\): input 'x' uint4\[2, 2, 1\] must be a bipolar"),
    (_bad([Input("x", (4,), 8, True)]),
     r"^graph 'g': node 'x' \(Input\): multi-bit input must be unsigned"),
    (_bad([X], outputs=["nope"]), r"^graph 'g': output 'nope' is not a tensor of the graph$"),
    (_bad([X, Layer("d", "x", Binary(np.ones((2, 4)))),
           ScoreAffine("y", "d", [1 << 60, 1], [0, 0])]),
     r"^graph 'g': node 'y' \(ScoreAffine\): scores need 64 bits, more than 62"),
    (_bad([X, Layer("d", "x", Binary(np.ones((2, 4)))), AffineArgMax("y", "d", [1.0], [0.0])]),
     r"^graph 'g': node 'y' \(AffineArgMax\): slope has 1 entries, expected 2"),
])
def test_verify_names_the_node_and_the_problem(build, message) -> None:
    with pytest.raises(IRError, match=message):
        build()


def test_verify_rejects_declared_types_that_disagree() -> None:
    g = small_cnn()
    types = dict(g.types)
    types["c1"] = TensorType((2, 2, 5), 8, False)
    bad = dataclasses.replace(g, types=types)
    with pytest.raises(IRError, match=r"^graph 'cnn': tensor 'c1' is declared uint8\[2, 2, 5\], "
                                      r"but its node gives uint6\[2, 2, 5\]"):
        verify(bad)


def test_verify_requires_inputs_to_be_the_input_nodes() -> None:
    g = small_cnn()
    with pytest.raises(IRError, match=r"^graph 'cnn': inputs \['y'\] must name its Input nodes"):
        verify(dataclasses.replace(g, inputs=("y",)))


def test_folded_flag() -> None:
    assert small_cnn().folded
    g = build_graph("g", [X, Layer("d", "x", Binary(np.ones((2, 4)))),
                          AffineArgMax("y", "d", [1.0, 2.0], [0.0, 0.0])], ["y"])
    assert not g.folded
