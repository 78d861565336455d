"""Shared helpers of the hardware tests: random foldings and random folded graphs."""

from __future__ import annotations

import numpy as np

from bitfold.compiler.cost import mvu_layers
from bitfold.compiler.folding import Folding, evaluate_folding, legal_values
from bitfold.compiler.ir import (
    ArgMax,
    BinaryConv2d,
    BinaryDense,
    Graph,
    Input,
    MaxPool2d,
    ScoreAffine,
    Threshold,
)
from bitfold.compiler.passes import fold


def random_folding(graph: Graph, rng: np.random.Generator, index: float = 0.0) -> Folding:
    """A random legal (unpadded) folding of every binary layer.

    A sparse layer takes the index layout with probability ``index``.
    """
    choice = {}
    for layer in mvu_layers(graph):
        layout = "index" if layer.scheme == "sparse" and rng.random() < index else None
        cols = layer.nnz if layout == "index" else layer.mw
        choice[layer.name] = (int(rng.choice(legal_values(layer.mh, False))),
                              int(rng.choice(legal_values(cols, False))), layout)
    return evaluate_folding(graph, choice)


def folded(graph: Graph) -> Graph:
    """The hardware graph of a lowered one."""
    return fold(graph)


def small_cnn(name: str = "cnn") -> Graph:
    """Multi-bit input conv (padding value 5), a max pool, a bipolar conv padded with +1, dense."""
    rng = np.random.default_rng(3)
    nodes = [Input("input", (6, 6, 2), 3),
             BinaryConv2d("c0", "input", rng.integers(0, 2, (4, 3, 3, 2)), 3, 1, 1, 5),
             Threshold("t0", "c0", rng.integers(-20, 20, 4)),
             MaxPool2d("p0", "t0", 2, 2),
             BinaryConv2d("c1", "p0", rng.integers(0, 2, (6, 2, 2, 4)), 2, 1, 1, 1),
             Threshold("t1", "c1", rng.integers(5, 12, 6)),
             BinaryDense("fc", "t1", rng.integers(0, 2, (5, 96))),
             ScoreAffine("scores", "fc", np.array([1, 2, 1, 3, 1]), np.array([0, -40, 3, -90, 0])),
             ArgMax("class", "scores")]
    return Graph.build(name, nodes, ["class"])
