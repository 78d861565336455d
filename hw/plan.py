"""The hardware plan of a network: its stages, stream formats and FIFOs, from the IR and a folding.

A plan is plain data (no Amaranth): the dataflow top builds components from
it and ``manifest.json`` describes it. Supported graphs are chains::

    Input -> [ (conv Layer | dense Layer) -> Threshold -> MaxPool2d? ]*
          -> dense Layer -> ScoreAffine -> ArgMax

where every layer may have any weight encoding (binary, sparse, composite, domain; the
encoding gives the unit its parameters, ``Encoding.unit_params``), and a dense layer may
feed its popcounts straight into another dense layer (a low-rank pair). A sparse layer folded in the index
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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bitfold.compiler.cost import DEVICES, LayerCost, group_structure
from bitfold.compiler.folding import Folding
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    Node,
    ScoreAffine,
    TensorType,
    Threshold,
    Window,
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


def _next(graph: Graph, node: Node, want: tuple[type, ...]) -> Node:
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


def _window_stage(geo: Window, t: TensorType, cost: LayerCost, in_elems: int, bits: int,
                  fifo_min: int) -> tuple[dict, int]:
    """A convolution's sliding-window stage (``Stage`` fields) and its MVU's input word."""
    h, w, c = t.shape
    k = geo.kernel
    lanes = _mvu_simd_lanes(k, c, in_elems)
    if cost.layout == "index":  # whole window columns, as few as load a window in time
        lanes = next(n for n in range(1, k + 1) if k % n == 0 and k // n <= cost.nf * cost.sf)
        in_elems = lanes * k * c
    return dict(in_elems=c, in_bits=bits, out_elems=lanes * k * c, out_bits=bits,
                fifo_depth=fifo_min,
                params=dict(h=h, w=w, c=c, elem_bits=bits, kernel=k, stride=geo.stride,
                            pad=geo.pad, pad_value=int(geo.pad_bit(t)), lanes=lanes)), in_elems


def _unit_params(node: Layer, cost: LayerCost, weights: np.ndarray, group: int, in_elems: int,
                 t: TensorType, t_acc: TensorType, fast: bool) -> tuple[dict, int]:
    """The MVU's parameters (the encoding's own: weights, polarity, offsets, planes; the
    layout's: index, group, serial) and its input word."""
    params = dict(pe=cost.pe, simd=cost.simd, acc_bits=t_acc.bits, acc_signed=t_acc.signed,
                  input_bits=1 if t.bipolar else t.bits, bipolar=t.bipolar, thresholds=None,
                  weight_memory=cost.weight_memory, register_reads=fast, credit=fast,
                  **({"block_pes": cost.block_pes} if cost.block_pes else {}))
    params.update(node.encoding.unit_params(weights, t))
    if cost.layout == "index":  # a sparse layer's kept positions
        if not node.conv:
            in_elems = vector_beats(weights.shape[-1], cost.nf * cost.sf)
        params.update(layout="index", in_elems=in_elems)
    elif group:  # a sparse layer's N of every G
        params.update(layout="group", group=group)
    elif cost.layout == "serial":  # a composite layer: one set of lanes, a plane a cycle
        params["layout"] = "serial"
    return params, in_elems


def _input(graph: Graph, folding: Folding) -> Input:
    """The graph's one input, after refusing what the generator cannot build."""
    if not graph.folded:
        raise HardwareError(f"graph {graph.name!r} is not folded; run bitfold compile")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise HardwareError(f"graph {graph.name!r}: the generator needs one input and one output, "
                            f"not {list(graph.inputs)} -> {list(graph.outputs)}")
    if folding.allow_padding and any(c.mh % c.pe or (c.layout != "index" and c.mw % c.simd)
                                     for c in folding.layers):
        raise HardwareError("padded foldings (pe or simd not dividing the layer) are not "
                            "supported by the generator yet; fold without --allow-padding")
    node = graph.node(graph.inputs[0])
    if not isinstance(node, Input):
        raise HardwareError(f"graph {graph.name!r}: input {node.name!r} is not an Input node")
    return node


