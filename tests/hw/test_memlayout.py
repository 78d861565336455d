"""One home per fact: the plan's stages, the units and the cost model agree on every memory,
every fold count and every accumulator range, because they compute them in one place."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.compiler.bitpack import pack_ints
from bitfold.compiler.cost import DEVICES, mvu_layers
from bitfold.compiler.cost_mvu import MvuGeometry
from bitfold.compiler.tensortype import int_type
from bitfold.hw.plan import build_plan
from bitfold.hw.stages import MVUStage, WindowStage

from .helpers import composite_mlp, domain_cnn, random_folding, small_cnn, sparse_cnn
from .test_ternary import ternary_cnn


def test_pack_ints_packs_twos_complement_elements_low_first() -> None:
    rng = np.random.default_rng(0)
    for bits in (1, 3, 8, 20, 63, 70):
        values = rng.integers(-(1 << 30), 1 << 30, (5, 7))
        mask = (1 << bits) - 1
        want = [sum((int(v) & mask) << (i * bits) for i, v in enumerate(row)) for row in values]
        assert pack_ints(values, bits) == want
    assert pack_ints(np.zeros((2, 0), np.int64), 4) == [0, 0]
    with pytest.raises(ValueError, match="2-D"):
        pack_ints(np.zeros(3), 1)


GRAPHS = [small_cnn, lambda: sparse_cnn(0.5), lambda: sparse_cnn(0.5, group=2), composite_mlp,
          domain_cnn, ternary_cnn]


@pytest.mark.parametrize("make", GRAPHS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stages_units_and_cost_model_agree_on_memories_folds_and_ranges(make, seed) -> None:
    graph = make()
    rng = np.random.default_rng(seed)
    folding = random_folding(graph, rng, index=0.5, group=0.5)
    plan = build_plan(graph, folding)
    costs = {c.name: c for c in folding.layers}
    shapes = {layer.name: layer for layer in mvu_layers(graph)}
    model = DEVICES[folding.device]
    mvus = [s for s in plan.stages if isinstance(s, MVUStage)]
    assert [s.node for s in mvus] == list(costs)
    for stage in mvus:
        cost, unit = costs[stage.node], stage.component()
        geometry = MvuGeometry.of(shapes[stage.node], cost.pe, cost.simd, cost.layout, model)
        weights = stage.memories()[0]
        # the folds and the weight memory: the cost model's, the stage's and the unit's
        assert (stage.nf, stage.sf) == (cost.nf, cost.sf) == (unit.nf, unit.sf)
        assert (weights.depth, weights.width) == (geometry.depth, geometry.width) == \
            (len(unit.weight_words()), unit.weight_width)
        assert weights.kind == cost.weight_memory == unit.weight_memory == geometry.kind
        assert cost.weight_bits == geometry.bits
        # the accumulator: the IR's range, held by the layer's type
        lo, hi = unit.enc.acc_range(unit.input_bits, unit.bipolar)
        t_acc = graph.types[stage.node]
        if graph.node(stage.node).encoding.UNIT_ACCUMULATES_IR:
            assert int_type((), lo, hi).bits == t_acc.bits
        assert unit.acc_shape.width == stage.acc_bits
    for stage in plan.stages:
        if isinstance(stage, WindowStage):  # the line buffers the cost model counts
            rows = stage.memories()
            assert costs[stage.node].buffer_bits >= sum(r.depth * r.width for r in rows)
