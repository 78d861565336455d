"""Shared helpers of the hardware tests: random foldings and random folded graphs."""

from __future__ import annotations

import numpy as np

from bitfold.compiler.cost import mvu_layers
from bitfold.compiler.folding import Folding, evaluate_folding, legal_values
from bitfold.compiler.ir import Graph
from bitfold.compiler.passes import fold


def random_folding(graph: Graph, rng: np.random.Generator) -> Folding:
    """A random legal (unpadded) folding of every binary layer."""
    choice = {}
    for layer in mvu_layers(graph):
        choice[layer.name] = (int(rng.choice(legal_values(layer.mh, False))),
                              int(rng.choice(legal_values(layer.mw, False))))
    return evaluate_folding(graph, choice)


def folded(graph: Graph) -> Graph:
    """The hardware graph of a lowered one."""
    return fold(graph)
