"""Type inference and verification of IR graphs (docs/ir.md; ``verify`` runs after every pass).

Types are derived exactly: a popcount over ``fan_in`` inputs is
``0 .. fan_in``, a multi-bit accumulator ``-fan_in * max .. fan_in * max``,
scores the exact extremes of their integer affine; no width is guessed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .domain import domain_range
from .errors import IRError
from .ir import (
    MAX_SCORE_BITS,
    NODE_KINDS,
    Add,
    AffineArgMax,
    AffineSign,
    ArgMax,
    AvgPool2d,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    Node,
    Requantize,
    ScoreAffine,
    TensorType,
    Threshold,
    Upsample2d,
    int_type,
)

__all__ = ["build_graph", "channel_ranges", "domain_range", "infer_types", "value_ranges",
           "verify"]


def _fail(graph: str, node: Node, msg: str) -> IRError:
    return IRError(f"graph {graph!r}: node {node.name!r} ({node.kind}): {msg}")


def _needs_int(g: str, node: Node, t: TensorType, what: str = "an integer accumulator") -> None:
    if t.bipolar:
        raise _fail(g, node, f"input {node.inputs[0]!r} is {t.describe()}, expected {what}")


def channel_ranges(node: Layer, t: TensorType) -> list[tuple[int, int, int]]:
    """Per output channel of a binary layer: ``(lo, hi, mirror)`` of its accumulator.

    ``mirror`` is what negating the channel's weights maps an accumulator ``a``
    to, ``mirror - a``: the fan-in (times the plane scales' sum for a composite
    layer; the row's non-zeros for a sparse one) on bipolar input, 0 on multi-bit input.
    Its encoding decides (:meth:`~bitfold.compiler.encoding.Encoding.channel_ranges`).
    """
    return node.encoding.channel_ranges(t)


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


def _infer_layer(g: str, node: Layer, t: TensorType, rng) -> Inferred:
    """Type and range of a binary layer's accumulator: geometry, then encoding."""
    enc = node.encoding
    c_out, cols = enc.shape
    try:
        out_shape = node.geometry.infer(t, node.input, cols, c_out)
        if c_out < 1 or cols < 1:
            raise IRError(f"weight needs at least one output and one input, not "
                          f"{(c_out, cols)}")
        if not t.bipolar and t.signed:
            raise IRError(f"multi-bit input {node.input!r} must be unsigned, not "
                          f"{t.describe()}")
        enc.check()
    except IRError as exc:
        raise _fail(g, node, str(exc)) from None
    ranges = enc.channel_ranges(t)
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return int_type(out_shape, lo, hi), (lo, hi)


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


def _stream_bits(g: str, node: Requantize | Add) -> tuple[int, int]:
    if not isinstance(node.bits, int) or not 2 <= node.bits <= 32:
        raise _fail(g, node, f"bits must be 2..32 (a signed stream), not {node.bits!r}")
    return -(1 << (node.bits - 1)), (1 << (node.bits - 1)) - 1


def _infer_requantize(g: str, node: Requantize, t: TensorType, rng) -> Inferred:
    _needs_int(g, node, t)
    _channels(g, node, t, ("mult", "bias"))
    lo, hi = _stream_bits(g, node)
    if not isinstance(node.shift, int) or not 0 <= node.shift <= 32:
        raise _fail(g, node, f"shift must be 0..32, not {node.shift!r}")
    ends = [(int(m) * a + int(b)) >> node.shift
            for m, b in zip(node.mult, node.bias, strict=True) for a in rng]
    if max(abs(int(m)) for m in node.mult) * max(abs(v) for v in rng) + \
            max(abs(int(b)) for b in node.bias) >= 1 << MAX_SCORE_BITS:
        raise _fail(g, node, f"mult * acc + bias can exceed {MAX_SCORE_BITS} bits; use a "
                             "smaller mult")
    return (TensorType(t.shape, node.bits, True),
            (min(max(min(ends), lo), hi), max(min(max(ends), hi), lo)))


def _infer_add(g: str, node: Add, ts: list[TensorType], rngs: list[tuple[int, int]]
               ) -> Inferred:
    (a, b), (ra, rb) = ts, rngs
    for ref, t in zip(node.inputs, ts, strict=True):
        if t.bipolar or not t.signed or not t.shape:
            raise _fail(g, node, f"input {ref!r} is {t.describe()}; an Add joins signed "
                                 "integer streams (a Requantize or Add output)")
    if a.shape[:-1] != b.shape[:-1] or b.shape[-1] > a.shape[-1]:
        raise _fail(g, node, f"skip {node.skip!r} {b.describe()} does not fit {node.input!r} "
                             f"{a.describe()}: same spatial shape, at most as many channels")
    lo, hi = _stream_bits(g, node)
    b_lo, b_hi = rb if b.shape == a.shape else (min(rb[0], 0), max(rb[1], 0))
    return (TensorType(a.shape, node.bits, True),
            (min(max(ra[0] + b_lo, lo), hi), max(min(ra[1] + b_hi, hi), lo)))


def _map(g: str, node: Node, t: TensorType, what: str) -> tuple[int, int, int]:
    if len(t.shape) != 3:
        raise _fail(g, node, f"input {node.inputs[0]!r} {t.describe()} must be {what} "
                             "(H, W, C) map")
    return t.shape


def _infer_avg_pool(g: str, node: AvgPool2d, t: TensorType, rng) -> Inferred:
    _needs_int(g, node, t, "an integer map (average pooling of bipolar maps is not defined)")
    h, w, c = _map(g, node, t, "an integer")
    if node.kernel < 1 or node.stride < 1:
        raise _fail(g, node, f"kernel and stride must be >= 1, not {node.kernel}, "
                             f"{node.stride}")
    oh, ow = (h - node.kernel) // node.stride + 1, (w - node.kernel) // node.stride + 1
    if oh < 1 or ow < 1:
        raise _fail(g, node, f"kernel {node.kernel} does not fit the {h}x{w} input")
    return TensorType((oh, ow, c), t.bits, t.signed), rng


def _infer_upsample(g: str, node: Upsample2d, t: TensorType, rng) -> Inferred:
    h, w, c = _map(g, node, t, "an")
    if not isinstance(node.factor, int) or node.factor < 1:
        raise _fail(g, node, f"factor must be a positive integer, not {node.factor!r}")
    return TensorType((h * node.factor, w * node.factor, c), t.bits, t.signed), rng


# one rule per node kind; each takes (graph name, node, input type, input range); a node
# with several inputs (Add) takes their types and ranges as lists
_INFER: dict[type[Node], Callable[..., Inferred]] = {
          Input: _infer_input, Layer: _infer_layer,
          Threshold: _infer_threshold, MaxPool2d: _infer_pool, AffineSign: _infer_sign,
          ScoreAffine: _infer_scores, ArgMax: _infer_argmax, AffineArgMax: _infer_argmax,
          Requantize: _infer_requantize, Add: _infer_add, AvgPool2d: _infer_avg_pool,
          Upsample2d: _infer_upsample}


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
        if len(node.inputs) > 1:
            types[node.name], ranges[node.name] = _INFER[type(node)](
                graph, node, [types[r] for r in node.inputs], [ranges[r] for r in node.inputs])
            continue
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