def _layer_stages(graph: Graph, node: Layer, cost: LayerCost, fast: bool, fifo_min: int,
                  add: Callable[..., None]) -> tuple[Node, dict]:
    """Add a convolution's sliding window; return the node after the layer and the
    ``Stage`` fields of its MVU but ``out_bits`` (with the thresholds of a Threshold after it,
    as the encoding's unit compares them)."""
    t = graph.types[node.input]
    bits = 1 if t.bipolar else t.bits
    weights = node.encoding.planes()  # (planes, mh, mw)
    group = group_structure(weights[0])[0] if cost.layout == "group" else 0
    if cost.layout == "index" and max(1, int(weights[0].sum(axis=1).max())) % cost.simd:
        raise HardwareError("padded foldings (pe or simd not dividing the layer) are not "
                            "supported by the generator yet; fold without --allow-padding")
    in_elems = cost.simd * group if group else cost.simd  # the group layout: SIMD groups of G
    if isinstance(node.geometry, Window):
        swu, in_elems = _window_stage(node.geometry, t, cost, in_elems, bits, fifo_min)
        add("swu", node.name, **swu)
        weights = weights[..., window_order(node.geometry.kernel, t.shape[2])]
    after = _next(graph, node, (Threshold, ScoreAffine, Layer))
    params, in_elems = _unit_params(node, cost, weights, group, in_elems, t,
                                    graph.types[node.name], fast)
    if isinstance(after, Threshold):
        params["thresholds"] = node.encoding.unit_thresholds(np.asarray(after.thresholds), t)
    elif not node.encoding.UNIT_ACCUMULATES_IR:
        raise HardwareError(f"graph {graph.name!r}: {node.kind} {node.name!r} must feed a "
                            "Threshold: its unit accumulates another integer than the layer, "
                            "so only the thresholded bits are the layer's")
    # the serial unit re-reads a one-bank buffer: its FIFO holds the next vector; every
    # other MVU takes the next vector into its second bank while it computes
    depth = max(fifo_min, weights.shape[-1] // in_elems + 2) if cost.layout == "serial" \
        else fifo_min
    return after, dict(in_elems=in_elems, in_bits=bits, out_elems=cost.pe, params=params,
                       fifo_depth=depth)


def _pool_stage(graph: Graph, node: MaxPool2d, fifo_min: int) -> dict:
    """A max pool's ``Stage`` fields: a pixel of all channels a word."""
    h, w, c = graph.types[node.input].shape
    return dict(in_elems=c, in_bits=1, out_elems=c, out_bits=1, fifo_depth=fifo_min,
                params=dict(h=h, w=w, c=c, kernel=node.kernel, stride=node.stride))


def _score_stage(graph: Graph, node: ScoreAffine, fast: bool, fifo_min: int) -> dict:
    """The score/argmax stage's ``Stage`` fields, after checking the ArgMax is the output."""
    argmax = _next(graph, node, (ArgMax,))
    if argmax.name != graph.outputs[0]:
        raise HardwareError(f"graph {graph.name!r}: the output must be the ArgMax "
                            f"{argmax.name!r}, not {graph.outputs[0]!r}")
    t_acc, t_score = graph.types[node.input], graph.types[node.name]
    return dict(in_elems=1, in_bits=t_acc.bits, out_elems=1, out_bits=0, fifo_depth=fifo_min,
                params=dict(scale=[int(v) for v in node.scale], bias=[int(v) for v in node.bias],
                            acc_bits=t_acc.bits, acc_signed=t_acc.signed,
                            score_bits=t_score.bits, split_products=fast))


def build_plan(graph: Graph, folding: Folding, fifo_min: int = 2) -> Plan:
    """Stages, formats and FIFO depths of ``graph`` at ``folding``.

    FIFO depths start from the cost model's (``folding.fifos``) and are at least
    ``fifo_min``; a depth of 2 is a skid buffer (``hw.streams.SkidBuffer``, a word a
    cycle). In front of a serial composite MVU the FIFO holds one input vector plus two.

    Raises :class:`HardwareError` for graphs outside the supported chain, for
    several inputs/outputs and for padded foldings.
    """
    node = _input(graph, folding)
    fold = {c.name: c for c in folding.layers}
    # a fast fabric: block-RAM reads registered, MVUs stall by credits, DSP products split
    fast = DEVICES[folding.device].register_reads
    fifo_min = max([fifo_min] + [int(f.get("depth", 0)) for f in folding.fifos])
    stages: list[Stage] = []
    names: set[str] = set()

    def add(kind: str, node_name: str, **kw) -> None:
        name = sanitize(node_name, kind, names)
        stages.append(Stage(kind, name, node_name, **kw))

    cur: Node = node
    while True:
        nxt = _next(graph, cur, (Layer, MaxPool2d))
        if isinstance(nxt, MaxPool2d):
            add("pool", nxt.name, **_pool_stage(graph, nxt, fifo_min))
            cur = nxt
            continue
        after, mvu = _layer_stages(graph, nxt, fold[nxt.name], fast, fifo_min, add)
        t_acc = graph.types[nxt.name]
        if isinstance(after, Layer):  # a low-rank pair: integers into the next layer
            if nxt.conv or after.conv or t_acc.signed:
                raise HardwareError(f"graph {graph.name!r}: {nxt.kind} {nxt.name!r} may feed "
                                    "a dense layer directly only as a dense layer with "
                                    "unsigned (popcount) outputs")
            add("mvu", nxt.name, out_bits=t_acc.bits, **mvu)
            cur = nxt
            continue
        if isinstance(after, Threshold):
            add("mvu", nxt.name, out_bits=1, **mvu)
            cur = after
            continue
        if nxt.conv:
            raise HardwareError(f"graph {graph.name!r}: the scores must come from a dense layer, "
                                f"not the convolution {nxt.name!r}")
        add("mvu", nxt.name, out_bits=t_acc.bits, **mvu)
        add("score", after.name, **_score_stage(graph, after, fast, fifo_min))
        break
    t_in, classes = graph.types[node.name], len(after.scale)
    return Plan(graph=graph.name, top_name=sanitize(graph.name, "bitfold", set()),
                input_name=node.name, input_shape=tuple(t_in.shape),
                input_bits=1 if t_in.bipolar else t_in.bits, input_bipolar=t_in.bipolar,
                stages=tuple(stages), classes=classes, score_bits=graph.types[after.name].bits,
                class_bits=class_bits(classes), cycles_per_frame=folding.cycles_per_frame,
                folding={c.name: {"pe": c.pe, "simd": c.simd, "nf": c.nf, "sf": c.sf,
                                  "cycles": c.cycles} for c in folding.layers})
