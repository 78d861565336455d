"""Type inference and verification of IR graphs (docs/ir.md; ``verify`` runs after every pass).

Types are derived exactly: a popcount over ``fan_in`` inputs is
``0 .. fan_in``, a multi-bit accumulator ``-fan_in * max .. fan_in * max``,
scores the exact extremes of their integer affine; no width is guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import IRError
from .ir import (
    MAX_SCORE_BITS,
    NODE_KINDS,
    AffineArgMax,
    AffineSign,
    ArgMax,
    BinaryConv2d,
    BinaryDense,
    CompositeConv2d,
    CompositeDense,
    DomainConv2d,
    DomainDense,
    Graph,
    Input,
    MaxPool2d,
    Node,
    ScoreAffine,
    SparseConv2d,
    SparseDense,
    TensorType,
    Threshold,
    int_type,
    mvu_matrix,
)

__all__ = ["build_graph", "channel_ranges", "domain_range", "infer_types", "value_ranges",
           "verify"]


def _fail(graph: str, node: Node, msg: str) -> IRError:
    return IRError(f"graph {graph!r}: node {node.name!r} ({node.kind}): {msg}")


def _needs_int(g: str, node: Node, t: TensorType, what: str = "an integer accumulator") -> None:
    if t.bipolar:
        raise _fail(g, node, f"input {node.inputs[0]!r} is bipolar {t.describe()}, expected {what}")


def channel_ranges(node: Node, t: TensorType) -> list[tuple[int, int, int]]:
    """Per output channel of a binary layer: ``(lo, hi, mirror)`` of its accumulator.

    ``mirror`` is what negating the channel's weights maps an accumulator ``a``
    to, ``mirror - a``: the fan-in (times the plane scales' sum for a composite
    layer; the row's non-zeros for a sparse one) on bipolar input, 0 on multi-bit input.
    """
    planes = mvu_matrix(node)
    fan_in = planes.shape[2]
    top = 1 if t.bipolar else t.hi
    if isinstance(node, DomainDense | DomainConv2d):
        return [domain_range(fan_in, node.scale, int(m), top, t.bipolar) for m in node.offset]
    if isinstance(node, SparseDense | SparseConv2d):
        out = []
        for nnz, pol in zip(planes[0].sum(axis=1), node.polarity, strict=True):
            n = int(nnz)
            out.append((0, n, n) if t.bipolar else
                       ((0, n * top, 0) if pol else (-n * top, 0, 0)))
        return out
    scale = int(node.plane_scale.sum()) if isinstance(node, CompositeDense | CompositeConv2d) \
        else 1
    bound = fan_in * top * scale
    one = (0, bound, bound) if t.bipolar else (-bound, bound, 0)
    return [one] * planes.shape[1]


def domain_range(fan_in: int, scale: int, offset: int, top: int,
                 bipolar: bool) -> tuple[int, int, int]:
    """``(lo, hi, mirror)`` of a domain row's accumulator ``scale * A + offset * X``.

    One input position adds ``scale [x = w] + offset [x = 1]`` (bipolar: ``0`` or
    ``scale + offset`` where ``w = 1``, ``scale`` or ``offset`` where ``w = 0``) or
    ``(offset +- scale) x`` (multi-bit, ``x`` in ``0 .. top``). The range is the same
    for every row of a given offset: ``fan_in`` times an interval holding every
    position's values and 0, so every partial sum (a hardware accumulator between
    words) lies in it too, and negating the row (its bits and its offset) maps it
    onto ``mirror - range`` exactly (``mirror = scale * fan_in`` bipolar, 0 multi-bit).
    """
    if bipolar:
        return (fan_in * min(0, offset), fan_in * (scale + max(0, offset)), fan_in * scale)
    return (fan_in * top * min(0, offset - scale), fan_in * top * max(0, offset + scale), 0)


def _mvu(g: str, node: Node, t: TensorType, fan_in: int, c_out: int,
         out_shape: tuple[int, ...]) -> tuple[TensorType, tuple[int, int]]:
    """Type and range of a binary layer's accumulator."""
    if c_out < 1 or fan_in < 1:
        raise _fail(g, node, f"weight needs at least one output and one input, not "
                             f"{tuple(mvu_matrix(node).shape[1:])}")
    if not t.bipolar and t.signed:
        raise _fail(g, node, f"multi-bit input {node.inputs[0]!r} must be unsigned, not "
                             f"{t.describe()}")
    if isinstance(node, SparseDense | SparseConv2d) and node.polarity.shape != (c_out,):
        raise _fail(g, node, f"polarity has {len(node.polarity)} entries, expected {c_out} "
                             "(one per output)")
    if isinstance(node, CompositeDense | CompositeConv2d):
        k = len(node.plane_scale)
        if k != node.weight.shape[0] or k < 1 or (node.plane_scale < 1).any():
            raise _fail(g, node, f"plane_scale {node.plane_scale.tolist()} must hold one "
                                 f"positive integer per weight plane ({node.weight.shape[0]})")
    if isinstance(node, DomainDense | DomainConv2d):
        if node.offset.shape != (c_out,):
            raise _fail(g, node, f"offset has {len(node.offset)} entries, expected {c_out} "
                                 "(one per output)")
        if node.scale < 1:
            raise _fail(g, node, f"scale must be a positive integer, not {node.scale!r}")
    ranges = channel_ranges(node, t)
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return int_type(out_shape, lo, hi), (lo, hi)


