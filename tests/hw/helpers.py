"""Shared helpers of the hardware tests: random foldings and random folded graphs."""

from __future__ import annotations

import numpy as np

from bitfold.compiler.cost import columns, layouts, mvu_layers, two_frames
from bitfold.compiler.encodings import Binary, Composite, Domain, Sparse
from bitfold.compiler.folding import Folding, evaluate_folding, legal_values
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    ScoreAffine,
    Threshold,
    Window,
)
from bitfold.compiler.passes import fold
from bitfold.compiler.verify import build_graph, channel_ranges
from bitfold.hw.weights import unit_weights


def random_folding(graph: Graph, rng: np.random.Generator, index: float = 0.0,
                   group: float = 0.0, frames: float = 0.0) -> Folding:
    """A random legal (unpadded) folding of every binary layer.

    A sparse layer takes the index layout with probability ``index``, else its group
    layout (when it has one) with probability ``group``; a layer that may compute two
    frames a pass does so with probability ``frames``.
    """
    choice = {}
    for layer in mvu_layers(graph):
        layout = None
        if layer.scheme == "sparse" and rng.random() < index:
            layout = "index"
        elif layer.scheme == "sparse" and layer.group and rng.random() < group:
            layout = "group"
        cols = columns(layer, layout or layouts(layer)[0])
        pe, simd = (int(rng.choice(legal_values(layer.mh, False))),
                    int(rng.choice(legal_values(cols, False))))
        two = frames and two_frames(layer, pe, simd, layout or layouts(layer)[0]) and \
            rng.random() < frames
        choice[layer.name] = (pe, simd, layout, 0, 2 if two else 1)
    return evaluate_folding(graph, choice)


def accumulator_range(weights: np.ndarray, input_bits: int, bipolar: bool,
                      **encoding) -> tuple[int, int]:
    """The range of an MVU's accumulators: its weight encoding's (``polarity``,
    ``plane_scale``, ``offset``/``offset_scale``; none: binary), from the IR's channel ranges."""
    return unit_weights(weights, **encoding).acc_range(input_bits, bipolar)


def folded(graph: Graph) -> Graph:
    """The hardware graph of a lowered one."""
    return fold(graph)


def small_cnn(name: str = "cnn") -> Graph:
    """Multi-bit input conv (padding value 5), a max pool, a bipolar conv padded with +1, dense."""
    rng = np.random.default_rng(3)
    nodes = [Input("input", (6, 6, 2), 3),
             Layer("c0", "input", Binary(rng.integers(0, 2, (4, 3, 3, 2))), Window(3, 1, 1, 5)),
             Threshold("t0", "c0", rng.integers(-20, 20, 4)),
             MaxPool2d("p0", "t0", 2, 2),
             Layer("c1", "p0", Binary(rng.integers(0, 2, (6, 2, 2, 4))), Window(2, 1, 1, 1)),
             Threshold("t1", "c1", rng.integers(5, 12, 6)),
             Layer("fc", "t1", Binary(rng.integers(0, 2, (5, 96)))),
             ScoreAffine("scores", "fc", np.array([1, 2, 1, 3, 1]), np.array([0, -40, 3, -90, 0])),
             ArgMax("class", "scores")]
    return build_graph(name, nodes, ["class"])


def group_mask(rng: np.random.Generator, rows: int, fan_in: int, group: int, kept: int,
               ragged: bool = False) -> np.ndarray:
    """An N:G mask: ``kept`` of every ``group`` consecutive columns (``ragged``: 0 .. ``kept``)."""
    m = np.zeros((rows, fan_in // group, group), np.uint8)
    for r in range(rows):
        for g in range(fan_in // group):
            n = int(rng.integers(0, kept + 1)) if ragged else kept
            m[r, g, rng.choice(group, n, replace=False)] = 1
    return m.reshape(rows, fan_in)


def sparse_cnn(sparsity: float, name: str = "sparse cnn", group: int | None = None) -> Graph:
    """small_cnn with every layer sparse: each row keeps ``fan_in - round(sparsity * fan_in)``;
    with ``group``, exactly ``(1 - sparsity) * group`` of every ``group`` consecutive columns
    (input channels of a convolution) where they divide, as ``--sparse-group`` trains."""
    rng = np.random.default_rng(int(sparsity * 100))

    def mask(shape):
        rows, fan_in = shape[0], int(np.prod(shape[1:]))
        if group and shape[-1] % group == 0:
            return group_mask(rng, rows, fan_in, group, round((1 - sparsity) * group)
                              ).reshape(shape)
        m = np.zeros((rows, fan_in), np.uint8)
        for r in range(rows):
            m[r, rng.choice(fan_in, fan_in - round(sparsity * fan_in), replace=False)] = 1
        return m.reshape(shape)

    graph = small_cnn(name)
    nodes = []
    for n in graph.nodes:
        if isinstance(n, Threshold):  # a threshold inside each channel's (shrunk) range
            layer = nodes[-1]
            ranges = channel_ranges(layer, graph.types[layer.input])
            n = Threshold(n.name, n.input, np.array([rng.integers(lo, hi + 2)
                                                     for lo, hi, _ in ranges]))
        if isinstance(n, Layer):  # a convolution's mask in groups of its input channels
            shape = (len(n.weight), n.kernel, n.kernel, graph.types[n.input].shape[-1]) \
                if n.conv else n.weight.shape
            n = Layer(n.name, n.input, Sparse(mask(shape), rng.integers(0, 2, shape[0])),
                      n.geometry)
        nodes.append(n)
    return build_graph(name, nodes, list(graph.outputs))


def composite_mlp(name: str = "composite mlp") -> Graph:
    """A dense network on digits-shaped 5-bit input with 2 and 3 composite binary planes."""

    rng = np.random.default_rng(8)
    fc0 = Layer("fc0", "input", Composite(rng.integers(0, 2, (2, 16, 64)), [256, 101]))
    lo_hi = channel_ranges(fc0, build_graph("g", [Input("input", (8, 8, 1), 5), fc0],
                                            ["fc0"]).types["input"])
    nodes = [Input("input", (8, 8, 1), 5), fc0,
             Threshold("t0", "fc0", np.array([rng.integers(lo // 8, hi // 8 + 1)
                                              for lo, hi, _ in lo_hi])),
             Layer("fc1", "t0", Composite(rng.integers(0, 2, (3, 10, 16)), [256, 77, 5])),
             ScoreAffine("scores", "fc1", rng.integers(1, 4, 10), rng.integers(-9, 9, 10)),
             ArgMax("class", "scores")]
    return build_graph(name, nodes, ["class"])


def domain_cnn(name: str = "domain cnn") -> Graph:
    """small_cnn with every layer in the general binary domain: signs, an offset per neuron
    (both signs, beyond +-scale too) and scale 256; the multi-bit input is padded with 5."""

    rng = np.random.default_rng(12)
    graph = small_cnn(name)
    nodes = []
    for n in graph.nodes:
        if isinstance(n, Threshold):  # a threshold inside each channel's range
            layer = nodes[-1]
            ranges = channel_ranges(layer, graph.types[layer.input])
            n = Threshold(n.name, n.input, np.array([rng.integers(lo // 4, hi // 4 + 2)
                                                     for lo, hi, _ in ranges]))
        if isinstance(n, Layer):
            n = Layer(n.name, n.input, Domain(n.weight, rng.integers(-600, 600, len(n.weight)), 256),
                      n.geometry)
        nodes.append(n)
    return build_graph(name, nodes, list(graph.outputs))
