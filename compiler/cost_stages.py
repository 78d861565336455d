"""The features and costs of the stages around the MVUs: sliding windows, max pools, the
score/argmax unit, the stream components between stages and the board top (``hw/``)."""

from __future__ import annotations

import math
from collections import Counter

from .cost_base import (
    LayerCost,
    ResourceModel,
    StageCost,
    add_counter,
    add_memory,
    component_cost,
    fifo_features,
    lb,
    memory_map,
)
from .ir import Graph, Layer, MaxPool2d, Requantize, ScoreAffine, Threshold
from .memlayout import index_window_lanes, line_buffer_rows, window_lanes
from .residual import ResidualUnit, residual_units, stream_node

__all__ = ["board_top_cost", "join_multipliers", "other_features", "other_stages", "stream_costs",
           "stream_features", "top_features", "window_features"]


def window_features(h: int, w: int, c: int, bits: int, kernel: int, stride: int, pad: int,
            lanes: int, model: ResourceModel) -> tuple[Counter, int, int]:
    """Features, block RAMs and buffer bits of a sliding-window unit (``hw.swu``)."""
    f: Counter = Counter(one=1)
    rows = line_buffer_rows(h, kernel, stride, pad)
    pix = c * bits
    brams = 0
    for _ in range(rows):  # one memory per row slot, a read port per window column
        brams += add_memory(f, memory_map(w, pix, model, rom=False, ports=lanes))
    word = lanes * kernel * pix
    f["mux"] += lanes * kernel * pix * max(1, math.ceil(rows / 2))  # row select and padding
    f["ff_pack"] += word
    for n in (w, h + 1, w + 1, h + 1, rows, rows, kernel // lanes):
        add_counter(f, n)
    f["ff_ctrl"] += kernel + lanes + 1 + lb(rows) * kernel
    return f, brams, rows * w * pix


# ----------------------------------------------------------------------------- estimates


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
        add_counter(f, classes)
    f["ff_ctrl"] += 5
    return f


def _sign(c: int, bits: int) -> Counter:
    """``hw.residual.StreamThreshold``: a compare with a constant per channel."""
    return Counter(one=1, post=c * bits, chains=c, ff_pack=c, ff_ctrl=1)


def _unit_features(graph: Graph, unit: ResidualUnit, model: ResourceModel) -> tuple[Counter, int]:
    """The fork, sign, skip FIFO and (strided) average pool of a residual unit
    (``hw.residual.ResidualBlock``; its window and MVU are the layer's, its join a stream
    component of the folding's width)."""
    h, w, c = graph.types[unit.stream].shape
    bits = graph.types[unit.stream].bits
    f = _sign(c, bits)
    f["ff_ctrl"] += 4  # the fork's two taken flags and handshakes
    f["gates"] += 4
    fifo, brams = fifo_features(c * bits, unit.skip_depth, model)
    f.update(fifo)
    if unit.pool is not None:  # hw.residual.AvgPoolStream: a row of partial sums
        sb = bits + 2
        brams += add_memory(f, memory_map(w // 2, c * sb, model, rom=False))
        f["post"] += 2 * c * sb  # the sums across and down
        f["chains"] += 2 * c
        f["ff_pack"] += c * sb + c * bits
        for n in (w, h, 2, 2, w // 2):
            add_counter(f, n)
    return f, brams


def join_features(c: int, lanes: int, acc_bits: int, bits: int, skip: bool,
                  model: ResourceModel) -> Counter:
    """``hw.residual.RequantAdd`` of ``lanes`` lanes: a product (a DSP block where the fabric
    has them), the bias, the shift's saturation and the skip's add, two registered stages."""
    beats = c // lanes
    prod = acc_bits + 20
    f: Counter = Counter(one=1)
    f["post"] += lanes * (prod + 2 * bits + (2 * bits if skip else 0))
    f["chains"] += lanes * (3 if skip else 2)
    if model.name == "ice40":  # no multipliers to spare: an adder per multiplier bit
        f["tree_carry"] += lanes * acc_bits * 18
    if beats > 1:  # the beat's mult, bias and skip element
        f["mux"] += lanes * (40 + bits) * (beats - 1)
    f["ff_pack"] += lanes * (prod + 2 * bits)
    add_counter(f, beats)
    f["ff_ctrl"] += 3
    return f


def other_features(graph: Graph, model: ResourceModel) -> list[tuple[str, str, Counter, int]]:
    """``(node, kind, features, block RAMs)`` of the max pools, the score/argmax unit and the
    residual stream's fixed-rate parts (its units' forks, signs and skips; the stream's
    last sign)."""
    out = []
    units = {u.add.name: u for u in residual_units(graph).values()}
    for node in graph.nodes:
        if node.name in units:
            f, brams = _unit_features(graph, units[node.name], model)
            out.append((node.name, "stream", f, brams))
        elif isinstance(node, Threshold) and stream_node(graph, node.input) and \
                all(u.sign is not node for u in units.values()):
            t = graph.types[node.input]
            out.append((node.name, "stream", _sign(t.shape[-1], t.bits), 0))
        if isinstance(node, MaxPool2d):
            h, w, c = graph.types[node.input].shape
            f, brams, _ = window_features(h, w, c, 1, node.kernel, node.stride, 0, node.kernel, model)
            f["gates"] += math.ceil(c * (node.kernel ** 2 - 1) / 3)  # the window's OR
            out.append((node.name, "pool", f, brams))
        elif isinstance(node, ScoreAffine):
            out.append((node.name, "score", _score(graph, node), 0))
    return out


def other_stages(graph: Graph, model: ResourceModel) -> list[StageCost]:
    """Max pools (one input pixel, all channels, per cycle), the score/argmax unit and the
    residual stream's units and sign (a pixel a cycle)."""
    out = []
    units = {u.add.name: u for u in residual_units(graph).values()}
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
        else:  # the stream (a unit's input, or the stream's last sign): a pixel a cycle
            stream = units[name].stream if name in units else node.inputs[0]
            pixels = math.prod(graph.types[stream].shape[:-1])
            what = "residual unit" if name in units else "stream sign"
            out.append(StageCost(name, what, pixels, luts, ffs, brams, 0))
    return out


# ----------------------------------------------------------------------------- streams


def _skid(width: int) -> Counter:
    return Counter(one=1, mux=width, ff_copy=width, ff_pack=width, ff_ctrl=2)


def _converter(a: int, b: int, bits: int) -> Counter:
    """``hw.streams.WidthConverter`` from ``a``- to ``b``-element words."""
    f: Counter = Counter(one=1)
    if b % a == 0:  # shift register gathering b / a words
        f["ff_copy"] += b * bits
        add_counter(f, b // a + 1)
    elif a % b == 0:  # shift register handing out a / b words
        f["ff_pack"] += a * bits
        f["mux"] += a * bits
        add_counter(f, a // b + 1)
    else:  # a buffer of a + b elements, a word landing at the fill level
        cap = a + b
        f["gearbox"] += bits * sum(min(e, b) - max(0, e - a + 1) + 2 for e in range(cap))
        f["ff_pack"] += cap * bits
        add_counter(f, cap + 1)
    return f


def _stream_stages(graph: Graph, costs: dict[str, LayerCost]) -> list[tuple]:
    """``(name, in_elems, in_bits, out_elems, fifo_depth)`` of the stages in stream order, as
    ``hw.plan.build_plan`` lays them out."""
    stages: list[tuple] = []
    units = residual_units(graph)
    inner = {n.name for u in units.values() for n in (u.sign, u.requant, u.pool) if n}
    for node in graph.nodes:
        if node.name in inner:
            continue
        if isinstance(node, Layer) and node.name in units:
            t = graph.types[node.input]
            stages.append((units[node.name].add.name, t.shape[-1],
                           graph.types[units[node.name].stream].bits, costs[node.name].pe, 2))
        elif isinstance(node, Requantize):
            lanes = stages[-1][3]
            stages.append((node.name, lanes, graph.types[node.input].bits, lanes, 2))
        elif isinstance(node, Threshold) and stream_node(graph, node.input):
            t = graph.types[node.input]
            stages.append((node.name, t.shape[-1], t.bits, t.shape[-1], 2))
        elif isinstance(node, Layer):
            c = costs[node.name]
            t_in = graph.types[node.input]
            bits = 1 if t_in.bipolar else t_in.bits
            unit_in = c.in_elems  # the unit's own word; a convolution's window feeds it
            if node.conv:
                k, ch = node.kernel, t_in.shape[2]
                if c.layout == "index":
                    lanes = index_window_lanes(k, c.nf * c.sf)
                    unit_in = lanes * k * ch
                else:
                    lanes = window_lanes(k, ch, unit_in)
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


def _joins(graph: Graph, costs: dict[str, LayerCost], model: ResourceModel
           ) -> list[tuple[str, str, Counter]]:
    """The residual stream's joins (``Requantize`` and ``Add``, as wide as the MVU before
    them) and a unit's converter from its window to its MVU: what the folding sets."""
    out = []
    units = residual_units(graph)
    for node in graph.nodes:
        if not isinstance(node, Requantize):
            continue
        layer = graph.node(node.inputs[0])
        cost, t = costs[layer.name], graph.types[node.name]
        skip = layer.name in units
        out.append((node.name, "stream", join_features(t.shape[-1], cost.pe,
                                                       graph.types[layer.name].bits, t.bits,
                                                       skip, model)))
        if skip:
            k, ch = units[layer.name].window.kernel, graph.types[layer.inputs[0]].shape[-1]
            out.append((node.name, "conv", _converter(window_lanes(k, ch, cost.simd) * k * ch,
                                                      cost.simd, 1)))
    return out


def join_multipliers(graph: Graph, costs: dict[str, LayerCost]) -> int:
    """Multipliers of the residual stream's joins: one a lane (``hw.residual.RequantAdd``,
    ``PE`` lanes after each layer), which Yosys maps to DSP blocks."""
    return sum(costs[n.inputs[0]].pe for n in graph.nodes if isinstance(n, Requantize))


def stream_costs(graph: Graph, costs: dict[str, LayerCost],
                 model: ResourceModel) -> tuple[StageCost, ...]:
    """The skid buffers, FIFOs and width converters between the stages (``hw.top``), and the
    residual stream's joins."""
    out = []
    for name, kind, f in _joins(graph, costs, model):
        luts, ffs = component_cost(model.name, kind, f)
        out.append(StageCost(f"{name}_{'join' if kind == 'stream' else kind}", kind, 0, luts,
                             ffs, 0, 0))
    stages = _stream_stages(graph, costs)
    for prev, cur in zip(stages, stages[1:], strict=False):
        name, in_elems, bits, _, depth = cur
        parts = []
        if depth <= 2:  # a skid buffer at the producer's output
            parts.append(("skid", _skid(prev[3] * bits), 0))
        if prev[3] != in_elems:
            parts.append(("conv", _converter(prev[3], in_elems, bits), 0))
        if depth > 2:
            f, brams = fifo_features(in_elems * bits, depth, model)
            parts.append(("fifo", f, brams))
        for kind, f, brams in parts:
            luts, ffs = component_cost(model.name, kind, f)
            out.append(StageCost(f"{name}_{kind}", kind, 0, luts, ffs, brams, 0))
    return tuple(out)


def stream_features(graph: Graph, costs: dict[str, LayerCost],
                    model: ResourceModel) -> list[tuple[str, str, Counter]]:
    """``(stage name, kind, features)`` of every stream component (for the calibration)."""
    out = _joins(graph, costs, model)
    stages = _stream_stages(graph, costs)
    for prev, cur in zip(stages, stages[1:], strict=False):
        name, in_elems, bits, _, depth = cur
        if depth <= 2:
            out.append((name, "skid", _skid(prev[3] * bits)))
        if prev[3] != in_elems:
            out.append((name, "conv", _converter(prev[3], in_elems, bits)))
        if depth > 2:
            out.append((name, "fifo", fifo_features(in_elems * bits, depth, model)[0]))
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
    f, brams = fifo_features(8, frame_bytes + 1, model)
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

