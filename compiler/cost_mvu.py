"""The features of one matrix-vector unit at a folding, counted as ``hw/`` builds it.

:func:`mvu_unit` counts, in this order, the unit's counters, its input (a register, a
two-bank buffer, the index layout's register banks or the serial unit's one bank), its
weight memory (:func:`~.memlayout.weight_geometry`), its terms and adder trees by layout
and weight encoding, and its back end (accumulators, thresholds, the credit FIFO).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from .cost_base import (
    CREDITS,
    PAIR_MIN_PE,
    LayerShape,
    ResourceModel,
    add_counter,
    add_memory,
    add_tree,
    distinct_columns,
    fifo_features,
    lb,
    memory_map,
    mux_luts,
)
from .memlayout import (
    group_slot_bits,
    index_slot_bits,
    rom_in_block_ram,
    vector_beats,
    weight_geometry,
    weight_memory_kind,
)

__all__ = ["MvuGeometry", "mvu_unit"]


@dataclass(frozen=True)
class MvuGeometry:
    """An MVU's folds and weight memory at ``(pe, simd)`` in ``layout``."""

    pe: int
    simd: int
    layout: str
    nf: int
    sf: int
    passes: int  # cycles per word position: the serial unit's K, else 1
    planes: int  # weight planes side by side in a word (parallel lanes)
    depth: int
    width: int
    in_elems: int  # the unit's input word (the index layout's own: see mvu_unit)
    kind: str  # "constant" | "lutrom" | "bram"
    bits: int  # the whole memory's content: every row's slots (every plane)

    @classmethod
    def of(cls, layer: LayerShape, pe: int, simd: int, layout: str,
           model: ResourceModel) -> MvuGeometry:
        serial = layout == "serial"
        planes = 1 if serial else layer.planes
        if layout == "index":
            cols, slot, kept, in_elems = layer.nnz, index_slot_bits(layer.mw, layer.ragged), 1, simd
        elif layout == "group":
            cols, in_elems = layer.mw // layer.group, simd * layer.group
            slot, kept = group_slot_bits(layer.group, layer.group_ragged), layer.group_kept
        else:
            cols, slot, kept, in_elems = layer.mw, 1, 1, simd
        nf, sf, depth, width = weight_geometry(layout, layer.mh, cols, pe, simd, layer.planes,
                                               slot, kept)
        return cls(pe, simd, layout, nf, sf, layer.planes if serial else 1, planes, depth,
                   width, in_elems, weight_memory_kind(depth, model.lutrom_max_depth),
                   layer.mh * cols * layer.planes * slot * kept)

    @property
    def serial(self) -> bool:
        return self.layout == "serial"

    @property
    def constant(self) -> bool:
        return self.kind == "constant"


def _gather_inputs(layer: LayerShape, simd: int) -> list[int]:
    """Per slot lane of the index layout, how many inputs its multiplexer selects among:
    the slots ``t = s, s + simd, ...`` store positions whose bits that never change are
    constants Yosys prunes the multiplexer by (an N:G mask's slot stays in its group)."""
    if not layer.slot_ranges:
        return [layer.mw] * simd
    out = []
    for s in range(simd):
        spans = layer.slot_ranges[s::simd]
        varying = 0
        for lo, hi in spans:
            varying |= (1 << (lo ^ hi).bit_length()) - 1 if lo != hi else 0
            varying |= lo ^ spans[0][0]
        out.append(min(layer.mw, 1 << bin(varying).count("1")))
    return out


