"""The residual units of a folded graph, as the hardware builds them (numpy only).

A pre-activation unit on the residual stream (docs/ir.md, "Residual streams") is the
pattern

    r --+--> Threshold -> conv Layer -> Requantize --> Add --> r'
        +--------------------- [AvgPool2d 2x2] ------^

where the stream ``r`` (a ``Requantize`` or an ``Add``) feeds exactly the Threshold and
the skip. :func:`residual_units` finds every one, or says in one line which node does not
fit; the cost model prices them and the generator's plan places one
``hw.residual.ResidualBlock`` for each. :func:`skip_fifo_min` is how deep the skip FIFO
must be for the unit's dataflow never to deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FoldingError
from .ir import Add, AvgPool2d, Graph, Layer, Node, Requantize, Threshold, Upsample2d, Window

__all__ = ["SKIP_SLACK", "ResidualUnit", "residual_units", "skip_fifo_min", "stream_node"]

# skip-FIFO entries beyond the minimum: the branch's pipeline (sign, window, converter, the
# MVU's weight read and adder-tree stages) holds pixels too, and a FIFO shorter than that
# lag slows the block (measured: 12 keep a 16-PE, SIMD-144 block at a pixel a cycle)
SKIP_SLACK = 16


@dataclass(frozen=True)
class ResidualUnit:
    """One pre-activation unit: the stream it reads, the nodes it is made of, its
    convolution's window and its skip FIFO's depth (:func:`skip_fifo_min` + :data:`SKIP_SLACK`
    pixels)."""

    stream: str  # the Requantize or Add whose output the unit reads
    sign: Threshold
    layer: Layer
    requant: Requantize
    pool: AvgPool2d | None
    add: Add
    window: Window
    skip_depth: int


def stream_node(graph: Graph, name: str) -> bool:
    """Whether ``name`` is a residual-stream value (a ``Requantize`` or an ``Add``)."""
    return isinstance(graph.node(name), Requantize | Add)


def _only_user(graph: Graph, node: Node, want: type, unit: str) -> Node:
    users = graph.consumers(node.name)
    if len(users) != 1 or not isinstance(users[0], want):
        got = ", ".join(f"{u.kind} {u.name!r}" for u in users) or "nothing"
        raise FoldingError(f"graph {graph.name!r}: in the residual unit of {unit!r}, {node.kind} "
                           f"{node.name!r} must feed only a {want.__name__}, not {got}; the "
                           "hardware builds pre-activation units (docs/ir.md)")
    return users[0]


def _unit(graph: Graph, add: Add) -> ResidualUnit:
    def refuse(why: str) -> FoldingError:
        return FoldingError(f"graph {graph.name!r}: Add {add.name!r} {why}; the hardware builds "
                            "pre-activation units r' = Requantize(conv(Threshold(r))) + "
                            "[AvgPool2d 2x2](r) (docs/ir.md, \"Residual streams\")")

    requant = graph.node(add.inputs[0])
    layer = graph.node(requant.inputs[0]) if isinstance(requant, Requantize) else None
    if not isinstance(requant, Requantize) or not isinstance(layer, Layer) or \
            not isinstance(layer.geometry, Window):
        raise refuse("does not add a Requantize of a convolution")
    sign = graph.node(layer.input)
    if not isinstance(sign, Threshold) or not stream_node(graph, sign.input):
        raise refuse(f"joins a convolution {layer.name!r} that does not read a Threshold "
                     "of the stream")
    skip = graph.node(add.inputs[1])
    pool = skip if isinstance(skip, AvgPool2d) else None
    stream = pool.input if pool is not None else skip.name
    if stream != sign.input:
        raise refuse(f"adds {skip.name!r}, not the stream {sign.input!r} its convolution reads")
    g = layer.geometry
    if g.stride not in (1, 2) or g.kernel % 2 == 0 or g.pad != g.kernel // 2 or \
            (pool is not None) != (g.stride == 2) or \
            (pool is not None and (pool.kernel, pool.stride) != (2, 2)):
        raise refuse(f"has a {g.kernel}x{g.kernel} stride-{g.stride} pad-{g.pad} convolution "
                     f"and {'a' if pool else 'no'} pooled skip; the hardware needs an odd kernel "
                     "padded to keep the map, stride 1 (a plain skip) or 2 (a 2x2 average)")
    if graph.types[add.name].bits != graph.types[stream].bits:
        raise refuse("changes the stream's width")
    users = {u.name for u in graph.consumers(stream)}
    expected = {sign.name, pool.name if pool is not None else add.name}
    if users != expected:
        raise refuse(f"reads the stream {stream!r}, which also feeds {sorted(users - expected)}")
    chain: list[tuple[Node, type]] = [(sign, Layer), (layer, Requantize), (requant, Add)]
    for node, want in chain + ([(pool, Add)] if pool is not None else []):
        _only_user(graph, node, want, add.name)
    h, w, _ = graph.types[stream].shape
    depth = skip_fifo_min(h, w, g.kernel, g.stride, g.pad) + SKIP_SLACK
    return ResidualUnit(stream, sign, layer, requant, pool, add, g, depth)


def residual_units(graph: Graph) -> dict[str, ResidualUnit]:
    """Every residual unit of ``graph``, keyed by its convolution's name, in graph order.

    Raises :class:`FoldingError` for an ``Add`` outside the pattern above and for
    ``Upsample2d`` (an hourglass' way up, which the hardware does not build yet).
    """
    units = {}
    for node in graph.nodes:
        if isinstance(node, Upsample2d):
            raise FoldingError(f"graph {graph.name!r}: Upsample2d {node.name!r} has no hardware "
                               "yet (bitfold builds pre-activation residual units); "
                               "`bitfold golden` runs it")
        if isinstance(node, Add):
            unit = _unit(graph, node)
            units[unit.layer.name] = unit
    return units


def skip_fifo_min(h: int, w: int, kernel: int, stride: int, pad: int) -> int:
    """Skip-FIFO entries with which a residual unit cannot deadlock, whatever the stalls.

    The sliding window emits an output row once every input row it needs is complete, so
    the branch produces output ``(i, 0)`` only after input row ``need(i) = min(h - 1,
    i s - pad + max(k, s) - 1)`` (the last output row: ``h - 1``); by then the fork has
    passed every skip pixel made of rows ``0 .. need(i)``, and the join has taken only
    those of output rows ``< i``. A stride-1 skip is a pixel per input pixel; a stride-2 one
    (``AvgPool2d`` 2x2) a pooled row per two input rows. The FIFO alone holding the
    difference is safe; the registers ahead of it (the fork's, a pool's row of sums) hold a
    little more, so the true minimum can be lower (measured: 11 of this bound's 12 for a
    6-pixel-wide stride-1 block; 1 of 4 for an 8x8 strided block, whose pool buffers rows).
    """
    oh = (h + 2 * pad - kernel) // stride + 1
    ow = (w + 2 * pad - kernel) // stride + 1
    worst = 0
    for i in range(oh):
        need = h - 1 if i == oh - 1 else min(h - 1, i * stride - pad + max(kernel, stride) - 1)
        made = (need + 1) * w if stride == 1 else (need + 1) // 2 * ow
        worst = max(worst, made - i * ow)
    return max(1, worst)
