"""Ternary layers in hardware: the composite unit of two binary planes (w >= 0, w > 0) with
thresholds 2 T + zeros, bit-exact against the golden model in amaranth.sim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Ternary
from bitfold.compiler.folding import evaluate_folding
from bitfold.compiler.ir import Graph, Layer, Threshold
from bitfold.compiler.verify import build_graph, channel_ranges
from bitfold.hw.plan import HardwareError, build_plan

from ..compiler.randgraphs import lowered_graphs, random_inputs
from .helpers import folded, random_folding, small_cnn
from .test_network import check_network


def ternary_cnn(name: str = "ternary cnn") -> Graph:
    """small_cnn with both convolutions ternary (a third of the weights zero) and
    thresholds inside each channel's range; the dense score layer stays binary."""
    rng = np.random.default_rng(5)
    graph = small_cnn(name)
    nodes = []
    for n in graph.nodes:
        if isinstance(n, Layer) and n.conv:
            mask = (rng.random(n.weight.shape) < 0.67).astype(np.uint8)
            n = Layer(n.name, n.input, Ternary(mask, mask & rng.integers(0, 2, mask.shape)),
                      n.geometry)
        elif isinstance(n, Threshold):
            layer = nodes[-1]
            n = Threshold(n.name, n.input, np.array([
                rng.integers(lo, hi + 2) for lo, hi, _ in channel_ranges(
                    layer, build_graph("g", nodes, [layer.name]).types[layer.input])]))
        nodes.append(n)
    return build_graph(name, nodes, list(graph.outputs))


@pytest.mark.parametrize("choice", [
    {"c0": (4, 18), "c1": (6, 16), "fc": (5, 96)},  # one word per vector
    {"c0": (1, 2), "c1": (2, 4), "fc": (1, 8)},  # many folds
    {"c0": (2, 3, "serial"), "c1": (3, 8, "serial"), "fc": (5, 12)},  # a plane a cycle
])
def test_ternary_cnn_is_bit_exact(choice) -> None:
    graph = ternary_cnn()
    folding = evaluate_folding(graph, choice)
    x = random_inputs(graph, 4, 1)
    check_network(graph, folding, x, p_idle=0.2, p_stall=0.2, seed=3)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lowered_graphs(max_layers=2, schemes=("ternary",), last=("binary",)),
       st.integers(0, 2**16))
def test_random_ternary_networks_are_bit_exact_under_stalls(graph, seed) -> None:
    graph = folded(graph)
    folding = random_folding(graph, np.random.default_rng(seed))
    x = random_inputs(graph, 5, seed)
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=seed)


def test_a_ternary_score_layer_is_refused() -> None:
    graph = ternary_cnn()
    nodes = [n if n.name != "fc" else Layer("fc", n.input, Ternary(n.weight, n.weight))
             for n in graph.nodes]
    graph = build_graph("ternary scores", nodes, list(graph.outputs))
    folding = evaluate_folding(graph, {"c0": (4, 18), "c1": (6, 16), "fc": (5, 96)})
    with pytest.raises(HardwareError, match=r"TernaryDense 'fc' must feed a Threshold: its "
                                            r"unit accumulates another integer"):
        build_plan(graph, folding)
