"""The analytic cost model of the streaming accelerator (DESIGN.md §5).

Each binary layer is a matrix-vector unit (MVU) with ``MH`` output neurons
(rows) and ``MW`` inputs per neuron (``k*k*C_in`` for a convolution). ``PE``
neurons work in parallel, each taking ``SIMD`` inputs per cycle, so one output
vector takes ``NF * SF`` cycles (``NF = ceil(MH / PE)``, ``SF = ceil(MW / SIMD)``)
and a layer ``NF * SF * output pixels`` cycles per frame. Stages run
concurrently: a frame every ``max`` over stages cycles.

Resources are *estimates* for LUT4 fabrics with block RAM (ECP5: DP16KD,
iCE40: EBR); the constants live in :class:`ResourceModel` so board reports can
calibrate them:

* XNOR-popcount: ``SIMD`` LUTs for the XNORs (none when the weights are
  constants, i.e. ``NF * SF == 1``) plus an adder tree over ``SIMD`` one-bit
  values (an ``n``-bit adder costs ``n`` LUTs); multi-bit input: ``SIMD *
  bits`` LUTs of conditional negation and an adder tree over ``bits + 1``-bit
  values. Per PE.
* Accumulator: ``acc_bits`` LUTs and flip-flops per PE when ``SF > 1``.
* Threshold: an ``acc_bits`` comparator per PE, thresholds in LUT ROM
  (``acc_bits * ceil(NF / 16)`` LUTs per PE) when ``NF > 1``.
* Weights: ``MH * MW`` bits as a ``PE * SIMD``-wide, ``NF * SF``-deep memory:
  constants when the depth is 1, LUT ROM up to ``lutrom_max_depth`` (a LUT4 is
  a 16x1 ROM), block RAM beyond (the best of the block's aspect ratios).
* Sparse layers (a mask and a polarity per neuron): where the weights are
  constants the mask's zeros are no terms, so the adder tree shrinks with the
  density; otherwise as binary, the mask in place of the weights, plus a
  polarity ROM. Composite layers: ``K`` times the XNOR-popcount lanes, ``K``
  constant shift-and-add combiners, ``K`` times the weight bits (one
  ``K * PE * SIMD``-wide memory).
* Buffers: a dense MVU with ``NF > 1`` re-reads its input vector (``MW`` inputs);
  a convolution's sliding window keeps ``k`` padded rows of its input.
  Up to ``lutram_max_bits`` in LUT RAM (16 bits a LUT), beyond in block RAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .ir import (
    CONV_KINDS,
    MVU_KINDS,
    CompositeConv2d,
    CompositeDense,
    Graph,
    MaxPool2d,
    ScoreAffine,
    SparseConv2d,
    SparseDense,
    mvu_matrix,
)

__all__ = [
    "DEVICES",
    "LayerCost",
    "LayerShape",
    "ResourceModel",
    "StageCost",
    "adder_tree_luts",
    "layer_cost",
    "mvu_layers",
    "other_stages",
]


@dataclass(frozen=True)
class ResourceModel:
    """Constants of the resource estimate for one FPGA family."""

    name: str = "ecp5"
    bram_bits: int = 18432
    bram_shapes: tuple[tuple[int, int], ...] = (  # (depth, width) configurations of one block
        (16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
    lutrom_max_depth: int = 64
    lut_rom_depth: int = 16
    lutram_max_bits: int = 4096
    fifo_depth: int = 2


DEVICES = {
    "ecp5": ResourceModel(),
    "ice40": ResourceModel("ice40", 4096, ((2048, 2), (1024, 4), (512, 8), (256, 16))),
}


@dataclass(frozen=True)
class LayerShape:
    """What the cost model needs to know about one MVU of a graph."""

    name: str
    conv: bool
    mh: int
    mw: int
    pixels: int
    input_bits: int  # 1 for bipolar input
    acc_bits: int
    buffer_inputs: int  # inputs held by the sliding window (conv) or the vector buffer (dense)
    scheme: str = "binary"  # "binary" | "sparse" | "composite"
    planes: int = 1  # composite: K weight planes, each a parallel XNOR-popcount lane
    density: float = 1.0  # sparse: fraction of non-zero weights


@dataclass(frozen=True)
class LayerCost:
    """One MVU at one folding: its cycles and resource estimate."""

    name: str
    pe: int
    simd: int
    mh: int
    mw: int
    nf: int
    sf: int
    pixels: int
    cycles: int
    luts: int
    ffs: int
    brams: int
    weight_bits: int
    weight_memory: str  # "constant" | "lutrom" | "bram"
    acc_bits: int
    buffer_bits: int


@dataclass(frozen=True)
class StageCost:
    """A stage with a fixed rate (max pool, score/argmax unit)."""

    name: str
    kind: str
    cycles: int
    luts: int
    ffs: int
    brams: int
    buffer_bits: int


def adder_tree_luts(n: int, width: int) -> int:
    """LUTs of a balanced adder tree summing ``n`` values of ``width`` bits (n-bit adder = n)."""
    luts = 0
    while n > 1:
        pairs = n // 2
        luts += pairs * (width + 1)
        n, width = n - pairs, width + 1
    return luts


def mvu_layers(graph: Graph) -> list[LayerShape]:
    """The graph's binary layers in execution order, as the cost model sees them."""
    out = []
    for node in graph.nodes:
        if not isinstance(node, MVU_KINDS):
            continue
        t_in, t_out = graph.types[node.input], graph.types[node.name]
        planes = mvu_matrix(node)
        k, mh, mw = planes.shape
        bits = 1 if t_in.bipolar else t_in.bits
        conv = isinstance(node, CONV_KINDS)
        if conv:
            pixels = t_out.shape[0] * t_out.shape[1]
            buffer = node.kernel * (t_in.shape[1] + 2 * node.pad) * t_in.shape[2]
        else:
            pixels, buffer = 1, mw
        scheme = "sparse" if isinstance(node, SparseDense | SparseConv2d) else \
            "composite" if isinstance(node, CompositeDense | CompositeConv2d) else "binary"
        density = float(planes.mean()) if scheme == "sparse" else 1.0
        out.append(LayerShape(node.name, conv, mh, mw, pixels, bits, t_out.bits, buffer,
                              scheme, k, density))
    return out


