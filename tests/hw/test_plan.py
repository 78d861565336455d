"""The hardware plan: typed stages in stream order, and the chains it refuses, by name."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.compiler.encodings import Binary
from bitfold.compiler.folding import evaluate_folding
from bitfold.compiler.ir import ArgMax, Input, Layer, ScoreAffine, Threshold, Window
from bitfold.compiler.verify import build_graph
from bitfold.hw.plan import HardwareError, build_plan
from bitfold.hw.stages import MVUStage, PoolStage, ScoreStage, SerialMVUStage, WindowStage
from bitfold.hw.weights import BinaryWeights, CompositeWeights

from .helpers import composite_mlp, small_cnn


def _fully_parallel(graph):
    from bitfold.compiler.cost import mvu_layers

    return evaluate_folding(graph, {c.name: (c.mh, c.mw) for c in mvu_layers(graph)})


def test_a_plan_is_one_typed_stage_per_unit_in_stream_order() -> None:
    graph = small_cnn()
    plan = build_plan(graph, evaluate_folding(graph, {"c0": (2, 6), "c1": (3, 4), "fc": (5, 8)}))
    assert [(type(s), s.node) for s in plan.stages] == [
        (WindowStage, "c0"), (MVUStage, "c0"), (PoolStage, "p0"), (WindowStage, "c1"),
        (MVUStage, "c1"), (MVUStage, "fc"), (ScoreStage, "scores")]
    assert [s.kind for s in plan.stages] == ["swu", "mvu", "pool", "swu", "mvu", "mvu", "score"]
    assert len({s.name for s in plan.stages}) == len(plan.stages)
    c0 = plan.stages[1]
    assert isinstance(c0, MVUStage) and c0.thresholds is not None and c0.out_bits == 1
    assert (c0.nf, c0.sf, c0.pe, c0.simd) == (2, 3, 2, 6)
    window = plan.stages[0]
    assert isinstance(window, WindowStage) and window.out_elems == c0.in_elems
    assert plan.stages[-2].thresholds is None  # the score layer's integers


def test_a_serial_composite_unit_gets_a_fifo_of_one_vector_plus_two() -> None:
    graph = composite_mlp()
    plan = build_plan(graph, evaluate_folding(graph, {"fc0": (4, 16, "serial"), "fc1": (5, 16)}))
    serial = next(s for s in plan.stages if isinstance(s, SerialMVUStage))
    assert serial.fifo_depth == 64 // 16 + 2
    assert {s.fifo_depth for s in plan.stages if s is not serial} == {2}


def test_an_mvu_stage_holds_its_encodings_unit_and_a_serial_one_only_planes() -> None:
    graph = composite_mlp()
    plan = build_plan(graph, evaluate_folding(graph, {"fc0": (4, 16, "serial"), "fc1": (5, 16)}))
    serial, parallel = (s for s in plan.stages if isinstance(s, MVUStage))
    assert type(serial) is SerialMVUStage and isinstance(serial.unit, CompositeWeights)
    planes = graph.node("fc0").encoding.planes()
    assert np.array_equal(serial.unit.bits, planes) and serial.unit.shape == planes.shape[1:]
    assert type(parallel) is MVUStage and isinstance(parallel.unit, CompositeWeights)
    assert parallel.memories()[0].width == parallel.unit.planes * 5 * 16  # K planes a word
    with pytest.raises(ValueError, match="SerialMVUStage 'x' needs CompositeWeights, not "
                                         "BinaryWeights"):
        SerialMVUStage(**{**vars(serial), "name": "x", "unit": BinaryWeights(planes[0])})


def _graph(nodes, outputs=("class",)):
    return build_graph("g", nodes, list(outputs))


RNG = np.random.default_rng(0)
DENSE = [Input("x", (16,), 1, True),
         Layer("fc0", "x", Binary(RNG.integers(0, 2, (8, 16))))]
SCORES = [ScoreAffine("scores", "fc1", np.ones(3, np.int64), np.zeros(3, np.int64)),
          ArgMax("class", "scores")]


@pytest.mark.parametrize("nodes,outputs,match", [
    # a layer feeding two nodes: not a chain
    (DENSE + [Threshold("t0", "fc0", np.full(8, 4)), Threshold("t1", "fc0", np.full(8, 5)),
              Layer("fc1", "t0", Binary(RNG.integers(0, 2, (3, 8)))), *SCORES],
     ("class",), r"BinaryDense 'fc0' must feed exactly one Threshold or ScoreAffine or "
                 r"Layer or Requantize, not Threshold 't0', Threshold 't1'"),
    # a convolution's integers straight into a dense layer
    ([Input("x", (4, 4, 1), 1, True),
      Layer("c0", "x", Binary(RNG.integers(0, 2, (2, 3, 3, 1))), Window(3, 1, 0, -1)),
      Layer("fc1", "c0", Binary(RNG.integers(0, 2, (3, 8)))), *SCORES],
     ("class",), r"BinaryConv2d 'c0' may feed a dense layer directly only as a dense layer"),
    # the scores as the output
    (DENSE + [Threshold("t0", "fc0", np.full(8, 4)),
              Layer("fc1", "t0", Binary(RNG.integers(0, 2, (3, 8)))), *SCORES],
     ("scores",), r"the output must be the ArgMax .class., not .scores."),
])
def test_graphs_outside_the_chain_are_refused_naming_the_node(nodes, outputs, match) -> None:
    graph = _graph(nodes, outputs)
    with pytest.raises(HardwareError, match=match):
        build_plan(graph, _fully_parallel(graph))