def _channels(g: str, node: Node, t: TensorType, attrs: tuple[str, ...]) -> int:
    if not t.shape:
        raise _fail(g, node, f"input {node.inputs[0]!r} is a scalar; expected channels last")
    c = t.shape[-1]
    for attr in attrs:
        n = len(getattr(node, attr))
        if n != c:
            raise _fail(g, node, f"{attr} has {n} entries, expected {c} (the channels of "
                                 f"{node.inputs[0]!r} {t.describe()})")
    return c


Inferred = tuple[TensorType, tuple[int, int]]  # a tensor's type and exact value range


def _infer_input(g: str, node: Input, t: None, rng: None) -> Inferred:
    if not node.shape or any(s < 1 for s in node.shape):
        raise _fail(g, node, f"shape {list(node.shape)} must be non-empty and positive")
    if not 1 <= node.bits <= 32:
        raise _fail(g, node, f"bits must be 1..32, not {node.bits!r}")
    if node.signed and node.bits > 1:
        raise _fail(g, node, "multi-bit input must be unsigned (signed=false); "
                             "bits=1 with signed=true is a bipolar input")
    typ = TensorType(node.shape, node.bits, node.signed)
    return typ, (typ.lo, typ.hi)


def _infer_dense(g: str, node: BinaryDense, t: TensorType, rng) -> Inferred:
    fan_in = math.prod(t.shape)
    _, c_out, cols = mvu_matrix(node).shape
    if cols != fan_in:
        raise _fail(g, node, f"weight has {cols} columns, expected {fan_in} "
                             f"(the fan-in of {node.input!r} {t.describe()})")
    return _mvu(g, node, t, fan_in, c_out, (c_out,))


