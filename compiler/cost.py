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
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from .ir import (
    Graph,
    Layer,
    MaxPool2d,
    ScoreAffine,
    Threshold,
    mvu_matrix,
)

__all__ = [
    "DEVICES",
    "FEATURES",
    "LayerCost",
    "LayerShape",
    "MemoryMap",
    "ResourceModel",
    "StageCost",
    "GROUP_SIZES",
    "adder_tree_luts",
    "block_ram_pes",
    "board_top_cost",
    "component_cost",
    "group_slot_bits",
    "group_structure",
    "index_bits",
    "layer_cost",
    "memory_map",
    "mux_luts",
    "mvu_layers",
    "other_stages",
    "lb",
    "stream_costs",
    "stream_features",
    "top_features",
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
    # Yosys' memory mapping (memory_libmap): a block costs bram_cost, a distributed-RAM
    # cell (16 x 4, RAMs only) 4, a bit of soft logic 1 (RAM) or 1/16 (ROM); cheapest wins
    bram_cost: int = 128
    lutram: bool = True


DEVICES = {
    "ecp5": ResourceModel(),
    # the iCE40's clock is limited by LUT depth and the score path before the block RAMs'
    # outputs; registers there would mostly take logic cells of their own
    "ice40": ResourceModel("ice40", 4096, ((2048, 2), (1024, 4), (512, 8), (256, 16)),
                           register_reads=False, bram_cost=64, lutram=False),
}

# The features a component's estimate is a linear function of (see the module docstring).
FEATURES = (
    "one",         # the component itself: control, handshakes, small counters
    "cnt",         # counter bits (increment, compare, wrap)
    "tree_logic",  # adder-tree LUTs on logic (operands of at most two bits)
    "tree_carry",  # adder bits on carry chains (trees, negations)
    "tree_shared", # LUTs of first tree levels the flattened synthesis shares between lanes
    "post",        # adder/comparator bits after the trees (subtract, accumulate, compare)
    "chains",      # carry chains (nextpnr adds cells at a chain's ends)
    "gates",       # per-term LUTs before the tree (multi-bit AND, sparse mask, OR of pools)
    "mux",         # 2:1 multiplexer bits (windows, skid buffers, converters)
    "gather",      # LUTs of the group layout's G:1 input multiplexers
    "gather_index",  # LUTs of the index layout's 2 MW:1 input multiplexers
    "gearbox",     # multiplexer inputs of a general width converter's landing switch
    "lutrom",      # LUT4s holding ROM bits (16 words a LUT)
    "rom_luts",    # LUT4s of the ROMs Yosys maps to logic (16 words a LUT, per different column)
    "rom_mux",     # the multiplexers joining those LUTs into deeper columns
    "ram_bits",    # RAM bits Yosys maps to flip-flops and multiplexers
    "lutram",      # distributed-RAM cells (ECP5 TRELLIS_DPR16X4)
    "lutram_mux",  # read multiplexer bits over distributed-RAM cells
    "bram_port",   # data bits of a written block RAM (Yosys' read-during-write bypass)
    "extra",       # priced in LUTs directly (domain offsets, serial plane multiplexer)
    "ff_pack",     # flip-flops driven by a LUT (pipeline, accumulators, output words)
    "ff_copy",     # flip-flops loaded from a wire or a memory (input words, weights, buffers)
    "ff_ctrl",     # control flip-flops (valid bits, counters, fold indices)
)


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
    slot_ranges: tuple[tuple[int, int], ...] = ()  # sparse: (lowest, highest) input of each
    # slot of the index layout (a row's t-th kept input) over the rows
    threshold_bits: int = 0  # bits of a threshold (sized to their range); 0: no thresholds
    window: tuple[int, ...] = ()  # conv: (h, w, c, kernel, stride, pad) of its input
    output: str = "threshold"  # "threshold" | "scores" | "dense" (popcounts into a dense layer)


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
    in_elems: int = 0  # elements per input word of the unit (a convolution's window feeds it)
    out_elems: int = 0  # elements per output word (PE)
    block_pes: int = 0  # PEs whose weights are forced into block RAM (:func:`block_ram_pes`)


@dataclass(frozen=True)
class StageCost:
    """A stage with a fixed rate (max pool, score/argmax unit) or a stream component
    between stages (skid buffer, FIFO, width converter: ``cycles`` 0)."""

    name: str
    kind: str
    cycles: int
    luts: int
    ffs: int
    brams: int
    buffer_bits: int


@dataclass(frozen=True)
class MemoryMap:
    """Where Yosys puts one memory: ``kind`` "logic" | "lutram" | "bram", and what it takes."""

    kind: str
    depth: int
    width: int
    rom: bool
    ports: int = 1
    brams: int = 0
    lutram: int = 0  # distributed-RAM cells


PAIR_MIN_PE = 4  # hw.pairs: a multi-bit first layer with this many PE lanes shares input pairs
CREDITS = 16  # hw.mvu: the output FIFO of a unit stalled by credits (fast fabrics)


def lb(n: int) -> int:
    """Bits of a counter over ``range(n)`` (0 for one value)."""
    return max(0, (n - 1).bit_length())


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


def _slot_ranges(mask, nnz: int) -> tuple[tuple[int, int], ...]:
    """``(lowest, highest)`` column of every row's ``t``-th kept input, ``t < nnz``."""
    import numpy as np

    lo, hi = [mask.shape[1]] * nnz, [0] * nnz
    for row in np.asarray(mask):
        for t, pos in enumerate(np.flatnonzero(row)):
            lo[t], hi[t] = min(lo[t], int(pos)), max(hi[t], int(pos))
    return tuple((a, max(a, b)) for a, b in zip(lo, hi, strict=True))


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


def _signed_bits(value: int) -> int:
    return (value if value >= 0 else -value - 1).bit_length() + 1


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
        offset_bits = 0
        if scheme == "domain":
            offset_bits = max(2, int(abs(node.offset).max(initial=0)).bit_length() + 1)
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
            thr_bits = max(2, _signed_bits(int(t.min(initial=0))),
                           _signed_bits(int(t.max(initial=0))))
        elif len(users) == 1 and isinstance(users[0], Layer) and not users[0].conv:
            output = "dense"
        out.append(LayerShape(node.name, conv, mh, mw, pixels, bits, t_out.bits, buffer,
                              scheme, k, density, nnz, ragged, *group, offset_bits, slots,
                              thr_bits, window, output))
    return out


# ----------------------------------------------------------------------------- memories


def _blocks(depth: int, width: int, model: ResourceModel) -> tuple[float, int]:
    """``(cost, blocks)`` of the cheapest block-RAM geometry: blocks and read multiplexers."""
    return min((model.bram_cost * math.ceil(depth / d) * math.ceil(width / w) +
                0.5 * (math.ceil(depth / d) - 1) * width, math.ceil(depth / d) * math.ceil(width / w))
               for d, w in model.bram_shapes)


def memory_map(depth: int, width: int, model: ResourceModel, rom: bool,
               ports: int = 1, block: bool = False) -> MemoryMap:
    """Where Yosys' ``memory_libmap`` puts a ``depth`` x ``width`` memory read by ``ports``
    synchronous ports, by its own costs: soft logic (a RAM bit 1, a ROM bit 1/16),
    distributed RAM (ECP5, written memories only: 4 a 16 x 4 cell) or block RAM
    (``bram_cost`` a block), each mapping with half a point per read-multiplexer bit and
    the emulation of what the cell lacks (a read port of its own: 2; a written memory's
    read-during-write behaviour: 12 more), repeated for every read port; a mapping must
    cost less than the logic. ``block``: forced to block RAM (``rom_style = "block"``)."""
    bits = depth * width
    emu = (2 if rom else 14) * ports
    bram_cost, blocks = _blocks(depth, width, model)
    bram = MemoryMap("bram", depth, width, rom, ports, brams=blocks * ports)
    if block:
        return bram
    best: float = int(bits / 16 if rom else bits)  # Yosys compares with the truncated cost
    choice = MemoryMap("logic", depth, width, rom, ports)
    options = [(bram_cost * ports + emu, bram)]
    if model.lutram and not rom:
        cells = math.ceil(depth / 16) * math.ceil(width / 4)
        options.append(((4 * cells + 0.5 * (math.ceil(depth / 16) - 1) * width) * ports + emu,
                        MemoryMap("lutram", depth, width, rom, ports, lutram=cells * ports)))
    for cost, mm in options:
        if cost < best:
            best, choice = cost, mm
    return choice


def _memory(f: Counter, mm: MemoryMap, sync: bool = True) -> int:
    """Add a memory's features to ``f``; return its block RAMs."""
    if mm.kind == "logic" and mm.rom:
        columns = _distinct(mm.width, mm.depth)
        f["rom_luts"] += columns * math.ceil(mm.depth / 16)
        f["rom_mux"] += columns * (math.ceil(mm.depth / 16) - 1)
        if sync:
            f["ff_pack"] += columns * mm.ports
    elif mm.kind == "logic":
        f["ram_bits"] += mm.depth * mm.width
        f["ff_copy"] += mm.depth * mm.width
        if sync:
            f["ff_pack"] += mm.width * mm.ports
    elif mm.kind == "lutram":
        f["lutram"] += mm.lutram
        f["lutram_mux"] += (math.ceil(mm.depth / 16) - 1) * mm.width * mm.ports
        if sync:
            f["ff_pack"] += mm.width * mm.ports
    elif not mm.rom:
        f["bram_port"] += mm.width * mm.ports
    return mm.brams


def _weight_kind(depth: int, model: ResourceModel) -> str:
    if depth == 1:
        return "constant"
    return "lutrom" if depth <= model.lutrom_max_depth else "bram"


# ----------------------------------------------------------------------------- datapath


def _tree(f: Counter, lanes: int, n: int, width: int, signed: bool = False,
          levels: int = 2) -> int:
    """Add ``lanes`` pairwise adder trees over ``n`` terms of ``width`` bits (registered every
    ``levels`` levels and at the root, the control word beside them); return the sum's width."""
    count, w, level = n, width, 0
    while count > 1:
        pairs = count // 2
        if signed or w > 2:  # a carry chain per adder
            f["tree_carry"] += lanes * pairs * (w + 1)
            f["chains"] += lanes * pairs
        else:  # one LUT4 per sum bit
            f["tree_logic"] += lanes * pairs * (w + 1)
        count, w, level = count - pairs, w + 1, level + 1
        if level % levels == 0 or count == 1:
            f["ff_pack"] += lanes * count * w
            f["ff_ctrl"] += 3
    return w


def _counter(f: Counter, n: int) -> None:
    f["cnt"] += lb(n)
    f["ff_ctrl"] += lb(n)


def _mvu_back(f: Counter, layer: LayerShape, pe: int, nf: int, sf_passes: int,
              model: ResourceModel, sub: bool, combine: int) -> int:
    """Per-PE arithmetic after the trees, accumulators, thresholds and the output word;
    return its block RAMs."""
    a = layer.acc_bits
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
    _counter(f, nf)  # the fold being accumulated
    f["ff_ctrl"] += 1  # done
    brams = 0
    if layer.output == "threshold":
        f["post"] += pe * a  # acc >= threshold
        f["chains"] += pe
        f["ff_pack"] += pe
        f["ff_ctrl"] += 1
        if nf > 1:  # read synchronously: a block RAM when deeper than a LUT ROM (hw.mvu)
            brams += _memory(f, memory_map(nf, pe * layer.threshold_bits, model, rom=True,
                                           block=nf > model.lutrom_max_depth))
    return brams


def _mvu(layer: LayerShape, pe: int, simd: int, layout: str, model: ResourceModel,
         block_pes: int = 0) -> tuple[Counter, int, str, int, int]:
    """Features, block RAMs, weight memory kind, buffer bits and input elements of an MVU;
    the weights of its first ``block_pes`` PEs in a block RAM of their own."""
    f: Counter = Counter(one=1)
    b = layer.input_bits
    bipolar = b == 1
    nf = math.ceil(layer.mh / pe)
    serial = layout == "serial"
    passes = layer.planes if serial else 1
    planes = 1 if serial else layer.planes
    if layout == "index":
        sf = math.ceil(layer.nnz / simd)
        slot = index_slot_bits(layer, simd)
        width, in_elems = pe * simd * slot, simd
    elif layout == "group":
        sf = math.ceil(layer.mw / (layer.group * simd))
        slot = group_slot_bits(layer.group, layer.group_ragged)
        width, in_elems = pe * simd * layer.group_kept * slot, simd * layer.group
    else:
        sf = math.ceil(layer.mw / simd)
        width, in_elems = pe * simd * planes, simd
    depth = nf * sf * passes
    kind = _weight_kind(depth, model)
    constant = kind == "constant"
    brams = 0
    for n in (sf, nf, depth) + ((passes,) if serial else ()):
        _counter(f, n)
    f["ff_ctrl"] += 3 + lb(nf) + (lb(passes) if serial else 0)  # ctl1
    buffer_bits = 0

    # the input: a register, a two-bank buffer (index: registers), or serial's one bank
    x_bits = in_elems * b
    if layout == "index":
        beats = _vector_beats(layer.mw, nf * sf)
        in_elems = beats
        f["ff_copy"] += 2 * layer.mw * b
        f["ff_ctrl"] += 4
        _counter(f, layer.mw // beats)
        buffer_bits = 2 * layer.mw * b
    elif serial:
        f["ff_copy"] += x_bits
        if nf > 1:
            brams += _memory(f, memory_map(sf, x_bits, model, rom=False))
            f["mux"] += x_bits
            f["ff_ctrl"] += 1
            buffer_bits = sf * x_bits
    elif nf == 1:
        f["ff_copy"] += x_bits
    else:
        brams += _memory(f, memory_map(2 << lb(sf), x_bits, model, rom=False))
        _counter(f, sf)
        f["ff_ctrl"] += 4
        buffer_bits = (2 << lb(sf)) * x_bits

    # the weights; a LUT ROM's columns are functions of the address, and Yosys merges the
    # equal ones (a 4-word ROM has 16 different columns at most)
    distinct = width
    if kind == "lutrom":
        distinct = _distinct(width, depth)
        f["lutrom"] += distinct * math.ceil(depth / model.lut_rom_depth)
        f["ff_pack"] += distinct
    elif kind == "bram":
        forced = block_pes * simd * planes
        if forced:
            brams += _memory(f, memory_map(depth, forced, model, rom=True, block=True))
        if width > forced:
            brams += _memory(f, memory_map(depth, width - forced, model, rom=True))
    if layout not in ("index", "serial") and model.register_reads and \
            (kind == "bram" or nf > 1):
        f["ff_copy"] += (0 if constant else distinct) + x_bits
        f["ff_ctrl"] += 3 + lb(nf)

    # the terms and their trees
    sparse = layer.scheme == "sparse"
    paired = (not bipolar and layer.scheme == "binary" and layout == "dense" and
              layer.output == "threshold" and pe >= PAIR_MIN_PE and simd >= 2)
    lanes = pe * planes
    if layout == "index":
        if constant:  # fixed positions: the bank select alone
            f["gather_index"] += lanes * simd * mux_luts(2, b)
        else:  # each slot's input from both banks, among the columns it can hold
            f["gather_index"] += lanes * sum(mux_luts(2 * n, b)
                                             for n in _gather_inputs(layer, simd))
        f["gates"] += lanes * simd * (1 if bipolar else b + 1)
        _tree(f, lanes, simd, 1 if bipolar else b + 1, signed=not bipolar)
    elif layout == "group":
        terms = simd * layer.group_kept
        if not constant:
            if bipolar and layer.group == 2 and not layer.group_ragged:
                f["gather"] += lanes * terms
            else:
                f["gather"] += lanes * terms * mux_luts(layer.group, b)
                f["gates"] += lanes * terms * (1 if bipolar else b + 1)
        _tree(f, lanes, terms, 1 if bipolar else b + 1, signed=not bipolar)
    else:
        terms = max(1, math.ceil(layer.density * simd)) if sparse and constant else simd
        if sparse and bipolar:
            f["gates"] += 0 if constant else lanes * terms  # mask & xnor(x, polarity)
            _tree(f, lanes, terms, 1)
        elif sparse:  # +-x or 0 of every kept input
            f["gates"] += lanes * terms * (b + 1)
            f["tree_carry"] += lanes * terms * (b + 1)
            f["chains"] += lanes * terms
            _tree(f, lanes, terms, b + 1, signed=True)
        elif bipolar or serial:
            if serial and not bipolar:  # +-x terms: a negation each
                f["gates"] += lanes * terms * (b + 1)
                f["tree_carry"] += lanes * terms * (b + 1)
                f["chains"] += lanes * terms
                _tree(f, lanes, terms, b + 1, signed=True)
            else:
                _tree(f, lanes, terms, 1)  # the XNORs fold into the first level
                if constant and not serial:  # lanes with equal weight pairs share level 1
                    f["tree_shared"] += (terms // 2) * (2 * lanes - min(lanes, 2) -
                                                        min(lanes, 4))
        elif paired:  # S = a + b and D = a - b per input pair, shared by the lanes (hw.pairs)
            full, pairs = simd // 2, (simd + 1) // 2
            f["tree_carry"] += 2 * full * (b + 1)
            f["chains"] += 2 * full
            f["ff_pack"] += 2 * pairs * (b + 1)
            f["ff_copy"] += distinct  # the weights beside them
            f["ff_ctrl"] += 6
            f["gates"] += lanes * pairs * (b + 2)  # S, ~S, D or ~D: a LUT4 a bit, registered
            f["ff_pack"] += lanes * pairs * (b + 2)
            _tree(f, lanes, pairs, b + 2, signed=True)
        else:  # w & x, and one lane summing the input word
            f["gates"] += 0 if constant else lanes * terms * b
            _tree(f, lanes, terms, b)
            if constant:  # x & w of constant w: lanes with equal weight pairs share an adder
                f["tree_shared"] += (terms // 2) * (lanes - min(lanes, 4)) * (b + 1)
            _tree(f, 1, simd, b)
        if layer.scheme == "domain":
            _tree(f, 1, simd, b)  # the input-sum lane
        if sparse and nf > 1:  # the polarity ROM, read combinationally
            f["lutrom"] += pe * math.ceil(nf / model.lut_rom_depth)
    if serial:  # the plane's constant product, selected and registered
        f["extra"] += pe * (mux_luts(layer.planes, layer.acc_bits) + layer.acc_bits)
        f["ff_pack"] += pe * layer.acc_bits
        f["ff_ctrl"] += 3 + lb(nf) + lb(passes)
    if layer.scheme == "domain":
        a = layer.acc_bits
        sum_bits = (simd * ((1 << b) - 1)).bit_length()
        f["extra"] += pe * (2 * a + (layer.offset_bits * sum_bits if nf > 1 else a))
        if nf > 1:
            f["lutrom"] += pe * layer.offset_bits * math.ceil(nf / model.lut_rom_depth)
    shared = not bipolar and not sparse and not serial and layout == "dense" and not paired
    brams += _mvu_back(f, layer, pe, nf, sf * passes, model, sub=shared,
                       combine=planes if layer.scheme == "composite" and not serial else 1)
    if model.register_reads and layout in ("dense", "mask"):  # stalls by credits (hw.mvu)
        out_bits = pe if layer.output == "threshold" else pe * layer.acc_bits
        fifo, fifo_brams = _fifo(out_bits, CREDITS, model)
        f.update(fifo)
        brams += fifo_brams
        _counter(f, CREDITS + 1)
        if layer.output == "threshold" and nf > 1:  # the thresholds read ahead, registered
            f["ff_copy"] += pe * layer.threshold_bits
    return f, brams, kind, buffer_bits, in_elems


def _distinct(width: int, depth: int) -> int:
    """Expected different columns among ``width`` random ones of a ``depth``-word ROM."""
    if depth >= 20:
        return width
    n = 2.0 ** depth
    return max(1, min(width, round(n * (1 - math.exp(-width / n)))))


def _vector_beats(mw: int, cycles: int) -> int:
    """Elements per input word of an index-layout unit (``hw.index_mvu.vector_beats``)."""
    return next(b for b in range(1, mw + 1) if mw % b == 0 and mw // b <= cycles)


def _window_lanes(kernel: int, c: int, simd: int) -> int:
    """Window columns per sliding-window word (``hw.plan``): the fewest giving ``simd``."""
    for lanes in range(1, kernel + 1):
        if kernel % lanes == 0 and lanes * kernel * c >= simd:
            return lanes
    return kernel


def _line_buffer_rows(h: int, kernel: int, stride: int, pad: int) -> int:
    oh = (h + 2 * pad - kernel) // stride + 1
    tail = h - max(0, (oh - 1) * stride - pad)
    return max(1, min(h, max(kernel + stride, tail)))


def _window(h: int, w: int, c: int, bits: int, kernel: int, stride: int, pad: int,
            lanes: int, model: ResourceModel) -> tuple[Counter, int, int]:
    """Features, block RAMs and buffer bits of a sliding-window unit (``hw.swu``)."""
    f: Counter = Counter(one=1)
    rows = _line_buffer_rows(h, kernel, stride, pad)
    pix = c * bits
    brams = 0
    for _ in range(rows):  # one memory per row slot, a read port per window column
        brams += _memory(f, memory_map(w, pix, model, rom=False, ports=lanes))
    word = lanes * kernel * pix
    f["mux"] += lanes * kernel * pix * max(1, math.ceil(rows / 2))  # row select and padding
    f["ff_pack"] += word
    for n in (w, h + 1, w + 1, h + 1, rows, rows, kernel // lanes):
        _counter(f, n)
    f["ff_ctrl"] += kernel + lanes + 1 + lb(rows) * kernel
    return f, brams, rows * w * pix


# ----------------------------------------------------------------------------- estimates


def _coefficients(family: str, kind: str) -> dict[str, dict[str, float]]:
    from .calibration import COEFFICIENTS, PRIOR

    fitted = COEFFICIENTS.get(family, {}).get(kind)
    return fitted if fitted is not None else PRIOR[family][kind]


def component_cost(family: str, kind: str, features: Counter) -> tuple[int, int]:
    """``(luts, ffs)`` of one component from its features (:data:`FEATURES`)."""
    coef = _coefficients(family, kind)
    luts = sum(coef["luts"].get(k, 0.0) * v for k, v in features.items())
    ffs = sum(coef["ffs"].get(k, 0.0) * v for k, v in features.items())
    return max(0, round(luts)), max(0, round(ffs))


def mvu_features(layer: LayerShape, pe: int, simd: int, model: ResourceModel,
                 layout: str | None = None, block_pes: int = 0) -> dict[str, Counter]:
    """The features of a layer's components at a folding: ``{"mvu": ..., "swu": ...}``."""
    layout = layout or layouts(layer)[0]
    f, _, _, _, in_elems = _mvu(layer, pe, simd, layout, model, block_pes)
    out = {"mvu": f}
    if layer.conv:
        h, w, c, k, s, p = layer.window
        lanes = _conv_lanes(layer, pe, simd, layout, in_elems)
        out["swu"] = _window(h, w, c, layer.input_bits, k, s, p, lanes, model)[0]
    return out


def _conv_lanes(layer: LayerShape, pe: int, simd: int, layout: str, in_elems: int) -> int:
    h, w, c, k, s, p = layer.window
    if layout == "index":
        nf = math.ceil(layer.mh / pe)
        sf = math.ceil(layer.nnz / simd)
        return next(n for n in range(1, k + 1) if k % n == 0 and k // n <= nf * sf)
    return _window_lanes(k, c, in_elems)


def block_ram_pes(layer: LayerShape, pe: int, simd: int, layout: str,
                  model: ResourceModel) -> bool:
    """Whether the weights of some of the layer's PEs may be forced into block RAM: a
    binary or sparse-mask unit whose weight memory is read synchronously (deeper than a
    LUT ROM), so that Yosys would otherwise choose for it (:func:`memory_map`)."""
    if layout not in ("dense", "mask") or layer.planes != 1:
        return False
    depth = math.ceil(layer.mh / pe) * math.ceil(layer.mw / simd)
    return _weight_kind(depth, model) == "bram"


def layer_cost(layer: LayerShape, pe: int, simd: int, model: ResourceModel,
               layout: str | None = None, block_pes: int = 0) -> LayerCost:
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
    f, brams, kind, buffer_bits, in_elems = _mvu(layer, pe, simd, layout, model, block_pes)
    luts, ffs = component_cost(model.name, "mvu", f)
    if layer.conv:
        h, w, c, k, s, p = layer.window
        lanes = _conv_lanes(layer, pe, simd, layout, in_elems)
        fw, bw, window_bits = _window(h, w, c, layer.input_bits, k, s, p, lanes, model)
        wl, wf = component_cost(model.name, "swu", fw)
        luts, ffs, brams = luts + wl, ffs + wf, brams + bw
        buffer_bits += window_bits
    nf = math.ceil(layer.mh / pe)
    if layout == "index":
        sf = math.ceil(layer.nnz / simd)
        weight_bits = layer.mh * layer.nnz * index_slot_bits(layer, simd)
    elif layout == "group":
        sf = math.ceil(layer.mw / (layer.group * simd))
        weight_bits = layer.mh * (layer.mw // layer.group) * layer.group_kept * \
            group_slot_bits(layer.group, layer.group_ragged)
    else:
        sf = math.ceil(layer.mw / simd)
        weight_bits = layer.planes * layer.mh * layer.mw
    passes = layer.planes if layout == "serial" else 1
    return LayerCost(
        name=layer.name, pe=pe, simd=simd, mh=layer.mh, mw=layer.mw, nf=nf, sf=sf,
        pixels=layer.pixels, cycles=nf * sf * passes * layer.pixels, luts=luts, ffs=ffs,
        brams=brams, weight_bits=weight_bits, weight_memory=kind, acc_bits=layer.acc_bits,
        buffer_bits=buffer_bits, layout=layout, in_elems=in_elems, out_elems=pe,
        block_pes=block_pes)


# ----------------------------------------------------------------------------- other stages


def _score_widths(scale, bias, acc_bits: int, acc_signed: bool,
                  score_bits: int) -> tuple[int, int, int]:
    """Operand, product and sum bits of the score unit (``hw.score.score_widths``)."""
    lo, hi = (-(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1) if acc_signed else \
        (0, (1 << acc_bits) - 1)

    def fit(a: int, z: int) -> int:
        if a >= 0:
            return max(1, z.bit_length())
        return max(z.bit_length(), (-a - 1).bit_length()) + 1

    scale, bias = [int(v) for v in scale], [int(v) for v in bias]
    shift = min(((v & -v).bit_length() - 1 for v in scale if v), default=0)
    op = [v >> shift for v in scale]
    ends = [v * a for v in op for a in (lo, hi)]
    sums = [(v << shift) * a + c for v, c in zip(op, bias, strict=True) for a in (lo, hi)]
    sum_bits = min(score_bits, fit(min(sums + [-1]), max(sums)))
    prod = min(fit(min(ends + [0]), max(ends)), max(1, sum_bits - shift))
    return fit(min(op + [0]), max(op)), prod, sum_bits


def _score(graph: Graph, node: ScoreAffine) -> Counter:
    t_in, t_out = graph.types[node.input], graph.types[node.name]
    classes = t_in.shape[0]
    op, prod, sb = _score_widths(node.scale, node.bias, t_in.bits, t_in.signed, t_out.bits)
    f: Counter = Counter(one=1)
    f["post"] += 3 * sb  # the bias add and the two lead compares
    f["chains"] += 3
    f["lutrom"] += (op + sb) * math.ceil(classes / 16)  # the scale and bias constants
    f["mux"] += sb + 2 * lb(classes)
    f["ff_copy"] += t_in.bits + op + prod  # the multiplier's registers
    f["ff_pack"] += 3 * sb + 2 * lb(classes)
    for _ in range(4):
        _counter(f, classes)
    f["ff_ctrl"] += 5
    return f


def other_features(graph: Graph, model: ResourceModel) -> list[tuple[str, str, Counter, int]]:
    """``(node, kind, features, block RAMs)`` of the max pools and the score/argmax unit."""
    out = []
    for node in graph.nodes:
        if isinstance(node, MaxPool2d):
            h, w, c = graph.types[node.input].shape
            f, brams, _ = _window(h, w, c, 1, node.kernel, node.stride, 0, node.kernel, model)
            f["gates"] += math.ceil(c * (node.kernel ** 2 - 1) / 3)  # the window's OR
            out.append((node.name, "pool", f, brams))
        elif isinstance(node, ScoreAffine):
            out.append((node.name, "score", _score(graph, node), 0))
    return out


def other_stages(graph: Graph, model: ResourceModel) -> list[StageCost]:
    """Max pools (one input pixel, all channels, per cycle) and the score/argmax unit."""
    out = []
    for name, kind, f, brams in other_features(graph, model):
        node = graph.node(name)
        luts, ffs = component_cost(model.name, kind, f)
        if isinstance(node, MaxPool2d):
            h, w, c = graph.types[node.input].shape
            out.append(StageCost(name, node.kind, h * w, luts, ffs, brams,
                                 (node.kernel + node.stride) * w * c))
        elif isinstance(node, ScoreAffine):
            out.append(StageCost(name, "ScoreAffine+ArgMax", graph.types[node.input].shape[0],
                                 luts, ffs, 0, 0))
    return out


# ----------------------------------------------------------------------------- streams


def _skid(width: int) -> Counter:
    return Counter(one=1, mux=width, ff_copy=width, ff_pack=width, ff_ctrl=2)


def _fifo(width: int, depth: int, model: ResourceModel) -> tuple[Counter, int]:
    """``amaranth.lib.fifo.SyncFIFOBuffered``: a ``depth - 1`` word memory and an output word."""
    f: Counter = Counter(one=1)
    brams = _memory(f, memory_map(max(1, depth - 1), width, model, rom=False))
    f["ff_pack"] += width
    for _ in range(3):
        _counter(f, depth + 1)
    f["ff_ctrl"] += 2
    return f, brams


def _converter(a: int, b: int, bits: int) -> Counter:
    """``hw.streams.WidthConverter`` from ``a``- to ``b``-element words."""
    f: Counter = Counter(one=1)
    if b % a == 0:  # shift register gathering b / a words
        f["ff_copy"] += b * bits
        _counter(f, b // a + 1)
    elif a % b == 0:  # shift register handing out a / b words
        f["ff_pack"] += a * bits
        f["mux"] += a * bits
        _counter(f, a // b + 1)
    else:  # a buffer of a + b elements, a word landing at the fill level
        cap = a + b
        f["gearbox"] += bits * sum(min(e, b) - max(0, e - a + 1) + 2 for e in range(cap))
        f["ff_pack"] += cap * bits
        _counter(f, cap + 1)
    return f


def _stream_stages(graph: Graph, costs: dict[str, LayerCost]) -> list[tuple]:
    """``(name, in_elems, in_bits, out_elems, fifo_depth)`` of the stages in stream order, as
    ``hw.plan.build_plan`` lays them out."""
    stages = []
    for node in graph.nodes:
        if isinstance(node, Layer):
            c = costs[node.name]
            t_in = graph.types[node.input]
            bits = 1 if t_in.bipolar else t_in.bits
            unit_in = c.in_elems  # the unit's own word; a convolution's window feeds it
            if node.conv:
                k, ch = node.kernel, t_in.shape[2]
                if c.layout == "index":
                    lanes = next(n for n in range(1, k + 1) if k % n == 0 and k // n <= c.nf * c.sf)
                    unit_in = lanes * k * ch
                else:
                    lanes = _window_lanes(k, ch, unit_in)
                stages.append((f"{node.name}_swu", ch, bits, lanes * k * ch, 2))
            depth = 2
            if c.layout == "serial":
                depth = max(2, c.mw // unit_in + 2)
            stages.append((node.name, unit_in, bits, c.pe, depth))
        elif isinstance(node, MaxPool2d):
            ch = graph.types[node.input].shape[2]
            stages.append((node.name, ch, 1, ch, 2))
        elif isinstance(node, ScoreAffine):
            stages.append((node.name, 1, graph.types[node.input].bits, 1, 2))
    return stages


def stream_costs(graph: Graph, costs: dict[str, LayerCost],
                 model: ResourceModel) -> tuple[StageCost, ...]:
    """The skid buffers, FIFOs and width converters between the stages (``hw.top``)."""
    out = []
    stages = _stream_stages(graph, costs)
    for prev, cur in zip(stages, stages[1:], strict=False):
        name, in_elems, bits, _, depth = cur
        parts = []
        if depth <= 2:  # a skid buffer at the producer's output
            parts.append(("skid", _skid(prev[3] * bits), 0))
        if prev[3] != in_elems:
            parts.append(("conv", _converter(prev[3], in_elems, bits), 0))
        if depth > 2:
            f, brams = _fifo(in_elems * bits, depth, model)
            parts.append(("fifo", f, brams))
        for kind, f, brams in parts:
            luts, ffs = component_cost(model.name, kind, f)
            out.append(StageCost(f"{name}_{kind}", kind, 0, luts, ffs, brams, 0))
    return tuple(out)


def stream_features(graph: Graph, costs: dict[str, LayerCost],
                    model: ResourceModel) -> list[tuple[str, str, Counter]]:
    """``(stage name, kind, features)`` of every stream component (for the calibration)."""
    out = []
    stages = _stream_stages(graph, costs)
    for prev, cur in zip(stages, stages[1:], strict=False):
        name, in_elems, bits, _, depth = cur
        if depth <= 2:
            out.append((name, "skid", _skid(prev[3] * bits)))
        if prev[3] != in_elems:
            out.append((name, "conv", _converter(prev[3], in_elems, bits)))
        if depth > 2:
            out.append((name, "fifo", _fifo(in_elems * bits, depth, model)[0]))
    return out


def top_features(graph: Graph, costs: dict[str, LayerCost], model: ResourceModel
                 ) -> tuple[Counter, int]:
    """The board top's features: the UART bridge's byte FIFO of one frame, the
    deserializer to the core's input word, the result serializer, the UART and the PLL's
    reset (``boards.tops.UARTBridge``)."""
    stages = _stream_stages(graph, costs)
    in_elems, in_bits = stages[0][1], stages[0][2]
    t_in = graph.types[graph.inputs[0]]
    in_bytes = math.ceil(in_elems * in_bits / 8)
    frame_bytes = in_bytes * (math.prod(t_in.shape) // in_elems)
    score = next(n for n in graph.nodes if isinstance(n, ScoreAffine))
    classes = graph.types[score.input].shape[0]
    out_bytes = math.ceil(graph.types[score.name].bits / 8) + math.ceil(max(1, lb(classes)) / 8)
    f, brams = _fifo(8, frame_bytes + 1, model)
    f["ff_copy"] += 8 * in_bytes
    f["mux"] += 8 * out_bytes
    f["ff_pack"] += 8 * out_bytes
    return f, brams


def board_top_cost(graph: Graph, costs: dict[str, LayerCost], model: ResourceModel
                   ) -> StageCost:
    """The board top around the core (UART bridge, PLL reset), as one estimate."""
    f, brams = top_features(graph, costs, model)
    luts, ffs = component_cost(model.name, "top", f)
    return StageCost("top", "top", 0, luts, ffs, brams, 0)

