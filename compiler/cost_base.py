"""The cost model's vocabulary: device constants, shapes and costs, and the features of the
parts every component is built from (memories, adder trees, counters, FIFOs).

:mod:`.cost` is the model's front (layer costs, the graph's layers); :mod:`.cost_mvu`
counts a matrix-vector unit's features, :mod:`.cost_stages` those of the other stages.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

__all__ = ["CREDITS", "DEVICES", "FEATURES", "PAIR_MIN_PE", "LayerCost", "LayerShape",
           "MemoryMap", "ResourceModel", "StageCost", "add_counter", "add_memory", "add_tree",
           "adder_tree_luts", "component_cost", "distinct_columns", "fifo_features", "lb",
           "memory_map", "mux_luts"]


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
    frames: int = 1  # frames computed in one pass, each weight word read once for them all


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


def add_memory(f: Counter, mm: MemoryMap, sync: bool = True) -> int:
    """Add a memory's features to ``f``; return its block RAMs."""
    if mm.kind == "logic" and mm.rom:
        columns = distinct_columns(mm.width, mm.depth)
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



def distinct_columns(width: int, depth: int) -> int:
    """Expected different columns among ``width`` random ones of a ``depth``-word ROM."""
    if depth >= 20:
        return width
    n = 2.0 ** depth
    return max(1, min(width, round(n * (1 - math.exp(-width / n)))))


# ----------------------------------------------------------------------------- datapath


def add_tree(f: Counter, lanes: int, n: int, width: int, signed: bool = False,
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


def add_counter(f: Counter, n: int) -> None:
    f["cnt"] += lb(n)
    f["ff_ctrl"] += lb(n)



def fifo_features(width: int, depth: int, model: ResourceModel) -> tuple[Counter, int]:
    """``amaranth.lib.fifo.SyncFIFOBuffered``: a ``depth - 1`` word memory and an output word."""
    f: Counter = Counter(one=1)
    brams = add_memory(f, memory_map(max(1, depth - 1), width, model, rom=False))
    f["ff_pack"] += width
    for _ in range(3):
        add_counter(f, depth + 1)
    f["ff_ctrl"] += 2
    return f, brams


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