def _infer_conv(g: str, node: BinaryConv2d, t: TensorType, rng) -> Inferred:
    if len(t.shape) != 3:
        raise _fail(g, node, f"input {node.input!r} {t.describe()} must be a (H, W, C) map")
    h, w, c_in = t.shape
    weight = node.mask if isinstance(node, SparseConv2d) else node.weight
    c_out, kh, kw, wc = weight.shape[-4:]
    k, s, p = node.kernel, node.stride, node.pad
    if k < 1 or s < 1 or p < 0:
        raise _fail(g, node, f"kernel and stride must be >= 1 and pad >= 0, not {k}, {s}, {p}")
    if (kh, kw, wc) != (k, k, c_in):
        raise _fail(g, node, f"weight shape {tuple(weight.shape)} must be (C_out, "
                             f"{k}, {k}, {c_in})")
    legal = "-1 or +1" if t.bipolar else f"0..{t.hi}"
    ok = node.pad_value in (-1, 1) if t.bipolar else 0 <= node.pad_value <= t.hi
    if not ok:
        raise _fail(g, node, f"pad_value {node.pad_value!r} must be {legal} for "
                             f"{t.describe()} input")
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if oh < 1 or ow < 1:
        raise _fail(g, node, f"kernel {k} does not fit the padded {h}x{w} input")
    return _mvu(g, node, t, k * k * c_in, c_out, (oh, ow, c_out))


def _infer_threshold(g: str, node: Threshold, t: TensorType, rng: tuple[int, int]) -> Inferred:
    _needs_int(g, node, t)
    _channels(g, node, t, ("thresholds",))
    lo, hi = rng
    bad = (node.thresholds < lo) | (node.thresholds > hi + 1)
    if bad.any():
        c = int(np.argmax(bad))
        raise _fail(g, node, f"threshold {int(node.thresholds[c])} of channel {c} is outside "
                             f"{lo}..{hi + 1} (the accumulator's range plus one)")
    return TensorType(t.shape, 1, True), (-1, 1)


def _infer_pool(g: str, node: MaxPool2d, t: TensorType, rng) -> Inferred:
    if not t.bipolar or len(t.shape) != 3:
        raise _fail(g, node, f"input {node.input!r} {t.describe()} must be a bipolar "
                             "(H, W, C) map")
    if node.kernel < 1 or node.stride < 1:
        raise _fail(g, node, f"kernel and stride must be >= 1, not {node.kernel}, "
                             f"{node.stride}")
    h, w, c = t.shape
    oh, ow = (h - node.kernel) // node.stride + 1, (w - node.kernel) // node.stride + 1
    if oh < 1 or ow < 1:
        raise _fail(g, node, f"kernel {node.kernel} does not fit the {h}x{w} input")
    return TensorType((oh, ow, c), 1, True), (-1, 1)


def _infer_sign(g: str, node: AffineSign, t: TensorType, rng) -> Inferred:
    _needs_int(g, node, t)
    _channels(g, node, t, ("slope", "offset"))
    return TensorType(t.shape, 1, True), (-1, 1)


def _vector(g: str, node: Node, t: TensorType, attrs: tuple[str, ...]) -> int:
    _needs_int(g, node, t)
    if len(t.shape) != 1:
        raise _fail(g, node, f"input {node.inputs[0]!r} {t.describe()} must be a 1-D vector")
    return _channels(g, node, t, attrs)


def _infer_scores(g: str, node: ScoreAffine, t: TensorType, rng: tuple[int, int]) -> Inferred:
    c = _vector(g, node, t, ("scale", "bias"))
    ends = [int(s) * x + int(b) for s, b in zip(node.scale, node.bias, strict=True)
            for x in rng]
    typ = int_type((c,), min(min(ends), -1), max(ends))
    if typ.bits > MAX_SCORE_BITS:
        raise _fail(g, node, f"scores need {typ.bits} bits, more than {MAX_SCORE_BITS}; "
                             "fold with fewer score bits")
    return typ, (min(ends), max(ends))


def _infer_argmax(g: str, node: ArgMax | AffineArgMax, t: TensorType, rng) -> Inferred:
    c = _vector(g, node, t, ("slope", "offset") if isinstance(node, AffineArgMax) else ())
    return int_type((), 0, c - 1), (0, c - 1)


