"""Sparse layers' two weight layouts in the cost model and the folding (mask and index)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitfold.compiler.cost import DEVICES, columns, layer_cost, layouts, mvu_layers
from bitfold.compiler.encodings import Binary, Sparse
from bitfold.compiler.errors import FoldingError
from bitfold.compiler.folding import (
    evaluate_folding,
    fold_for_fps,
    legal_values,
    read_folding,
    write_folding,
)
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    ScoreAffine,
    Threshold,
)
from bitfold.compiler.verify import build_graph


def _graph(out_layer: str = "sparse") -> Graph:
    """fc0: 64 rows keeping 1 of 64 inputs each; fc1: 4 rows keeping 32 of 64 (or binary)."""
    rng = np.random.default_rng(0)
    m0 = np.zeros((64, 64), np.uint8)
    m0[np.arange(64), rng.integers(0, 64, 64)] = 1
    m1 = np.zeros((4, 64), np.uint8)
    for r in range(4):
        m1[r, rng.choice(64, 32, replace=False)] = 1
    fc1 = Layer("fc1", "t0", Sparse(m1, np.array([1, 0, 1, 1]))) if out_layer == "sparse" else \
        Layer("fc1", "t0", Binary(rng.integers(0, 2, (4, 64))))
    nodes = [Input("x", (64,), 1, signed=True), Layer("fc0", "x", Sparse(m0, rng.integers(0, 2, 64))),
             Threshold("t0", "fc0", rng.integers(0, 3, 64)), fc1,
             ScoreAffine("scores", "fc1", np.ones(4, np.int64), np.zeros(4, np.int64)),
             ArgMax("class", "scores")]
    return build_graph("sparse layouts", nodes, ["class"])


def test_index_layout_cycles_follow_the_kept_inputs_and_memory_the_positions() -> None:
    graph = _graph()
    f = evaluate_folding(graph, {"fc0": (2, 1, "index"), "fc1": (1, 8, "index")})
    fc0, fc1 = f.layers
    assert (fc0.layout, fc0.nf, fc0.sf, fc0.cycles) == ("index", 32, 1, 32)
    assert (fc1.nf, fc1.sf, fc1.cycles) == (4, 4, 16)  # 32 kept of 64: half the mask's cycles
    assert fc0.weight_bits == 64 * 1 * 6 and fc1.weight_bits == 4 * 32 * 6  # 6-bit positions
    mask = evaluate_folding(graph, {"fc0": (2, 1), "fc1": (1, 8)})
    assert [c.layout for c in mask.layers] == ["mask", "mask"]
    assert mask.layers[1].cycles == 4 * 8 and mask.layers[0].weight_bits == 64 * 64


def test_each_layout_is_cheaper_in_its_regime_and_the_optimizer_prices_both() -> None:
    graph = _graph()
    # 64 cycles per frame: 1 of 64 kept is cheaper as positions, 32 of 64 as a mask
    index = evaluate_folding(graph, {"fc0": (1, 1, "index"), "fc1": (1, 2, "index")})
    mask = evaluate_folding(graph, {"fc0": (1, 64, "mask"), "fc1": (1, 4, "mask")})
    assert [c.cycles for c in index.layers] == [c.cycles for c in mask.layers] == [64, 64]
    assert index.layers[0].luts < mask.layers[0].luts
    assert index.layers[0].weight_bits < mask.layers[0].weight_bits
    assert mask.layers[1].luts < index.layers[1].luts
    assert mask.layers[1].weight_bits < index.layers[1].weight_bits
    layers = mvu_layers(graph)
    for budget in (8, 64, 256):
        f = fold_for_fps(graph, 1e6, clock_mhz=budget)
        for layer, chosen in zip(layers, f.layers, strict=True):
            options = [layer_cost(layer, pe, simd, DEVICES["ecp5"], layout)
                       for layout in layouts(layer)
                       for pe in legal_values(layer.mh, False)
                       for simd in legal_values(columns(layer, layout), False)]
            assert chosen.cycles <= budget
            assert chosen.luts == min(c.luts for c in options if c.cycles <= budget)


def test_layouts_round_trip_and_illegal_ones_are_refused(tmp_path) -> None:
    graph = _graph()
    f = evaluate_folding(graph, {"fc0": (4, 1, "index"), "fc1": (2, 16, "mask")})
    write_folding(tmp_path, f)
    back = read_folding(tmp_path / "folding.json", graph)
    assert [(c.pe, c.simd, c.layout) for c in back.layers] == [(4, 1, "index"), (2, 16, "mask")]
    with pytest.raises(FoldingError, match=r"layer 'fc1': simd=64 is illegal; simd must divide "
                                           r"the 32 kept inputs"):
        evaluate_folding(graph, {"fc0": (4, 1), "fc1": (2, 64, "index")})
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps({"schema": 1, "layers": [
        {"name": "fc0", "pe": 4, "simd": 1, "layout": "index"},
        {"name": "fc1", "pe": 2, "simd": 16, "layout": "index"}]}))
    binary = _graph("binary")
    with pytest.raises(FoldingError, match=r"layer 'fc1': layout='index' is illegal; a binary "
                                           r"layer has 'dense'"):
        read_folding(hand, binary)


def _grouped_graph(group: int = 4, kept: int = 1) -> Graph:
    """fc0 and fc1 keep ``kept`` of every ``group`` inputs (N:G, as --sparse-group trains)."""
    rng = np.random.default_rng(1)

    def mask(rows, fan_in):
        m = np.zeros((rows, fan_in // group, group), np.uint8)
        for r in range(rows):
            for g in range(fan_in // group):
                m[r, g, rng.choice(group, kept, replace=False)] = 1
        return m.reshape(rows, fan_in)

    nodes = [Input("x", (64,), 1, signed=True),
             Layer("fc0", "x", Sparse(mask(32, 64), rng.integers(0, 2, 32))),
             Threshold("t0", "fc0", rng.integers(0, 3, 32)),
             Layer("fc1", "t0", Sparse(mask(8, 32), rng.integers(0, 2, 8))),
             ScoreAffine("scores", "fc1", np.ones(8, np.int64), np.zeros(8, np.int64)),
             ArgMax("class", "scores")]
    return build_graph("grouped", nodes, ["class"])


@pytest.mark.parametrize("group,kept", [(2, 1), (4, 1), (8, 2)])
def test_group_layout_of_structured_masks_shrinks_memory_cycles_and_luts(group, kept) -> None:
    graph = _grouped_graph(group, kept)
    layers = mvu_layers(graph)
    assert [(layer.group, layer.group_kept, layer.group_ragged) for layer in layers] == \
        [(group, kept, False)] * 2
    assert layouts(layers[0]) == ("mask", "index", "group")
    assert layouts(mvu_layers(_graph())[1]) == ("mask", "index")  # unstructured: no group layout
    # the same terms a cycle (8 per neuron): the group layout needs G/N fewer cycles ...
    grp = evaluate_folding(graph, {"fc0": (4, 8 // kept, "group"), "fc1": (2, 8 // kept, "group")})
    mask = evaluate_folding(graph, {"fc0": (4, 8), "fc1": (2, 8)})
    for g, m in zip(grp.layers, mask.layers, strict=True):
        assert g.cycles * group == m.cycles * kept
        assert g.weight_bits == m.weight_bits * kept * (group - 1).bit_length() // group
    # ... and at equal cycles fewer LUTs
    grp = evaluate_folding(graph, {"fc0": (4, 2, "group"), "fc1": (2, 1, "group")})
    mask = evaluate_folding(graph, {"fc0": (4, 2 * group), "fc1": (2, group)})
    for g, m in zip(grp.layers, mask.layers, strict=True):
        assert g.cycles == m.cycles and g.luts < m.luts


def test_the_optimizer_takes_the_group_layout_and_it_round_trips(tmp_path) -> None:
    graph = _grouped_graph(4, 1)
    f = fold_for_fps(graph, 1e6, clock_mhz=16)
    assert [c.layout for c in f.layers] == ["group", "group"]
    write_folding(tmp_path, f)
    back = read_folding(tmp_path / "folding.json", graph)
    assert [(c.pe, c.simd, c.layout) for c in back.layers] == \
        [(c.pe, c.simd, c.layout) for c in f.layers]
    with pytest.raises(FoldingError, match=r"layer 'fc0': simd=3 is illegal; simd must divide "
                                           r"the 16 groups of 4 inputs per output"):
        evaluate_folding(graph, {"fc0": (4, 3, "group"), "fc1": (1, 1)}, allow_padding=True)
    with pytest.raises(FoldingError, match=r"layer 'fc1': layout='group' is illegal; a sparse "
                                           r"layer has 'mask' or 'index'"):
        evaluate_folding(_graph(), {"fc0": (4, 1), "fc1": (2, 4, "group")})
