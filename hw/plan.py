"""The hardware plan of a network: its stages, stream formats and FIFOs, from the IR and a folding.

A plan is plain data (no Amaranth): the dataflow top builds components from
it and ``manifest.json`` describes it. Supported graphs are chains::

    Input -> [ (BinaryConv2d | BinaryDense) -> Threshold -> MaxPool2d? ]*
          -> BinaryDense -> ScoreAffine -> ArgMax

where every binary layer may also be sparse, composite or domain (``SparseDense``,
``CompositeConv2d``, ``DomainDense``, ...), and a dense layer may feed its popcounts straight
into another dense layer (a low-rank pair). A sparse layer folded in the index
layout becomes an :class:`~.mvu.IndexMVU`, which takes its input vector (or
window) in words of ``in_elems`` elements, as few as load one vector within its
``NF * SF`` compute cycles; in the group layout, a :class:`~.group_mvu.GroupMVU`, which
takes ``SIMD`` groups of ``G`` inputs a word. A composite layer folded in the serial layout becomes
a :class:`~.serial_mvu.SerialCompositeMVU` (its ``K`` planes one a cycle).

A convolution becomes a sliding-window unit plus an MVU; every edge between
stages gets a width converter (when the word sizes differ) and a FIFO. An MVU
takes the next input vector into the second bank of its input buffer while it
works through its neuron folds, so a producer never waits on it and the
FIFO in front only decouples (a serial composite unit, with one bank, keeps a
FIFO of one whole vector); the pipeline does not stall on itself and meets the
analytic cycle model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bitfold.compiler.cost import DEVICES, group_structure
from bitfold.compiler.folding import Folding
from bitfold.compiler.golden import pad_bit
from bitfold.compiler.ir import (
    CONV_KINDS,
    DENSE_KINDS,
    MVU_KINDS,
    ArgMax,
    CompositeConv2d,
    CompositeDense,
    DomainConv2d,
    DomainDense,
    Graph,
    Input,
    MaxPool2d,
    ScoreAffine,
    SparseConv2d,
    SparseDense,
    Threshold,
    mvu_matrix,
)

from .index_mvu import vector_beats
from .names import class_bits, sanitize
from .swu import window_order

__all__ = ["HardwareError", "Plan", "Stage", "build_plan"]


class HardwareError(ValueError):
    """A graph or folding the hardware generator cannot build, with the reason."""


@dataclass(frozen=True)
class Stage:
    """One hardware stage; ``params`` are its component's constructor arguments."""

    kind: str  # "mvu" | "swu" | "pool" | "score"
    name: str  # sanitized, unique
    node: str  # the IR node it implements
    in_elems: int
    in_bits: int
    out_elems: int
    out_bits: int
    params: dict = field(default_factory=dict)
    fifo_depth: int = 2  # FIFO in front of this stage


@dataclass(frozen=True)
class Plan:
    """A network's stages in stream order and the formats at its two ends."""

    graph: str
    top_name: str
    input_name: str
    input_shape: tuple[int, ...]
    input_bits: int
    input_bipolar: bool
    stages: tuple[Stage, ...]
    classes: int
    score_bits: int
    class_bits: int
    cycles_per_frame: int
    folding: dict

    @property
    def in_elems(self) -> int:
        return self.stages[0].in_elems

    @property
    def beats_per_frame(self) -> int:
        return math.prod(self.input_shape) // self.in_elems

    def frame_beats(self, frame: np.ndarray) -> list[np.ndarray]:
        """The input words of one frame: elements in (H, W, C) order, ``in_elems`` per word."""
        flat = np.asarray(frame).reshape(-1)
        return [flat[i:i + self.in_elems] for i in range(0, flat.size, self.in_elems)]


def _next(graph: Graph, node, want: tuple[type, ...]) -> object:
    users = graph.consumers(node.name)
    if len(users) != 1 or not isinstance(users[0], want):
        kinds = " or ".join(t.__name__ for t in want)
        got = ", ".join(f"{u.kind} {u.name!r}" for u in users) or "nothing"
        raise HardwareError(f"graph {graph.name!r}: {node.kind} {node.name!r} must feed exactly "
                            f"one {kinds}, not {got} (the generator builds chains)")
    return users[0]


