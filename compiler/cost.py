"""The analytic cost model of the streaming accelerator (docs/architecture.md, section 5).

Each binary layer is a matrix-vector unit (MVU) with ``MH`` output neurons
(rows) and ``MW`` inputs per neuron (``k*k*C_in`` for a convolution). ``PE``
neurons work in parallel, each taking ``SIMD`` inputs per cycle, so one output
vector takes ``NF * SF`` cycles (``NF = ceil(MH / PE)``, ``SF = ceil(MW / SIMD)``)
and a layer ``NF * SF * output pixels`` cycles per frame. Stages run
concurrently: a frame every ``max`` over stages cycles.

Resources are estimated per hardware component, calibrated against real
builds (BENCHMARKS.md, "The cost model against real builds"):

* every component the generator builds is priced: the MVUs (each layout of each
  weight encoding), a convolution's sliding window, max pools, the skid
  buffers, FIFOs and width converters between stages, the score/argmax unit,
  and (:func:`board_top_cost`) the board top around the core;
* a component's *features* are counted from its structure as the generator
  builds it (``hw/``): adder-tree bits on logic and on carry chains, carry
  chains, pipeline and accumulator registers (those a LUT drives and those
  copied from a wire or a memory), counters, multiplexers, and its memories,
  each placed where Yosys will put it (:func:`memory_map`: logic, distributed
  RAM or block RAM, by Yosys' own cost rule);
* ``luts`` are the device's logic cells as nextpnr counts them (iCE40
  ``ICESTORM_LC``, a LUT4 with its flip-flop and carry; ECP5 ``TRELLIS_COMB``,
  a LUT4 or half a carry cell or a distributed-RAM cell's share) and ``ffs``
  the flip-flops: per family and component kind a linear function of the
  features, its coefficients fitted by ``benchmarks/cost_fit.py`` on the
  calibration builds and recorded in :mod:`.calibration`;
* block RAMs are counted, not fitted: each memory Yosys maps to block RAM
  takes the fewest blocks of one aspect ratio (``ResourceModel.bram_shapes``),
  once per read port.

Weights live in constants when the whole matrix is one word, in LUT ROM up to
``lutrom_max_depth`` words, deeper behind a synchronous read port (block RAM
unless Yosys finds logic cheaper). Sparse layers have the ``"mask"`` layout
(the binary unit with a mask and a polarity ROM; constant zeros are no terms),
the ``"index"`` layout (kept positions of ``ceil(log2 MW)`` bits gathered from
a register double buffer through ``2 MW``-to-1 multiplexers; ``SIMD`` divides
``K``, the most non-zeros of a row) and, for N:G masks, the ``"group"`` layout
(``N`` positions of ``log2 G`` bits per group of ``G``; ``SIMD`` groups a
cycle). A row of density ``d`` holds ``MW * H(d)`` bits of information, so at
50% sparsity the mask is already the smallest form; positions are smaller only
below a density of ``1 / ceil(log2 MW)``. Composite layers (``K`` binary
planes) are ``"dense"`` (``K`` parallel lanes) or ``"serial"`` (one set of
lanes, ``K`` cycles a word position). Domain layers (``{a, b}`` weights) add
an input-sum tree and a per-neuron offset multiply. The folding prices every
layout and takes the cheapest.

The model is split by component family: :mod:`.cost_base` (devices, shapes, memories,
trees, FIFOs), :mod:`.cost_mvu` (the matrix-vector units), :mod:`.cost_stages` (windows,
pools, the score unit, streams, the board top); memory layouts and widths are
:mod:`.memlayout`'s, shared with the hardware.
"""

from __future__ import annotations

import math
from collections import Counter

from .cost_base import (
    CREDITS,
    DEVICES,
    FEATURES,
    PAIR_MIN_PE,
    LayerCost,
    LayerShape,
    MemoryMap,
    ResourceModel,
    StageCost,
    adder_tree_luts,
    component_cost,
    lb,
    memory_map,
    mux_luts,
)
from .cost_mvu import MvuGeometry, mvu_unit
from .cost_stages import (
    board_top_cost,
    other_features,
    other_stages,
    stream_costs,
    stream_features,
    top_features,
    window_features,
)
from .ir import Graph, Layer, Threshold, mvu_matrix
from .memlayout import (
    group_slot_bits,
    index_bits,
    index_window_lanes,
    offset_bits,
    threshold_bits,
    weight_memory_kind,
    window_lanes,
)

