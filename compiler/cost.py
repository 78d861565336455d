"""The analytic cost model of the streaming accelerator (docs/architecture.md, section 5).

Each binary layer is a matrix-vector unit (MVU) with ``MH`` output neurons
(rows) and ``MW`` inputs per neuron (``k*k*C_in`` for a convolution). ``PE``
neurons work in parallel, each taking ``SIMD`` inputs per cycle, so one output
vector takes ``NF * SF`` cycles (``NF = ceil(MH / PE)``, ``SF = ceil(MW / SIMD)``)
and a layer ``NF * SF * output pixels`` cycles per frame. Stages run
concurrently: a frame every ``max`` over stages cycles.

Resources are *estimates* for LUT4 fabrics with block RAM (ECP5: DP16KD,
iCE40: EBR); the constants live in :class:`ResourceModel` so board reports can
calibrate them:

* XNOR-popcount: an adder tree over ``SIMD`` one-bit values (an ``n``-bit
  adder costs ``n`` LUTs; the XNORs fold into the first level's LUTs, whose
  half adders are logic); multi-bit input: ``2 sum(w & x) - sum(x)``, ``SIMD *
  bits`` LUTs of AND gates (none when the weights are constants, i.e.
  ``NF * SF == 1``), an adder tree over ``bits``-bit values and the
  subtraction per PE, and one tree summing the input word per MVU.
* Accumulator: ``acc_bits`` LUTs and flip-flops per PE when ``SF > 1``.
* Threshold: an ``acc_bits`` comparator per PE, thresholds in LUT ROM
  (``acc_bits * ceil(NF / 16)`` LUTs per PE) when ``NF > 1``.
* Weights: ``MH * MW`` bits as a ``PE * SIMD``-wide, ``NF * SF``-deep memory:
  constants when the depth is 1, LUT ROM up to ``lutrom_max_depth`` (a LUT4 is
  a 16x1 ROM), block RAM beyond (the best of the block's aspect ratios).
* Sparse layers (a mask and a polarity per neuron) have two layouts, chosen per
  layer by the folding (``LayerCost.layout``):

  - ``"mask"``: as binary, the mask in place of the weights (``MH * MW`` bits),
    plus a polarity ROM; where the weights are constants the mask's zeros are
    no terms, so the adder tree shrinks with the density. ``SIMD`` divides ``MW``.
  - ``"index"``: per row only the positions of its ``nnz`` kept inputs
    (``K`` = the largest row's ``nnz``; ``ceil(log2 MW)`` bits each, one more
    for a valid bit when some row has fewer), ``MH * K`` slots as a ``PE * SIMD``-slot,
    ``NF * K / SIMD``-deep memory. The unit buffers the input vector twice in
    registers (``2 * MW * bits`` flip-flops) and each term gathers its input
    through a ``2 MW``-to-1 multiplexer (``MW * bits`` LUTs; a 4:1 mux is
    two LUT4s), so it skips zeros: ``NF * K / SIMD`` cycles per vector.
    ``SIMD`` divides ``K``.

  - ``"group"``: when the mask has structure, ``N`` kept inputs at most in every
    group of ``G`` consecutive columns (``--sparse-group G`` trains exactly
    that; :func:`group_structure` finds the ``G`` that stores it smallest), each
    group stores ``N`` positions of ``log2 G`` bits (one more for a valid bit when
    some group keeps fewer), ``MH * MW / G * N`` slots: half a bit a weight at
    1:2 and at 1:4. ``SIMD`` groups a cycle, so a row takes ``MW / (G SIMD)``
    cycles with ``SIMD * N`` terms, each gathered through a ``G``-to-1 multiplexer
    from the input word: zeros are skipped and memory and LUTs shrink with the
    sparsity. Offered only when it is smaller than the mask. ``SIMD`` divides ``MW / G``.

  The information in a row with density ``d`` is ``MW * H(d)`` bits (``H``
  the binary entropy), so at 50% sparsity the mask is already the smallest
  form; positions are smaller than the mask only below a density of
  ``1 / ceil(log2 MW)`` (above 87.5% sparsity for ``MW = 256``), and the
  gather multiplexers make the index layout cheaper in LUTs than the mask at
  equal cycles only at still higher sparsity. The folding prices both and
  takes the cheaper.
* Composite layers (``K`` binary planes, ``K`` times the weight bits) have two
  layouts, chosen per layer by the folding:

  - ``"dense"``: the planes as parallel lanes: ``K`` times the XNOR-popcount
    lanes and adder trees, ``K`` constant shift-and-add combiners, one
    ``K * PE * SIMD``-wide, ``NF * SF``-deep memory; ``NF * SF`` cycles per vector.
  - ``"serial"``: the planes bit-serial through one set of lanes
    (``bitfold.hw.serial_mvu``): ``K`` cycles per word position, so
    ``NF * SF * K`` cycles per vector; one adder tree, ``K`` constant products
    of its sum and a ``K``-to-1 multiplexer selecting the plane's (registered:
    ``acc_bits`` flip-flops), an accumulator even when ``SF = 1``, and a
    ``PE * SIMD``-wide, ``NF * SF * K``-deep memory (never constants).
* Domain layers (``{a, b}`` weights: binary signs, a per-neuron offset, a scale)
  are binary layers plus one adder tree per MVU summing the input word (the
  input's popcount on bipolar input), and per PE a multiply of that sum by the
  neuron's offset (``offset_bits * sum_bits`` LUTs; a constant multiply, about
  ``acc_bits``, when ``NF == 1``), the scale's constant multiply and an adder
  (``2 * acc_bits``), and an offset ROM (``offset_bits * ceil(NF / 16)`` LUTs)
  when ``NF > 1``.
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
    DomainConv2d,
    DomainDense,
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
    "GROUP_SIZES",
    "adder_tree_luts",
    "group_slot_bits",
    "group_structure",
    "index_bits",
    "layer_cost",
    "mux_luts",
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
    lutrom_max_depth: int = 16  # a LUT4 is a 16x1 ROM; deeper weights go to block RAM
    lut_rom_depth: int = 16
    lutram_max_bits: int = 4096
    fifo_depth: int = 2
    register_reads: bool = True  # a pipeline register after each MVU block-RAM read


DEVICES = {
    "ecp5": ResourceModel(),
    # the iCE40's clock is limited by LUT depth and the score path before the block RAMs'
    # outputs; registers there would mostly take logic cells of their own
    "ice40": ResourceModel("ice40", 4096, ((2048, 2), (1024, 4), (512, 8), (256, 16)),
                           register_reads=False),
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
    scheme: str = "binary"  # "binary" | "sparse" | "composite" | "domain"
    planes: int = 1  # composite: K weight planes (parallel or serial XNOR-popcount lanes)
    density: float = 1.0  # sparse: fraction of non-zero weights
    nnz: int = 0  # sparse: the most non-zero weights in a row (K); 0 otherwise
    ragged: bool = False  # sparse: some row has fewer than ``nnz`` non-zeros (padded slots)
    group: int = 0  # sparse: group size G of the group layout (0: the mask has no such structure)
    group_kept: int = 0  # sparse: the most kept inputs in a group of G (N of N:G)
    group_ragged: bool = False  # sparse: some group keeps fewer than ``group_kept``
    offset_bits: int = 0  # domain: bits of a neuron's offset (two's complement); 0 otherwise


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
    layout: str = "dense"  # "dense" (binary, composite) | "serial" (composite) | "mask" | "index" (sparse)


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


def mux_luts(n: int, width: int = 1) -> int:
    """LUT4s of an ``n``-to-1 multiplexer of ``width`` bits (a 4:1 mux is two LUT4s and a PFUMX)."""
    return width * math.ceil(n / 2) if n > 1 else 0


def index_bits(mw: int) -> int:
    """Bits of an input position ``0 .. mw - 1`` in the index layout of a sparse layer."""
    return max(1, (mw - 1).bit_length())


def index_slot_bits(layer: LayerShape, simd: int) -> int:
    """Bits of one slot of the index layout: a position, plus a valid bit when slots are padded."""
    return index_bits(layer.mw) + (1 if layer.ragged else 0)


def layouts(layer: LayerShape) -> tuple[str, ...]:
    """The weight layouts a layer can be built with."""
    if layer.scheme == "sparse":
        return ("mask", "index") + (("group",) if layer.group else ())
    return ("dense", "serial") if layer.scheme == "composite" else ("dense",)


def columns(layer: LayerShape, layout: str) -> int:
    """What ``SIMD`` folds: the inputs per row (``MW``), the kept ones (``K``) when indexed,
    or the groups (``MW / G``) in the group layout."""
    if layout == "index":
        return layer.nnz
    if layout == "group":
        return layer.mw // layer.group
    return layer.mw


GROUP_SIZES = (2, 4, 8, 16)  # group sizes the group layout tries


def group_slot_bits(group: int, ragged: bool) -> int:
    """Bits of one slot of the group layout: a position in the group, and a valid bit if padded."""
    return max(1, (group - 1).bit_length()) + (1 if ragged else 0)


def group_structure(mask) -> tuple[int, int, bool]:
    """``(G, N, ragged)`` of the group layout that stores ``mask`` (``(mh, mw)`` 0/1) in the
    fewest bits, or ``(0, 0, False)`` when no group size beats the mask's one bit a weight.

    Groups are ``G`` consecutive columns; ``N`` is the most kept inputs in any group, and
    ``ragged`` says some group keeps fewer (its last slots are padding). A mask trained with
    ``--sparse-group G`` at sparsity ``S`` has exactly ``N = (1 - S) G`` in every group:
    ``N log2(G) / G`` bits a weight, half a bit at 1:2 and at 1:4.
    """
    import numpy as np

    mask = np.asarray(mask)
    mh, mw = mask.shape
    best, best_bits = (0, 0, False), mh * mw
    for g in GROUP_SIZES:
        if mw % g or g > mw:
            continue
        counts = mask.reshape(mh, mw // g, g).sum(axis=2)
        n = max(1, int(counts.max()))
        ragged = bool(counts.min() < n)
        bits = mh * (mw // g) * n * group_slot_bits(g, ragged)
        if bits < best_bits:
            best, best_bits = (g, n, ragged), bits
    return best


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
            "composite" if isinstance(node, CompositeDense | CompositeConv2d) else \
            "domain" if isinstance(node, DomainDense | DomainConv2d) else "binary"
        offset_bits = 0
        if scheme == "domain":
            offset_bits = max(2, int(abs(node.offset).max(initial=0)).bit_length() + 1)
        density, nnz, ragged, group = 1.0, 0, False, (0, 0, False)
        if scheme == "sparse":
            rows = planes[0].sum(axis=1)
            density, nnz = float(planes.mean()), max(1, int(rows.max()))
            ragged = bool(rows.min() < nnz)
            group = group_structure(planes[0])
        out.append(LayerShape(node.name, conv, mh, mw, pixels, bits, t_out.bits, buffer,
                              scheme, k, density, nnz, ragged, *group, offset_bits))
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


def layer_cost(layer: LayerShape, pe: int, simd: int, model: ResourceModel,
               layout: str | None = None) -> LayerCost:
    """Cycles and resources of ``layer`` at ``(pe, simd)``; legality is checked elsewhere.

    ``layout`` is a sparse layer's weight layout, ``"mask"`` (the default) or ``"index"``,
    or a composite layer's, ``"dense"`` (the default: parallel planes) or ``"serial"``.
    """
    if layout is None:
        layout = layouts(layer)[0]
    if layout not in layouts(layer):
        raise ValueError(f"layer {layer.name!r} ({layer.scheme}) has no layout {layout!r}")
    if layout == "index":
        return _index_cost(layer, pe, simd, model)
    if layout == "group":
        return _group_cost(layer, pe, simd, model)
    nf, sf = math.ceil(layer.mh / pe), math.ceil(layer.mw / simd)
    serial = layout == "serial"  # composite: one set of lanes, the K planes one a cycle
    passes = layer.planes if serial else 1
    constant = nf * sf * passes == 1
    terms = simd
    if layer.scheme == "sparse" and constant:  # constant zeros of the mask are pruned
        terms = max(1, math.ceil(layer.density * simd))
    shared = 0  # LUTs of the whole MVU, not per PE
    if layer.input_bits == 1 and layer.scheme == "sparse":
        xnor = 0 if constant else simd  # mask AND xnor(polarity) is one LUT a term
        compute = xnor + adder_tree_luts(terms, 1)
    elif layer.input_bits == 1:  # the XNORs fold into the first level's LUTs (an odd one stays)
        compute = (0 if constant else terms % 2) + adder_tree_luts(terms, 1)
    elif layer.scheme == "sparse":  # conditional negation of every kept input
        compute = terms * layer.input_bits + adder_tree_luts(terms, layer.input_bits + 1)
    else:  # 2 sum(w & x) - sum(x): gates, an unsigned tree, the subtraction; one shared sum(x)
        gates = 0 if constant else terms * layer.input_bits
        compute = gates + adder_tree_luts(terms, layer.input_bits) + layer.acc_bits
        shared = adder_tree_luts(simd, layer.input_bits)
    compute *= 1 if serial else layer.planes  # composite: K parallel XNOR-popcount lanes ...
    if layer.planes > 1:  # ... combined by constant shift-and-add (about one adder a plane)
        compute += layer.planes * layer.acc_bits
    if serial:  # ... or one lane's sum times the plane's constant: a K:1 mux of the products
        compute += mux_luts(layer.planes, layer.acc_bits)
    if layer.scheme == "domain":  # the input-sum tree, the offset multiply and the combine
        shared = adder_tree_luts(simd, layer.input_bits)
        sum_bits = (simd * ((1 << layer.input_bits) - 1)).bit_length()
        compute += 2 * layer.acc_bits + (layer.offset_bits * sum_bits if nf > 1
                                         else layer.acc_bits)
        if nf > 1:  # the offset ROM
            compute += layer.offset_bits * math.ceil(nf / model.lut_rom_depth)
    acc = layer.acc_bits if sf * passes > 1 else 0
    per_pe = _per_pe(layer, compute, nf, acc, model)
    kind, mem_luts, brams = _memory(pe * simd * layer.planes // passes, nf * sf * passes, model)
    buffer_bits = layer.buffer_inputs * layer.input_bits if (layer.conv or nf > 1) else 0
    buf_luts, buf_brams = _buffer(buffer_bits, model)
    return LayerCost(
        name=layer.name, pe=pe, simd=simd, mh=layer.mh, mw=layer.mw, nf=nf, sf=sf,
        pixels=layer.pixels, cycles=nf * sf * passes * layer.pixels,
        luts=pe * per_pe + shared + mem_luts + buf_luts,
        ffs=pe * (acc + 1 + (layer.acc_bits if serial else 0)),  # serial: the scaled sum
        brams=brams + buf_brams, weight_bits=layer.planes * layer.mh * layer.mw,
        weight_memory=kind,
        acc_bits=layer.acc_bits, buffer_bits=buffer_bits, layout=layout)


def _per_pe(layer: LayerShape, compute: int, nf: int, acc: int, model: ResourceModel) -> int:
    """LUTs of one PE: its terms and trees (``compute``), the accumulator (``acc``), the
    threshold comparator, and when ``NF > 1`` the threshold ROM and a sparse layer's polarity
    ROM (one bit per neuron and fold)."""
    if nf == 1:
        return compute + acc + layer.acc_bits
    rom_bits = layer.acc_bits + (1 if layer.scheme == "sparse" else 0)
    return compute + acc + layer.acc_bits + rom_bits * math.ceil(nf / model.lut_rom_depth)


def _index_cost(layer: LayerShape, pe: int, simd: int, model: ResourceModel) -> LayerCost:
    """The index layout of a sparse layer (see the module docstring)."""
    nf, sf = math.ceil(layer.mh / pe), math.ceil(layer.nnz / simd)
    constant = nf * sf == 1
    slot = index_slot_bits(layer, simd)
    bits = layer.input_bits
    # each term gathers one input of the two banks (constant positions: just the bank select)
    gather = mux_luts(2 if constant else 2 * layer.mw, bits)
    term = 1 if bits == 1 else bits  # valid & xnor(x, polarity) / conditional negation
    compute = simd * (gather + term) + adder_tree_luts(simd, 1 if bits == 1 else bits + 1)
    acc = layer.acc_bits if sf > 1 else 0
    per_pe = _per_pe(layer, compute, nf, acc, model)
    kind, mem_luts, brams = _memory(pe * simd * slot, nf * sf, model)
    vector_bits = 2 * layer.mw * bits  # the double-buffered input vector, in flip-flops
    window_bits = layer.buffer_inputs * bits if layer.conv else 0
    buf_luts, buf_brams = _buffer(window_bits, model)
    return LayerCost(
        name=layer.name, pe=pe, simd=simd, mh=layer.mh, mw=layer.mw, nf=nf, sf=sf,
        pixels=layer.pixels, cycles=nf * sf * layer.pixels,
        luts=pe * per_pe + mem_luts + buf_luts, ffs=pe * (acc + 1) + vector_bits,
        brams=brams + buf_brams, weight_bits=layer.mh * layer.nnz * slot, weight_memory=kind,
        acc_bits=layer.acc_bits, buffer_bits=window_bits + vector_bits, layout="index")


def _group_cost(layer: LayerShape, pe: int, simd: int, model: ResourceModel) -> LayerCost:
    """The group layout of a sparse layer (see the module docstring)."""
    g, n = layer.group, layer.group_kept
    nf, sf = math.ceil(layer.mh / pe), math.ceil(layer.mw / (g * simd))
    constant = nf * sf == 1
    slot = group_slot_bits(g, layer.group_ragged)
    bits = layer.input_bits
    terms = simd * n
    if constant:  # constant positions: every term is a wire (and a constant polarity)
        per_term = 0 if bits == 1 else bits
    elif bits == 1 and g == 2 and not layer.group_ragged:
        per_term = 1  # xnor(mux(sel, x0, x1), polarity): four inputs, one LUT4
    else:  # a G:1 multiplexer, then valid & xnor(x, polarity) / conditional negation
        per_term = mux_luts(g, bits) + (1 if bits == 1 else bits)
    compute = terms * per_term + adder_tree_luts(terms, 1 if bits == 1 else bits + 1)
    acc = layer.acc_bits if sf > 1 else 0
    per_pe = _per_pe(layer, compute, nf, acc, model)
    kind, mem_luts, brams = _memory(pe * terms * slot, nf * sf, model)
    buffer_bits = layer.buffer_inputs * bits if (layer.conv or nf > 1) else 0
    buf_luts, buf_brams = _buffer(buffer_bits, model)
    return LayerCost(
        name=layer.name, pe=pe, simd=simd, mh=layer.mh, mw=layer.mw, nf=nf, sf=sf,
        pixels=layer.pixels, cycles=nf * sf * layer.pixels,
        luts=pe * per_pe + mem_luts + buf_luts, ffs=pe * (acc + 1),
        brams=brams + buf_brams, weight_bits=layer.mh * (layer.mw // g) * n * slot,
        weight_memory=kind, acc_bits=layer.acc_bits, buffer_bits=buffer_bits, layout="group")


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
