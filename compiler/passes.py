"""Passes over the IR: pure functions ``graph -> graph`` that return verified graphs.

``fold`` runs the two that turn a freshly lowered graph (real per-channel
affines; docs/architecture.md, "Numerics") into the integer graph hardware executes:

1. :func:`fold_signs_into_thresholds` -- exact: every ``AffineSign`` becomes a
   ``Threshold`` with ``acc >= T``; channels with a negative slope get their
   weight row negated in the producing layer so only ``>=`` remains.
2. :func:`fold_scores_into_integers` -- the last layer's real scores become
   ``ScoreAffine`` integers scaled by a common power of two, then ``ArgMax``.
   This is the one rounding step of the compiler, bounded and documented.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from .errors import IRError
from .ir import (
    MAX_SCORE_BITS,
    AffineArgMax,
    AffineSign,
    ArgMax,
    Graph,
    Layer,
    Node,
    ScoreAffine,
    Threshold,
)
from .verify import build_graph, channel_ranges, value_ranges, verify

__all__ = [
    "DEFAULT_SCORE_BITS",
    "exact_threshold",
    "fold",
    "fold_scores_into_integers",
    "fold_signs_into_thresholds",
    "run_passes",
    "score_error_bound",
    "score_exponent",
]

DEFAULT_SCORE_BITS = 32


def exact_threshold(slope: float, offset: float, lo: int, hi: int,
                    mirror: int) -> tuple[int, bool]:
    """Fold ``slope * a + offset >= 0`` over integers ``a in lo..hi`` into ``a' >= T``.

    Returns ``(T, negate)``. Without negation ``a' = a``; with it (negative
    slope) ``a' = mirror - a``, which is what negating the weight row gives
    (``mirror`` is the fan-in for a popcount, 0 for a signed sum). ``T`` is
    clipped to ``lo' .. hi' + 1`` of ``a'``: ``lo'`` is always on, ``hi' + 1``
    always off (a zero slope). Decided in exact rationals.
    """
    k, c = Fraction(slope), Fraction(offset)
    if k == 0:
        return (lo if c >= 0 else hi + 1), False
    r = -c / k  # the real crossing point
    if k > 0:  # a >= r
        t, negate, lo2, hi2 = math.ceil(r), False, lo, hi
    else:  # a <= r  <=>  mirror - a >= mirror - r
        t, negate, lo2, hi2 = math.ceil(mirror - r), True, mirror - hi, mirror - lo
    return min(max(t, lo2), hi2 + 1), negate


def fold_signs_into_thresholds(graph: Graph) -> Graph:
    """Replace each ``AffineSign`` by an exact integer ``Threshold`` (``acc >= T``)."""
    ranges = value_ranges(graph)
    replaced: dict[str, Node] = {}
    for node in graph.nodes:
        if not isinstance(node, AffineSign):
            continue
        src = graph.node(node.input)
        if isinstance(src, Layer):  # exact per-channel ranges (sparse rows differ)
            per_channel = channel_ranges(src, graph.types[src.inputs[0]])
        else:
            per_channel = [(*ranges[src.name], 0)] * len(node.slope)
        folded = [exact_threshold(k, c, lo, hi, mirror) for k, c, (lo, hi, mirror)
                  in zip(node.slope, node.offset, per_channel, strict=True)]
        thresholds = np.array([t for t, _ in folded], dtype=np.int64)
        negate = np.array([n for _, n in folded], dtype=bool)
        if negate.any():
            if not isinstance(src, Layer):
                raise IRError(f"graph {graph.name!r}: {node.name!r} has negative slopes, but its "
                              f"input {src.name!r} is a {src.kind}, not a binary layer whose "
                              "weight rows could be negated")
            readers = [n.name for n in graph.consumers(src.name)]
            if readers != [node.name]:
                raise IRError(f"graph {graph.name!r}: cannot negate rows of {src.name!r}: it is "
                              f"read by {readers}, not only by {node.name!r}")
            # the encoding says what negating a row means (a sparse row: its polarity)
            replaced[src.name] = dataclasses.replace(src, encoding=src.encoding.negated(negate))
        replaced[node.name] = Threshold(node.name, node.input, thresholds)
    nodes = tuple(replaced.get(n.name, n) for n in graph.nodes)
    return build_graph(graph.name, nodes, graph.outputs)


def score_exponent(k: list[Fraction], c: list[Fraction], lo: int, hi: int,
                    score_bits: int) -> int:
    """Largest ``E`` (scale ``2**E``) whose rounded integer scores fit ``score_bits`` signed."""
    limit = (1 << (score_bits - 1)) - 1
    peak = max(abs(ki * a + ci) for ki, ci in zip(k, c, strict=True) for a in (lo, hi))
    if peak == 0:
        return 0

    def fits(e: int) -> bool:
        s = Fraction(2) ** e
        return all(abs(round(ki * s) * a + round(ci * s)) <= limit
                   for ki, ci in zip(k, c, strict=True) for a in (lo, hi))

    e = math.floor(math.log2(limit / float(peak))) + 2
    for _ in range(16):  # the estimate is within a step or two; the cap only guards the loop
        if fits(e):
            return e
        e -= 1
    raise IRError(f"cannot fit scores into {score_bits} bits")


def score_error_bound(lo: int, hi: int) -> Fraction:
    """Largest ``|integer score - S * real score|`` after rounding ``k S`` and ``offset S``.

    ``|a| / 2 + 1 / 2`` with ``|a| <= max(|lo|, |hi|)``: a prediction can only
    change where two real scores (times ``2**E``) are within twice this.
    """
    return Fraction(max(abs(lo), abs(hi)) + 1, 2)


def fold_scores_into_integers(graph: Graph, score_bits: int = DEFAULT_SCORE_BITS) -> Graph:
    """Replace each ``AffineArgMax`` by ``ScoreAffine`` (integers) and ``ArgMax``.

    The real scores ``k[c] * a + offset[c]`` are scaled by ``S = 2**E``, the
    largest power of two whose integer scores ``round(k S) a + round(offset S)``
    (round half to even, on exact rationals) fit ``score_bits`` signed bits.
    """
    if not 2 <= score_bits <= MAX_SCORE_BITS:
        raise IRError(f"score_bits must be 2..{MAX_SCORE_BITS}, not {score_bits!r}")
    ranges = value_ranges(graph)
    names = {n.name for n in graph.nodes}
    nodes: list[Node] = []
    for node in graph.nodes:
        if not isinstance(node, AffineArgMax):
            nodes.append(node)
            continue
        lo, hi = ranges[node.input]
        k = [Fraction(v) for v in node.slope]
        c = [Fraction(v) for v in node.offset]
        s = Fraction(2) ** score_exponent(k, c, lo, hi, score_bits)
        scale = np.array([round(ki * s) for ki in k], dtype=np.int64)
        bias = np.array([round(ci * s) for ci in c], dtype=np.int64)
        score_name = f"{node.name}_scores"
        suffix = 0
        while score_name in names:
            suffix += 1
            score_name = f"{node.name}_scores{suffix}"
        names.add(score_name)
        nodes += [ScoreAffine(score_name, node.input, scale, bias),
                  ArgMax(node.name, score_name)]
    return build_graph(graph.name, nodes, graph.outputs)


def run_passes(graph: Graph, passes: Sequence[Callable[[Graph], Graph]]) -> Graph:
    """Run ``passes`` in order, verifying the graph before and after each."""
    verify(graph)
    for p in passes:
        graph = verify(p(graph))
    return graph


def fold(graph: Graph, score_bits: int = DEFAULT_SCORE_BITS) -> Graph:
    """Fold a lowered graph into integers: thresholds, then integer scores."""
    return run_passes(graph, [fold_signs_into_thresholds,
                              lambda g: fold_scores_into_integers(g, score_bits)])