def _mvu_simd_lanes(kernel: int, c: int, simd: int) -> int:
    """Window columns per sliding-window word: the fewest giving at least ``simd`` elements."""
    for lanes in range(1, kernel + 1):
        if kernel % lanes == 0 and lanes * kernel * c >= simd:
            return lanes
    return kernel


def build_plan(graph: Graph, folding: Folding, fifo_min: int = 2) -> Plan:
    """Stages, formats and FIFO depths of ``graph`` at ``folding``.

    FIFO depths start from the cost model's (``folding.fifos``) and are at least
    ``fifo_min``; a depth of 2 is a skid buffer (``hw.streams.SkidBuffer``, a word a
    cycle). In front of a serial composite MVU the FIFO holds one input vector plus two.

    Raises :class:`HardwareError` for graphs outside the supported chain, for
    several inputs/outputs and for padded foldings.
    """
    if not graph.folded:
        raise HardwareError(f"graph {graph.name!r} is not folded; run bitfold compile")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise HardwareError(f"graph {graph.name!r}: the generator needs one input and one output, "
                            f"not {list(graph.inputs)} -> {list(graph.outputs)}")
    if folding.allow_padding and any(c.mh % c.pe or (c.layout != "index" and c.mw % c.simd)
                                     for c in folding.layers):
        raise HardwareError("padded foldings (pe or simd not dividing the layer) are not "
                            "supported by the generator yet; fold without --allow-padding")
    fold = {c.name: c for c in folding.layers}
    # a fast fabric: block-RAM reads registered, MVUs stall by credits, DSP products split
    fast = DEVICES[folding.device].register_reads
    fifo_min = max([fifo_min] + [int(f.get("depth", 0)) for f in folding.fifos])
    node = graph.node(graph.inputs[0])
    if not isinstance(node, Input):
        raise HardwareError(f"graph {graph.name!r}: input {node.name!r} is not an Input node")
    t_in = graph.types[node.name]
    stages: list[Stage] = []
    names: set[str] = set()

    def add(kind: str, node_name: str, **kw) -> None:
        name = sanitize(node_name, kind, names)
        stages.append(Stage(kind, name, node_name, **kw))

    cur = node
    while True:
        nxt = _next(graph, cur, (*MVU_KINDS, MaxPool2d))
        t = graph.types[nxt.input]
        bits = 1 if t.bipolar else t.bits
        if isinstance(nxt, MaxPool2d):
            h, w, c = t.shape
            add("pool", nxt.name, in_elems=c, in_bits=1, out_elems=c, out_bits=1,
                params=dict(h=h, w=w, c=c, kernel=nxt.kernel, stride=nxt.stride),
                fifo_depth=fifo_min)
            cur = nxt
            continue
        cost = fold[nxt.name]
        pe, simd = cost.pe, cost.simd
        weights = mvu_matrix(nxt)  # (planes, mh, mw)
        index = cost.layout == "index"
        group = group_structure(weights[0])[0] if cost.layout == "group" else 0
        if index and max(1, int(weights[0].sum(axis=1).max())) % simd:
            raise HardwareError("padded foldings (pe or simd not dividing the layer) are not "
                                "supported by the generator yet; fold without --allow-padding")
        in_elems = simd * group if group else simd  # the group layout takes SIMD groups of G
        if isinstance(nxt, CONV_KINDS):
            h, w, c = t.shape
            lanes = _mvu_simd_lanes(nxt.kernel, c, in_elems)
            if index:  # whole window columns, as few as load a window in time
                lanes = next(n for n in range(1, nxt.kernel + 1)
                             if nxt.kernel % n == 0 and nxt.kernel // n <= cost.nf * cost.sf)
                in_elems = lanes * nxt.kernel * c
            add("swu", nxt.name, in_elems=c, in_bits=bits, out_elems=lanes * nxt.kernel * c,
                out_bits=bits, fifo_depth=fifo_min,
                params=dict(h=h, w=w, c=c, elem_bits=bits, kernel=nxt.kernel, stride=nxt.stride,
                            pad=nxt.pad, pad_value=int(pad_bit(nxt, t)), lanes=lanes))
            weights = weights[..., window_order(nxt.kernel, c)]
        after = _next(graph, nxt, (Threshold, ScoreAffine, *DENSE_KINDS))
        t_acc = graph.types[nxt.name]
        params = dict(weights=weights[0], pe=pe, simd=simd, acc_bits=t_acc.bits,
                      acc_signed=t_acc.signed, input_bits=bits, bipolar=t.bipolar,
                      thresholds=None, weight_memory=cost.weight_memory,
                      register_reads=fast, credit=fast,
                      **({"block_pes": cost.block_pes} if cost.block_pes else {}))
        if isinstance(nxt, SparseDense | SparseConv2d):
            params["polarity"] = np.asarray(nxt.polarity)
            if index:
                if not isinstance(nxt, CONV_KINDS):
                    in_elems = vector_beats(weights.shape[-1], cost.nf * cost.sf)
                params.update(layout="index", in_elems=in_elems)
            elif group:
                params.update(layout="group", group=group)
        elif isinstance(nxt, DomainDense | DomainConv2d):
            params.update(offset=[int(v) for v in nxt.offset], offset_scale=int(nxt.scale))
        elif isinstance(nxt, CompositeDense | CompositeConv2d):
            params.update(weights=weights, plane_scale=[int(v) for v in nxt.plane_scale])
            if cost.layout == "serial":  # one set of lanes, the K planes one a cycle
                params["layout"] = "serial"
        # the serial unit re-reads a one-bank buffer: its FIFO holds the next vector; every
        # other MVU takes the next vector into its second bank while it computes
        depth = max(fifo_min, weights.shape[-1] // in_elems + 2) if cost.layout == "serial" \
            else fifo_min
        if isinstance(after, DENSE_KINDS):  # a low-rank pair: integers into the next layer
            if isinstance(nxt, CONV_KINDS) or t_acc.signed:
                raise HardwareError(f"graph {graph.name!r}: {nxt.kind} {nxt.name!r} may feed "
                                    "a dense layer directly only as a dense layer with "
                                    "unsigned (popcount) outputs")
            add("mvu", nxt.name, in_elems=in_elems, in_bits=bits, out_elems=pe,
                out_bits=t_acc.bits, params=params, fifo_depth=depth)
            cur = nxt
            continue
        if isinstance(after, Threshold):
            params["thresholds"] = np.asarray(after.thresholds)
            add("mvu", nxt.name, in_elems=in_elems, in_bits=bits, out_elems=pe, out_bits=1,
                params=params, fifo_depth=depth)
            cur = after
            continue
        if isinstance(nxt, CONV_KINDS):
            raise HardwareError(f"graph {graph.name!r}: the scores must come from a dense layer, "
                                f"not the convolution {nxt.name!r}")
        add("mvu", nxt.name, in_elems=in_elems, in_bits=bits, out_elems=pe, out_bits=t_acc.bits,
            params=params, fifo_depth=depth)
        argmax = _next(graph, after, (ArgMax,))
        if argmax.name != graph.outputs[0]:
            raise HardwareError(f"graph {graph.name!r}: the output must be the ArgMax "
                                f"{argmax.name!r}, not {graph.outputs[0]!r}")
        t_score = graph.types[after.name]
        add("score", after.name, in_elems=1, in_bits=t_acc.bits, out_elems=1,
            out_bits=0, fifo_depth=fifo_min,
            params=dict(scale=[int(v) for v in after.scale], bias=[int(v) for v in after.bias],
                        acc_bits=t_acc.bits, acc_signed=t_acc.signed, score_bits=t_score.bits,
                        split_products=fast))
        classes = len(after.scale)
        break
    return Plan(graph=graph.name, top_name=sanitize(graph.name, "bitfold", set()),
                input_name=node.name, input_shape=tuple(t_in.shape),
                input_bits=1 if t_in.bipolar else t_in.bits, input_bipolar=t_in.bipolar,
                stages=tuple(stages), classes=classes, score_bits=t_score.bits,
                class_bits=class_bits(classes), cycles_per_frame=folding.cycles_per_frame,
                folding={c.name: {"pe": c.pe, "simd": c.simd, "nf": c.nf, "sf": c.sf,
                                  "cycles": c.cycles} for c in folding.layers})