__all__ = [
    "CREDITS",
    "DEVICES",
    "FEATURES",
    "GROUP_SIZES",
    "PAIR_MIN_PE",
    "LayerCost",
    "LayerShape",
    "MemoryMap",
    "ResourceModel",
    "StageCost",
    "adder_tree_luts",
    "block_ram_pes",
    "board_top_cost",
    "columns",
    "component_cost",
    "group_slot_bits",
    "group_structure",
    "index_bits",
    "layer_cost",
    "layouts",
    "lb",
    "memory_map",
    "mux_luts",
    "mvu_features",
    "mvu_layers",
    "other_features",
    "other_stages",
    "stream_costs",
    "stream_features",
    "top_features",
    "two_frames",
]


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


def _slot_ranges(mask, nnz: int) -> tuple[tuple[int, int], ...]:
    """``(lowest, highest)`` column of every row's ``t``-th kept input, ``t < nnz``."""
    import numpy as np

    lo, hi = [mask.shape[1]] * nnz, [0] * nnz
    for row in np.asarray(mask):
        for t, pos in enumerate(np.flatnonzero(row)):
            lo[t], hi[t] = min(lo[t], int(pos)), max(hi[t], int(pos))
    return tuple((a, max(a, b)) for a, b in zip(lo, hi, strict=True))


def mvu_layers(graph: Graph) -> list[LayerShape]:
    """The graph's binary layers in execution order, as the cost model sees them."""
    out = []
    for node in graph.nodes:
        if not isinstance(node, Layer):
            continue
        t_in, t_out = graph.types[node.input], graph.types[node.name]
        planes = mvu_matrix(node)
        k, mh, mw = planes.shape
        bits = 1 if t_in.bipolar else t_in.bits
        conv = node.conv
        window: tuple[int, ...] = ()
        if conv:
            pixels = t_out.shape[0] * t_out.shape[1]
            buffer = node.kernel * (t_in.shape[1] + 2 * node.pad) * t_in.shape[2]
            window = (*t_in.shape, node.kernel, node.stride, node.pad)
        else:
            pixels, buffer = 1, mw
        scheme = node.encoding.scheme
        offsets = offset_bits(node.offset) if scheme == "domain" else 0
        density, nnz, ragged, group = 1.0, 0, False, (0, 0, False)
        slots: tuple[tuple[int, int], ...] = ()
        if scheme == "sparse":
            rows = planes[0].sum(axis=1)
            density, nnz = float(planes.mean()), max(1, int(rows.max()))
            ragged = bool(rows.min() < nnz)
            group = group_structure(planes[0])
            slots = _slot_ranges(planes[0], nnz)
        users = graph.consumers(node.name)
        output, thr_bits = "scores", 0
        if len(users) == 1 and isinstance(users[0], Threshold):
            t = users[0].thresholds
            output = "threshold"
            thr_bits = threshold_bits(t)
        elif len(users) == 1 and isinstance(users[0], Layer) and not users[0].conv:
            output = "dense"
        out.append(LayerShape(node.name, conv, mh, mw, pixels, bits, t_out.bits, buffer,
                              scheme, k, density, nnz, ragged, *group, offsets, slots,
                              thr_bits, window, output))
    return out


def mvu_features(layer: LayerShape, pe: int, simd: int, model: ResourceModel,
                 layout: str | None = None, block_pes: int = 0,
                 frames: int = 1) -> dict[str, Counter]:
    """The features of a layer's components at a folding: ``{"mvu": ..., "swu": ...}``."""
    layout = layout or layouts(layer)[0]
    f, _, _, _, in_elems = mvu_unit(layer, pe, simd, layout, model, block_pes, frames)
    out = {"mvu": f}
    if layer.conv:
        h, w, c, k, s, p = layer.window
        lanes = _conv_lanes(layer, pe, simd, layout, in_elems)
        out["swu"] = window_features(h, w, c, layer.input_bits, k, s, p, lanes, model)[0]
    return out