# one rule per node kind; each takes (graph name, node, input type, input range)
_INFER: dict[type[Node], Callable[..., Inferred]] = {
          Input: _infer_input, BinaryDense: _infer_dense, BinaryConv2d: _infer_conv,
          SparseDense: _infer_dense, SparseConv2d: _infer_conv,
          CompositeDense: _infer_dense, CompositeConv2d: _infer_conv,
          DomainDense: _infer_dense, DomainConv2d: _infer_conv,
          Threshold: _infer_threshold, MaxPool2d: _infer_pool, AffineSign: _infer_sign,
          ScoreAffine: _infer_scores, ArgMax: _infer_argmax, AffineArgMax: _infer_argmax}


def _infer_node(g: str, node: Node, t: TensorType | None,
                rng: tuple[int, int] | None) -> Inferred:
    infer = _INFER.get(type(node))
    if infer is None:
        raise _fail(g, node, f"unknown node kind; expected one of {', '.join(NODE_KINDS)}")
    if node.inputs and (t is None or rng is None):
        raise _fail(g, node, "has no input")
    return infer(g, node, t, rng)


def _walk(nodes: tuple[Node, ...], graph: str):
    types: dict[str, TensorType] = {}
    ranges: dict[str, tuple[int, int]] = {}
    for node in nodes:
        if not isinstance(node, Node):
            raise IRError(f"graph {graph!r}: {node!r} is not an IR node")
        if node.name in types:
            raise IRError(f"graph {graph!r}: two nodes are named {node.name!r}; "
                          "names must be unique")
        for ref in node.inputs:
            if ref not in types:
                raise _fail(graph, node, f"reads {ref!r}, which no earlier node produces")
        src = node.inputs[0] if node.inputs else None
        types[node.name], ranges[node.name] = _infer_node(
            graph, node, None if src is None else types[src], None if src is None else ranges[src])
    return types, ranges


def infer_types(nodes: tuple[Node, ...], graph: str = "graph") -> dict[str, TensorType]:
    """Derive every tensor's exact type from the nodes; :class:`IRError` where they conflict."""
    return _walk(tuple(nodes), graph)[0]


def value_ranges(graph: Graph) -> dict[str, tuple[int, int]]:
    """Exact value range ``(lo, hi)`` of each tensor (e.g. ``0 .. fan_in`` for a popcount)."""
    return _walk(graph.nodes, graph.name)[1]


def verify(graph: Graph) -> Graph:
    """Check references, shapes, widths and attributes; return ``graph`` or raise :class:`IRError`.

    Passes call it on every graph they return.
    """
    g = graph.name
    types = infer_types(graph.nodes, g)
    declared_inputs = tuple(n.name for n in graph.nodes if isinstance(n, Input))
    if graph.inputs != declared_inputs:
        raise IRError(f"graph {g!r}: inputs {list(graph.inputs)} must name its Input nodes "
                      f"{list(declared_inputs)}")
    if not graph.outputs:
        raise IRError(f"graph {g!r}: no outputs")
    for out in graph.outputs:
        if out not in types:
            raise IRError(f"graph {g!r}: output {out!r} is not a tensor of the graph")
    stored = dict(graph.types)
    if stored != types:
        for name, t in types.items():
            if stored.get(name) != t:
                have = stored[name].describe() if name in stored else "missing"
                raise IRError(f"graph {g!r}: tensor {name!r} is declared {have}, but its node "
                              f"gives {t.describe()}; rebuild the graph with build_graph")
        extra = sorted(set(stored) - set(types))
        raise IRError(f"graph {g!r}: types declared for unknown tensors {extra}")
    return graph


def build_graph(name: str, nodes: tuple[Node, ...] | list[Node],
                outputs: tuple[str, ...] | list[str]) -> Graph:
    """A verified :class:`Graph`: its inputs are its :class:`Input` nodes, its types derived."""
    nodes = tuple(nodes)
    inputs = tuple(n.name for n in nodes if isinstance(n, Input))
    return verify(Graph(name, nodes, inputs, tuple(outputs), infer_types(nodes, name)))
