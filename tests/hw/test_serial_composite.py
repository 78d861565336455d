"""Composite layers with their planes bit-serial (the ``"serial"`` layout): hardware and folding.

The serial unit (``bitfold.hw.serial_mvu``) in amaranth.sim against the golden
model under random stalls and at exactly ``NF * SF * K`` cycles a vector;
whole networks folded serial (dense and convolutional, mixed with parallel
layers); the cost model (``K`` times the cycles, fewer LUTs at the same
``(pe, simd)``), the folding's acceptance of the layout on composite layers
only, and the optimizer choosing it where it is cheaper.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from amaranth.hdl import Fragment, signed, unsigned
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler import golden
from bitfold.compiler.cost import DEVICES, LayerShape, layer_cost, layouts, mvu_layers
from bitfold.compiler.encodings import Composite, Sparse
from bitfold.compiler.errors import FoldingError
from bitfold.compiler.folding import (
    evaluate_folding,
    legal_values,
    read_folding,
    trade_off,
    write_folding,
)
from bitfold.compiler.ir import (
    Graph,
    Layer,
    TensorType,
    Threshold,
)
from bitfold.compiler.memlayout import serial_weight_words
from bitfold.compiler.verify import build_graph, channel_ranges
from bitfold.hw.mvu import MVU
from bitfold.hw.plan import build_plan
from bitfold.hw.serial_mvu import SerialCompositeMVU
from bitfold.hw.simulate import pack, run_stream, unpack
from bitfold.hw.stages import MVUStage, SerialMVUStage
from bitfold.hw.weights import CompositeWeights

from ..compiler.randgraphs import lowered_graphs, random_inputs
from .helpers import accumulator_range, composite_mlp, folded, small_cnn
from .test_network import check_network

STALLS = [(0.0, 0.0), (0.35, 0.4)]
SCALES = {2: [256, 101], 3: [256, 77, 5]}


def _words(vectors: np.ndarray, per_word: int, bits: int) -> list[int]:
    flat = np.asarray(vectors).reshape(-1)
    return [pack(flat[i:i + per_word], bits) for i in range(0, flat.size, per_word)]


def _shape(lo: int, hi: int):
    return unsigned(hi.bit_length()) if lo >= 0 else \
        signed(max(hi.bit_length(), (-lo - 1).bit_length()) + 1)


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("mh,mw,pe,simd,planes,bits,thr", [
    (8, 12, 2, 3, 2, 1, True),     # NF=4, SF=4
    (6, 10, 6, 10, 3, 1, False),   # NF=1, SF=1: the accumulator only sums the planes
    (6, 10, 3, 10, 2, 1, True),    # NF=2, SF=1
    (4, 9, 4, 3, 3, 5, True),      # multi-bit, NF=1, SF=3
    (4, 9, 2, 9, 2, 3, False),     # multi-bit, NF=2, SF=1, raw integers
    (3, 20, 1, 4, 3, 8, True),     # multi-bit, NF=3, SF=5
    (16, 64, 2, 4, 2, 1, True),    # NF=8, SF=16: 256 words, block RAM
])
def test_serial_composite_mvu_matches_golden(mh, mw, pe, simd, planes, bits, thr,
                                             stall) -> None:
    rng = np.random.default_rng(mh * 1000 + mw * 10 + simd + planes)
    n = 5
    bipolar = bits == 1
    weights = rng.integers(0, 2, (planes, mh, mw))
    scale = SCALES[planes]
    node = Layer("fc", "x", Composite(weights, np.array(scale)))
    t_in = TensorType((mw,), 1, True) if bipolar else TensorType((mw,), bits, False)
    x = rng.integers(0, 2 if bipolar else 1 << bits, (n, mw))
    acc = golden.layer(node, x, t_in)
    shape = _shape(*accumulator_range(weights, bits, bipolar, plane_scale=scale))
    thresholds = rng.integers(acc.min(), acc.max() + 2, mh) if thr else None
    dut = SerialCompositeMVU(weights, pe, simd, shape, plane_scale=scale, thresholds=thresholds,
                             input_bits=bits, bipolar=bipolar)
    nf, sf = mh // pe, mw // simd
    assert dut.weight_width == pe * simd and len(dut.weight_words()) == nf * sf * planes
    run = run_stream(dut, _words(x, simd, bits), n * nf, p_idle=stall[0], p_stall=stall[1],
                     seed=7, max_cycles=2000 + 40 * n * nf * sf * planes)
    if thr:
        want = (acc >= thresholds).astype(int)
        got = [e for w in run.outputs for e in unpack(w, pe, 1)]
    else:
        want = acc
        got = [e for w in run.outputs for e in unpack(w, pe, shape.width, shape.signed)]
    assert got == want.ravel().tolist()
    if stall == (0.0, 0.0):  # one vector every NF * SF * K cycles, one fold every SF * K
        gaps = np.diff(run.out_cycles)
        assert set(gaps.tolist()) == {sf * planes}
        assert run.out_cycles[-1] - run.out_cycles[nf - 1] == (n - 1) * nf * sf * planes


def test_serial_unit_equals_the_parallel_unit_and_stores_planes_plane_major() -> None:
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 2, (3, 6, 8))
    scale = SCALES[3]
    shape = _shape(*accumulator_range(weights, 1, True, plane_scale=scale))
    x = rng.integers(0, 2, (4, 8))
    outs = []
    for dut in (MVU(CompositeWeights(weights, scale), 3, 4, shape),
                SerialCompositeMVU(weights, 3, 4, shape, plane_scale=scale)):
        run = run_stream(dut, _words(x, 4, 1), 4 * 2, p_stall=0.3, seed=3)
        outs.append(run.outputs)
    assert outs[0] == outs[1]
    words = serial_weight_words(weights, 3, 4)
    par = MVU(CompositeWeights(weights, scale), 3, 4, shape)
    Fragment.get(par, None)
    parallel = par.weight_words()
    mask = (1 << 12) - 1
    for a, word in enumerate(parallel):  # address (nf*SF + sf)*K + k holds plane k's bits
        assert [words[a * 3 + k] for k in range(3)] == [(word >> (12 * k)) & mask
                                                       for k in range(3)]
    with pytest.raises(ValueError, match="plane_scale"):
        SerialCompositeMVU(weights[0], 3, 4, shape, plane_scale=None)


def composite_cnn(name: str = "composite cnn") -> Graph:
    """small_cnn with both convolutions composite (2 and 3 planes) and thresholds in range."""
    rng = np.random.default_rng(4)
    graph = small_cnn(name)
    nodes = []
    for n in graph.nodes:
        if isinstance(n, Layer) and n.conv:
            k = 2 if not nodes[1:] else 3
            n = Layer(n.name, n.input, Composite(rng.integers(0, 2, (k, *n.weight.shape)), SCALES[k]),
                      n.geometry)
        elif isinstance(n, Threshold):
            layer = nodes[-1]
            ranges = channel_ranges(layer, graph.types[layer.input])
            n = Threshold(n.name, n.input, np.array([rng.integers(lo + (hi - lo) // 3,
                                                                  hi - (hi - lo) // 3 + 1)
                                                     for lo, hi, _ in ranges]))
        nodes.append(n)
    return build_graph(name, nodes, list(graph.outputs))


@pytest.mark.parametrize("make,choice", [
    (composite_mlp, {"fc0": (4, 16, "serial"), "fc1": (2, 8, "serial")}),   # NF>1, SF>1
    (composite_mlp, {"fc0": (16, 64, "serial"), "fc1": (5, 16)}),          # NF=SF=1; mixed
    (composite_cnn, {"c0": (2, 6, "serial"), "c1": (3, 4), "fc": (5, 8)}),
    (composite_cnn, {"c0": (4, 18), "c1": (6, 8, "serial"), "fc": (1, 96)}),
])
def test_networks_with_serial_composite_layers_are_bit_exact(make, choice) -> None:
    graph = make()
    folding = evaluate_folding(graph, choice)
    assert [c.layout for c in folding.layers] == [v[2] if len(v) > 2 else "dense"
                                                  for v in choice.values()]
    plan = build_plan(graph, folding)
    kinds = {s.node: (s.layout, type(s)) for s in plan.stages if isinstance(s, MVUStage)}
    assert kinds == {k: ("serial", SerialMVUStage) if len(v) > 2 else ("dense", MVUStage)
                     for k, v in choice.items()}
    x = np.random.default_rng(2).integers(0, 1 << graph.types[graph.inputs[0]].bits,
                                          (6, *graph.types[graph.inputs[0]].shape))
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=5)
    run = check_network(graph, folding, np.concatenate([x, x]))
    assert run.steady_cycles_per_frame() == pytest.approx(folding.cycles_per_frame, rel=0.05)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lowered_graphs(max_layers=2, schemes=("composite",)), st.integers(0, 2**16))
def test_random_composite_networks_folded_serial_are_bit_exact(graph, seed) -> None:
    graph = folded(graph)
    rng = np.random.default_rng(seed)
    choice = {layer.name: (int(rng.choice(legal_values(layer.mh, False))),
                           int(rng.choice(legal_values(layer.mw, False))),
                           "serial" if layer.scheme == "composite" and rng.random() < 0.7
                           else None)
              for layer in mvu_layers(graph)}
    folding = evaluate_folding(graph, choice)
    check_network(graph, folding, random_inputs(graph, 4, seed), p_idle=0.3, p_stall=0.3,
                  seed=seed)


def _sfc_layer(planes: int = 2, bits: int = 1) -> LayerShape:
    """A hidden sfc layer (256 x 256, bipolar input), composite with ``planes`` planes."""
    acc_bits = (256 * (256 + 101 + (77 if planes > 2 else 0))).bit_length()
    return LayerShape("fc1", False, 256, 256, 1, bits, acc_bits, 256, "composite", planes)


@pytest.mark.parametrize("planes", [2, 3])
@pytest.mark.parametrize("pe,simd", [(1, 1), (4, 16), (16, 32), (16, 64), (64, 256)])
def test_cost_model_serial_takes_k_times_the_cycles_for_fewer_luts(planes, pe, simd) -> None:
    model = DEVICES["ecp5"]
    for bits in (1, 8):
        layer = _sfc_layer(planes, bits)
        assert layouts(layer) == ("dense", "serial")
        par = layer_cost(layer, pe, simd, model)
        ser = layer_cost(layer, pe, simd, model, "serial")
        assert (par.layout, ser.layout) == ("dense", "serial")
        assert ser.cycles == planes * par.cycles
        assert ser.weight_bits == par.weight_bits == planes * 256 * 256
        if simd >= 4:  # the adder trees dominate: 1/K of them
            assert ser.luts < par.luts
    binary = LayerShape("fc", False, 256, 256, 1, 1, 9, 256)
    assert layouts(binary) == ("dense",)
    with pytest.raises(ValueError, match="has no layout 'serial'"):
        layer_cost(binary, 4, 16, model, "serial")


def test_cost_model_memory_is_the_serial_units() -> None:
    rng = np.random.default_rng(6)
    for pe, simd in ((2, 4), (4, 40), (12, 40)):  # block RAM, LUT ROM, a K-deep LUT ROM
        weights = rng.integers(0, 2, (2, 12, 40))
        shape = _shape(*accumulator_range(weights, 1, True, plane_scale=SCALES[2]))
        dut = SerialCompositeMVU(weights, pe, simd, shape, plane_scale=SCALES[2])
        Fragment.get(dut, None)  # elaborates (and so uses) it
        layer = LayerShape("fc", False, 12, 40, 1, 1, shape.width, 40, "composite", 2)
        cost = layer_cost(layer, pe, simd, DEVICES["ecp5"], "serial")
        assert cost.weight_memory == dut.weight_memory
        assert cost.weight_bits == dut.weight_width * len(dut.weight_words())
        assert cost.cycles == dut.nf * dut.sf * 2


def test_folding_file_selects_serial_on_composite_layers_only(tmp_path) -> None:
    graph = composite_mlp()
    f = evaluate_folding(graph, {"fc0": (4, 16, "serial"), "fc1": (2, 8)})
    write_folding(tmp_path, f)
    doc = json.loads((tmp_path / "folding.json").read_text())
    assert [e["layout"] for e in doc["layers"]] == ["serial", "dense"]
    back = read_folding(tmp_path / "folding.json", graph)
    assert [(c.pe, c.simd, c.layout) for c in back.layers] == [(4, 16, "serial"), (2, 8, "dense")]
    assert back.layers[0].cycles == 4 * 4 * 2  # NF * SF * K
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps({"schema": 1, "layers": [
        {"name": "fc0", "pe": 4, "simd": 16, "layout": "serial"},
        {"name": "fc1", "pe": 2, "simd": 8, "layout": "dense"}]}))
    assert [c.layout for c in read_folding(hand, graph).layers] == ["serial", "dense"]

    binary = small_cnn()
    with pytest.raises(FoldingError, match=r"layer 'fc': layout='serial' is illegal; a binary "
                                           r"layer has 'dense' \('serial' is for composite"):
        evaluate_folding(binary, {"c0": (2, 6), "c1": (3, 4), "fc": (5, 8, "serial")})
    sparse = build_graph("sparse", [
        *composite_mlp().nodes[:3],
        Layer("fc1", "t0", Sparse(np.ones((10, 16), np.uint8), np.ones(10, np.uint8))),
        *composite_mlp().nodes[4:]], ["class"])
    hand.write_text(json.dumps({"schema": 1, "layers": [
        {"name": "fc0", "pe": 4, "simd": 16}, {"name": "fc1", "pe": 2, "simd": 8,
                                                "layout": "serial"}]}))
    with pytest.raises(FoldingError, match=r"hand.json: layer 'fc1': layout='serial' is "
                                           r"illegal; a sparse layer has 'mask' or 'index'"):
        read_folding(hand, sparse)


def test_the_optimizer_folds_serial_where_it_is_cheaper() -> None:
    graph = composite_mlp()
    layers = {layer.name: layer for layer in mvu_layers(graph)}
    assert all(layouts(layer) == ("dense", "serial") for layer in layers.values())
    foldings = trade_off(graph)
    serial = [c for f in foldings for c in f.layers if c.layout == "serial"]
    assert serial, "no folding chose the serial layout"
    for c in serial:  # at its cycle count, no parallel folding of the layer is cheaper
        parallel = [layer_cost(layers[c.name], pe, simd, DEVICES["ecp5"])
                    for pe in range(1, c.mh + 1) if c.mh % pe == 0
                    for simd in range(1, c.mw + 1) if c.mw % simd == 0]
        assert all((p.luts, p.brams) >= (c.luts, c.brams) for p in parallel
                   if p.cycles <= c.cycles)