def _conv_lanes(layer: LayerShape, pe: int, simd: int, layout: str, in_elems: int) -> int:
    h, w, c, k, s, p = layer.window
    if layout == "index":
        return index_window_lanes(k, math.ceil(layer.mh / pe) * math.ceil(layer.nnz / simd))
    return window_lanes(k, c, in_elems)


def block_ram_pes(layer: LayerShape, pe: int, simd: int, layout: str,
                  model: ResourceModel) -> bool:
    """Whether the weights of some of the layer's PEs may be forced into block RAM: a
    binary or sparse-mask unit whose weight memory is read synchronously (deeper than a
    LUT ROM), so that Yosys would otherwise choose for it (:func:`memory_map`)."""
    if layout not in ("dense", "mask") or layer.planes != 1:
        return False
    depth = math.ceil(layer.mh / pe) * math.ceil(layer.mw / simd)
    return weight_memory_kind(depth, model.lutrom_max_depth) == "bram"


def two_frames(layer: LayerShape, pe: int, simd: int, layout: str) -> bool:
    """Whether the layer may compute two frames a pass at ``(pe, simd)`` (hw.frames): a
    dense layer (the dense or mask layout) with two neuron folds or more (the second frame
    streams in during the pass) and two input folds or more (both frames' results stream
    out), and an even pass, so that a frame takes whole cycles."""
    nf, sf = math.ceil(layer.mh / pe), math.ceil(layer.mw / simd)
    return (not layer.conv and layout in ("dense", "mask") and nf >= 2 and sf >= 2
            and nf * sf % 2 == 0)


def layer_cost(layer: LayerShape, pe: int, simd: int, model: ResourceModel,
               layout: str | None = None, block_pes: int = 0, frames: int = 1) -> LayerCost:
    """Cycles and resources of ``layer`` at ``(pe, simd)`` (its MVU, and a convolution's
    sliding window); legality is checked elsewhere.

    ``layout`` is a sparse layer's weight layout, ``"mask"`` (the default), ``"index"`` or
    ``"group"``, or a composite layer's, ``"dense"`` (the default: parallel planes) or
    ``"serial"``.
    """
    if layout is None:
        layout = layouts(layer)[0]
    if layout not in layouts(layer):
        raise ValueError(f"layer {layer.name!r} ({layer.scheme}) has no layout {layout!r}")
    if block_pes and not (0 <= block_pes <= pe and block_ram_pes(layer, pe, simd, layout, model)):
        raise ValueError(f"layer {layer.name!r}: block_pes={block_pes} needs 0..{pe} PEs of a "
                         f"binary or mask unit whose weights are deeper than a LUT ROM")
    if frames not in (1, 2) or (frames == 2 and not two_frames(layer, pe, simd, layout)):
        raise ValueError(f"layer {layer.name!r}: frames={frames} needs a dense layer with an "
                         f"even NF * SF, NF >= 2 and SF >= 2")
    f, brams, kind, buffer_bits, in_elems = mvu_unit(layer, pe, simd, layout, model, block_pes,
                                                     frames)
    luts, ffs = component_cost(model.name, "mvu", f)
    if layer.conv:
        h, w, c, k, s, p = layer.window
        lanes = _conv_lanes(layer, pe, simd, layout, in_elems)
        fw, bw, window_bits = window_features(h, w, c, layer.input_bits, k, s, p, lanes, model)
        wl, wf = component_cost(model.name, "swu", fw)
        luts, ffs, brams = luts + wl, ffs + wf, brams + bw
        buffer_bits += window_bits
    g = MvuGeometry.of(layer, pe, simd, layout, model)
    return LayerCost(
        name=layer.name, pe=pe, simd=simd, mh=layer.mh, mw=layer.mw, nf=g.nf, sf=g.sf,
        pixels=layer.pixels, cycles=g.nf * g.sf * g.passes * layer.pixels // frames, luts=luts,
        ffs=ffs,
        brams=brams, weight_bits=g.bits, weight_memory=kind, acc_bits=layer.acc_bits,
        buffer_bits=buffer_bits, layout=layout, in_elems=in_elems, out_elems=pe,
        block_pes=block_pes, frames=frames)