def _memory(width: int, depth: int, model: ResourceModel) -> tuple[str, int, int]:
    """``(kind, luts, brams)`` of a ``width`` x ``depth`` ROM."""
    if depth == 1:
        return "constant", 0, 0
    if depth <= model.lutrom_max_depth:
        return "lutrom", width * math.ceil(depth / model.lut_rom_depth), 0
    blocks = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in model.bram_shapes)
    return "bram", 0, blocks


def _buffer(bits: int, model: ResourceModel) -> tuple[int, int]:
    if bits == 0:
        return 0, 0
    if bits <= model.lutram_max_bits:
        return math.ceil(bits / model.lut_rom_depth), 0
    return 0, math.ceil(bits / model.bram_bits)


def layer_cost(layer: LayerShape, pe: int, simd: int, model: ResourceModel) -> LayerCost:
    """Cycles and resources of ``layer`` at ``(pe, simd)``; legality is checked elsewhere."""
    nf, sf = math.ceil(layer.mh / pe), math.ceil(layer.mw / simd)
    constant = nf * sf == 1
    terms = simd
    if layer.scheme == "sparse" and constant:  # constant zeros of the mask are pruned
        terms = max(1, math.ceil(layer.density * simd))
    if layer.input_bits == 1:
        xnor = 0 if constant else simd  # sparse: mask AND xnor(polarity) is one LUT a term
        compute = xnor + adder_tree_luts(terms, 1)
    else:
        compute = terms * layer.input_bits + adder_tree_luts(terms, layer.input_bits + 1)
    compute *= layer.planes  # composite: K parallel XNOR-popcount lanes ...
    if layer.planes > 1:  # ... combined by constant shift-and-add (about one adder a plane)
        compute += layer.planes * layer.acc_bits
    if layer.scheme == "sparse" and nf > 1:  # the polarity ROM, one bit per neuron and fold
        compute += math.ceil(nf / model.lut_rom_depth)
    acc = layer.acc_bits if sf > 1 else 0
    thr_rom = layer.acc_bits * math.ceil(nf / model.lut_rom_depth) if nf > 1 else 0
    per_pe = compute + acc + layer.acc_bits + thr_rom
    kind, mem_luts, brams = _memory(pe * simd * layer.planes, nf * sf, model)
    buffer_bits = layer.buffer_inputs * layer.input_bits if (layer.conv or nf > 1) else 0
    buf_luts, buf_brams = _buffer(buffer_bits, model)
    return LayerCost(
        name=layer.name, pe=pe, simd=simd, mh=layer.mh, mw=layer.mw, nf=nf, sf=sf,
        pixels=layer.pixels, cycles=nf * sf * layer.pixels,
        luts=pe * per_pe + mem_luts + buf_luts, ffs=pe * (acc + 1),
        brams=brams + buf_brams, weight_bits=layer.planes * layer.mh * layer.mw,
        weight_memory=kind,
        acc_bits=layer.acc_bits, buffer_bits=buffer_bits)


def other_stages(graph: Graph, model: ResourceModel) -> list[StageCost]:
    """Max pools (one input pixel, all channels, per cycle) and the score/argmax unit."""
    out = []
    for node in graph.nodes:
        if isinstance(node, MaxPool2d):
            h, w, c = graph.types[node.input].shape
            buffer_bits = (node.kernel - 1) * w * c
            luts, brams = _buffer(buffer_bits, model)
            out.append(StageCost(node.name, node.kind, h * w, luts + c, c, brams, buffer_bits))
        elif isinstance(node, ScoreAffine):
            t_in, t_out = graph.types[node.input], graph.types[node.name]
            classes = t_in.shape[0]
            # one shared shift-add multiplier, an adder and the argmax comparator
            luts = t_in.bits * t_out.bits + 2 * t_out.bits
            out.append(StageCost(node.name, "ScoreAffine+ArgMax", classes, luts,
                                 2 * t_out.bits, 0, 0))
    return out