def _input(f: Counter, layer: LayerShape, g: MvuGeometry, model: ResourceModel,
           frames: int = 1) -> tuple[int, int, int]:
    """The input: a register, a two-bank buffer (index: registers; two frames: one per
    frame), or serial's one bank. Returns ``(block RAMs, buffer bits, input elements)``."""
    b, nf, sf = layer.input_bits, g.nf, g.sf
    x_bits = g.in_elems * b
    brams, buffer_bits, in_elems = 0, 0, g.in_elems
    if g.layout == "index":
        beats = vector_beats(layer.mw, nf * sf)
        in_elems = beats
        f["ff_copy"] += 2 * layer.mw * b
        f["ff_ctrl"] += 4
        add_counter(f, layer.mw // beats)
        buffer_bits = 2 * layer.mw * b
    elif g.serial:
        f["ff_copy"] += x_bits
        if nf > 1:
            brams += add_memory(f, memory_map(sf, x_bits, model, rom=False))
            f["mux"] += x_bits
            f["ff_ctrl"] += 1
            buffer_bits = sf * x_bits
    elif nf == 1:
        f["ff_copy"] += x_bits
    else:
        for _ in range(frames):
            brams += add_memory(f, memory_map(2 << lb(sf), x_bits, model, rom=False))
        add_counter(f, sf)
        f["ff_ctrl"] += 4
        buffer_bits = frames * (2 << lb(sf)) * x_bits
        if frames == 2:  # the slot written, the banks' tags, the lone timer (hw.frames)
            f["ff_ctrl"] += 8
            add_counter(f, nf * sf + 1)
    return brams, buffer_bits, in_elems


def _weights(f: Counter, layer: LayerShape, g: MvuGeometry, model: ResourceModel,
             block_pes: int, frames: int = 1) -> tuple[int, int]:
    """The weights; a LUT ROM's columns are functions of the address, and Yosys merges the
    equal ones (a 4-word ROM has 16 different columns at most). Returns ``(block RAMs,
    distinct columns)``."""
    brams, distinct = 0, g.width
    if g.kind == "lutrom":
        distinct = distinct_columns(g.width, g.depth)
        f["lutrom"] += distinct * math.ceil(g.depth / model.lut_rom_depth)
        f["ff_pack"] += distinct
    elif g.kind == "bram":
        forced = block_pes * g.simd * g.planes
        if forced:
            brams += add_memory(f, memory_map(g.depth, forced, model, rom=True, block=True))
        if g.width > forced:
            brams += add_memory(f, memory_map(g.depth, g.width - forced, model, rom=True))
    if g.layout not in ("index", "serial") and model.register_reads and \
            (g.kind == "bram" or g.nf > 1):
        f["ff_copy"] += (0 if g.constant else distinct) + frames * g.in_elems * layer.input_bits
        f["ff_ctrl"] += 3 + lb(g.nf)
    return brams, distinct


def _index_terms(f: Counter, layer: LayerShape, g: MvuGeometry) -> None:
    b, lanes, simd = layer.input_bits, g.pe * g.planes, g.simd
    bipolar = b == 1
    if g.constant:  # fixed positions: the bank select alone
        f["gather_index"] += lanes * simd * mux_luts(2, b)
    else:  # each slot's input from both banks, among the columns it can hold
        f["gather_index"] += lanes * sum(mux_luts(2 * n, b) for n in _gather_inputs(layer, simd))
    f["gates"] += lanes * simd * (1 if bipolar else b + 1)
    add_tree(f, lanes, simd, 1 if bipolar else b + 1, signed=not bipolar)


def _group_terms(f: Counter, layer: LayerShape, g: MvuGeometry) -> None:
    b, lanes = layer.input_bits, g.pe * g.planes
    bipolar = b == 1
    terms = g.simd * layer.group_kept
    if not g.constant:
        if bipolar and layer.group == 2 and not layer.group_ragged:
            f["gather"] += lanes * terms
        else:
            f["gather"] += lanes * terms * mux_luts(layer.group, b)
            f["gates"] += lanes * terms * (1 if bipolar else b + 1)
    add_tree(f, lanes, terms, 1 if bipolar else b + 1, signed=not bipolar)


def _signed_terms(f: Counter, lanes: int, terms: int, b: int) -> None:
    """``+-x`` (or 0) terms of ``b``-bit inputs: a negation each, signed trees."""
    f["gates"] += lanes * terms * (b + 1)
    f["tree_carry"] += lanes * terms * (b + 1)
    f["chains"] += lanes * terms
    add_tree(f, lanes, terms, b + 1, signed=True)


def _paired_terms(f: Counter, lanes: int, simd: int, b: int, distinct: int) -> None:
    """S = a + b and D = a - b per input pair, shared by the lanes (hw.pairs)."""
    full, pairs = simd // 2, (simd + 1) // 2
    f["tree_carry"] += 2 * full * (b + 1)
    f["chains"] += 2 * full
    f["ff_pack"] += 2 * pairs * (b + 1)
    f["ff_copy"] += distinct  # the weights beside them
    f["ff_ctrl"] += 6
    f["gates"] += lanes * pairs * (b + 2)  # S, ~S, D or ~D: a LUT4 a bit, registered
    f["ff_pack"] += lanes * pairs * (b + 2)
    add_tree(f, lanes, pairs, b + 2, signed=True)


def _dense_terms(f: Counter, layer: LayerShape, g: MvuGeometry, model: ResourceModel,
                 paired: bool, distinct: int) -> None:
    """The binary, mask, composite and domain layouts' terms and trees."""
    b, lanes, simd, constant, serial = layer.input_bits, g.pe * g.planes, g.simd, g.constant, \
        g.serial
    bipolar, sparse = b == 1, layer.scheme == "sparse"
    terms = max(1, math.ceil(layer.density * simd)) if sparse and constant else simd
    if sparse and bipolar:
        f["gates"] += 0 if constant else lanes * terms  # mask & xnor(x, polarity)
        add_tree(f, lanes, terms, 1)
    elif sparse or (serial and not bipolar):  # +-x or 0 of every kept input
        _signed_terms(f, lanes, terms, b)
    elif bipolar or serial:
        add_tree(f, lanes, terms, 1)  # the XNORs fold into the first level
        if constant and not serial:  # lanes with equal weight pairs share level 1
            f["tree_shared"] += (terms // 2) * (2 * lanes - min(lanes, 2) - min(lanes, 4))
    elif paired:
        _paired_terms(f, lanes, simd, b, distinct)
    else:  # w & x, and one lane summing the input word
        f["gates"] += 0 if constant else lanes * terms * b
        add_tree(f, lanes, terms, b)
        if constant:  # x & w of constant w: lanes with equal weight pairs share an adder
            f["tree_shared"] += (terms // 2) * (lanes - min(lanes, 4)) * (b + 1)
        add_tree(f, 1, simd, b)
    if layer.scheme == "domain":
        add_tree(f, 1, simd, b)  # the input-sum lane
    if sparse and g.nf > 1:  # the polarity ROM, read combinationally
        f["lutrom"] += g.pe * math.ceil(g.nf / model.lut_rom_depth)


def _extras(f: Counter, layer: LayerShape, g: MvuGeometry, model: ResourceModel) -> None:
    """The serial unit's plane products and a domain layer's offset multiply-add."""
    pe, nf = g.pe, g.nf
    if g.serial:  # the plane's constant product, selected and registered
        f["extra"] += pe * (mux_luts(layer.planes, layer.acc_bits) + layer.acc_bits)
        f["ff_pack"] += pe * layer.acc_bits
        f["ff_ctrl"] += 3 + lb(nf) + lb(g.passes)
    if layer.scheme == "domain":
        a, b = layer.acc_bits, layer.input_bits
        sum_bits = (g.simd * ((1 << b) - 1)).bit_length()
        f["extra"] += pe * (2 * a + (layer.offset_bits * sum_bits if nf > 1 else a))
        if nf > 1:
            f["lutrom"] += pe * layer.offset_bits * math.ceil(nf / model.lut_rom_depth)


def _back(f: Counter, layer: LayerShape, pe: int, nf: int, sf_passes: int,
          model: ResourceModel, sub: bool, combine: int, frames: int = 1) -> int:
    """Per-PE arithmetic after the trees, accumulators, thresholds and the output word (of
    each frame); return its block RAMs."""
    a, rom_pe, pe = layer.acc_bits, pe, pe * frames
    if sub:  # 2 sum(w & x) - sum(x)
        f["post"] += pe * a
        f["chains"] += pe
    if combine > 1:  # composite planes: constant shift-and-add
        f["post"] += pe * combine * a
        f["chains"] += pe * combine
    if sf_passes > 1:  # the accumulator's adder
        f["post"] += pe * a
        f["chains"] += pe
        f["ff_pack"] += pe * a
    else:  # the sum, held
        f["ff_copy"] += pe * a
    add_counter(f, nf)  # the fold being accumulated
    f["ff_ctrl"] += 1  # done
    brams = 0
    if layer.output == "threshold":
        f["post"] += pe * a  # acc >= threshold
        f["chains"] += pe
        f["ff_pack"] += pe
        f["ff_ctrl"] += 1
        if nf > 1:  # read synchronously: a block RAM when deeper than a LUT ROM (hw.mvu)
            brams += add_memory(f, memory_map(nf, rom_pe * layer.threshold_bits, model, rom=True,
                                              block=rom_in_block_ram(nf, model.lutrom_max_depth)))
    return brams


def _out_bits(layer: LayerShape, pe: int) -> int:
    return pe if layer.output == "threshold" else pe * layer.acc_bits


def _unpair(f: Counter, layer: LayerShape, g: MvuGeometry, model: ResourceModel) -> int:
    """A two-frame unit's output (hw.frames.Unpair): two banks of NF words of both frames;
    its block RAMs."""
    w = _out_bits(layer, g.pe)
    brams = add_memory(f, memory_map(2 * g.nf, 2 * w, model, rom=False))
    for _ in range(2):
        add_counter(f, g.nf)
    f["ff_ctrl"] += 11
    f["mux"] += w  # the frame's half of the word
    return brams


def _credits(f: Counter, layer: LayerShape, g: MvuGeometry, model: ResourceModel,
             frames: int = 1) -> int:
    """A fast fabric's unit stalls by credits (hw.mvu): its output FIFO; its block RAMs."""
    out_bits = frames * _out_bits(layer, g.pe) + 2 * (frames > 1)  # (lone, first)
    fifo, brams = fifo_features(out_bits, CREDITS, model)
    f.update(fifo)
    add_counter(f, CREDITS + 1)
    if layer.output == "threshold" and g.nf > 1:  # the thresholds read ahead, registered
        f["ff_copy"] += g.pe * layer.threshold_bits
    return brams


def mvu_unit(layer: LayerShape, pe: int, simd: int, layout: str, model: ResourceModel,
             block_pes: int = 0, frames: int = 1) -> tuple[Counter, int, str, int, int]:
    """Features, block RAMs, weight memory kind, buffer bits and input elements of an MVU;
    the weights of its first ``block_pes`` PEs in a block RAM of their own; ``frames``
    computed in one pass (hw.frames: each frame's terms, trees and accumulators)."""
    f: Counter = Counter(one=1)
    g = MvuGeometry.of(layer, pe, simd, layout, model)
    bipolar = layer.input_bits == 1
    for n in (g.sf, g.nf, g.depth) + ((g.passes,) if g.serial else ()):
        add_counter(f, n)
    f["ff_ctrl"] += 3 + lb(g.nf) + (lb(g.passes) if g.serial else 0) + 2 * (frames > 1)  # ctl1
    brams, buffer_bits, in_elems = _input(f, layer, g, model, frames)
    weight_brams, distinct = _weights(f, layer, g, model, block_pes, frames)
    brams += weight_brams
    f.update(_terms(layer, g, model, distinct, frames))
    sparse = layer.scheme == "sparse"
    paired = _paired(layer, pe, simd, layout)
    shared = not bipolar and not sparse and not g.serial and layout == "dense" and not paired
    brams += _back(f, layer, pe, g.nf, g.sf * g.passes, model, sub=shared,
                   combine=g.planes if layer.scheme == "composite" and not g.serial else 1,
                   frames=frames)
    if model.register_reads and layout in ("dense", "mask"):  # stalls by credits (hw.mvu)
        brams += _credits(f, layer, g, model, frames)
    if frames > 1:
        brams += _unpair(f, layer, g, model)
    return f, brams, g.kind, buffer_bits, in_elems


def _paired(layer: LayerShape, pe: int, simd: int, layout: str) -> bool:
    """Whether a multi-bit first layer takes its terms from shared input pairs (hw.pairs)."""
    return (layer.input_bits > 1 and layer.scheme == "binary" and layout == "dense" and
            layer.output == "threshold" and pe >= PAIR_MIN_PE and simd >= 2)


def _terms(layer: LayerShape, g: MvuGeometry, model: ResourceModel, distinct: int,
           frames: int) -> Counter:
    """Every frame's terms and adder trees, and a domain or serial unit's extras."""
    f: Counter = Counter()
    if g.layout == "index":
        _index_terms(f, layer, g)
    elif g.layout == "group":
        _group_terms(f, layer, g)
    else:
        _dense_terms(f, layer, g, model, _paired(layer, g.pe, g.simd, g.layout), distinct)
    _extras(f, layer, g, model)
    return Counter({k: v * frames for k, v in f.items()})
