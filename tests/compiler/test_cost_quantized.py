"""The cost model of sparse and composite layers (issue 8)."""

from __future__ import annotations

import numpy as np

from bitfold.compiler.cost import DEVICES, layer_cost, mvu_layers
from bitfold.compiler.encodings import Binary, Composite, Sparse
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    ScoreAffine,
)
from bitfold.compiler.verify import build_graph


def _graph(layer) -> Graph:
    return build_graph("g", [Input("x", (64,), 1, True), layer,
                             ScoreAffine("s", "fc", np.ones(8, np.int64), np.zeros(8, np.int64)),
                             ArgMax("c", "s")], ["c"])


def test_sparse_constant_weights_shrink_with_sparsity_composite_grows_with_planes() -> None:
    rng = np.random.default_rng(0)
    model = DEVICES["ecp5"]
    luts = {}
    for density in (1.0, 0.5, 0.25):
        mask = np.zeros((8, 64), np.uint8)
        for row in mask:
            row[rng.permutation(64)[:int(64 * density)]] = 1
        layer = mvu_layers(_graph(Layer("fc", "x", Sparse(mask, np.ones(8, np.uint8)))))[0]
        assert (layer.scheme, layer.density) == ("sparse", density)
        luts[density] = layer_cost(layer, 8, 64, model).luts  # fully parallel: constants
        folded = layer_cost(layer, 1, 8, model)
        assert folded.weight_bits == 8 * 64
    assert luts[1.0] > luts[0.5] > luts[0.25]
    binary = mvu_layers(_graph(Layer("fc", "x", Binary(rng.integers(0, 2, (8, 64))))))[0]
    for k in (2, 3):
        comp = mvu_layers(_graph(Layer("fc", "x", Composite(rng.integers(0, 2, (k, 8, 64)), [256] * k))))[0]
        cost, base = layer_cost(comp, 2, 8, model), layer_cost(binary, 2, 8, model)
        assert cost.weight_bits == k * base.weight_bits and cost.luts > k * (base.luts // 2)
        assert cost.cycles == base.cycles  # planes are parallel lanes
