"""The hardware plan of a network: its stages, stream formats and FIFOs, from the IR and a folding.

A plan is plain data (no Amaranth): one typed stage per unit (:mod:`.stages`), each
building its component; the dataflow top wires them and ``manifest.json`` describes
them. :func:`build_plan` is a chain matcher (:func:`_chain`), one builder per stage kind
and the FIFO sizing. Supported graphs are chains::

    Input -> [ (conv Layer | dense Layer) -> Threshold -> MaxPool2d? ]*
          -> dense Layer -> ScoreAffine -> ArgMax

and residual networks, whose stream (``compiler.residual``) starts at a layer's
``Requantize`` and runs through residual units to a ``Threshold`` before a layer::

    ... -> conv Layer -> Requantize -> [residual unit]* -> Threshold -> Layer -> ...

each residual unit one :class:`~.stages.ResidualStage` (fork, sign, window, MVU, skip
FIFO and join in one :class:`~.residual.ResidualBlock`), a stream pixel a word in and its
MVU's ``PE`` channels a word out.

where every layer may have any weight encoding (binary, sparse, composite, domain; the
encoding gives the unit its parameters, ``Encoding.unit_params``), and a dense layer may
feed its popcounts straight into another dense layer (a low-rank pair). A sparse layer folded in the index
layout becomes an :class:`~.index_mvu.IndexMVU`, which takes its input vector (or
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
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from bitfold.compiler.cost import DEVICES, LayerCost, ResourceModel, group_structure
from bitfold.compiler.errors import FoldingError
from bitfold.compiler.folding import Folding
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    Node,
    Requantize,
    ScoreAffine,
    TensorType,
    Threshold,
    Window,
)
from bitfold.compiler.memlayout import index_window_lanes, vector_beats, window_lanes, window_order
from bitfold.compiler.residual import ResidualUnit, residual_units, stream_node

from .names import class_bits, sanitize
from .stages import (
    GroupMVUStage,
    IndexMVUStage,
    MVUStage,
    PoolStage,
    RequantStage,
    ResidualStage,
    ScoreStage,
    SerialMVUStage,
    SignStage,
    Stage,
    WindowStage,
)
from .weights import unit_weights

__all__ = ["HardwareError", "Plan", "Stage", "build_plan"]

class HardwareError(ValueError):
    """A graph or folding the hardware generator cannot build, with the reason."""


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


# ----------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class _LayerLink:
    """A layer of the chain and, when it feeds one, its Threshold (the unit outputs bits);
    else it feeds another dense layer (its popcounts: a low-rank pair) or the ScoreAffine
    (its integers)."""

    layer: Layer
    threshold: Threshold | None


def _next(graph: Graph, node: Node, *want: type[Node]) -> Node:
    users = graph.consumers(node.name)
    if len(users) == 1:
        user = users[0]
        for kind in want:
            if isinstance(user, kind):
                return user
    kinds = " or ".join(t.__name__ for t in want)
    got = ", ".join(f"{u.kind} {u.name!r}" for u in users) or "nothing"
    raise HardwareError(f"graph {graph.name!r}: {node.kind} {node.name!r} must feed exactly "
                        f"one {kinds}, not {got} (the generator builds chains)")


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


_Link = MaxPool2d | _LayerLink | Requantize | Threshold | ResidualUnit


def _chain(graph: Graph, start: Input) -> tuple[list[_Link], ScoreAffine]:
    """The supported chain from ``start``: max pools, layers (with what each feeds), and on a
    residual stream its ``Requantize``, residual units and closing ``Threshold``, in stream
    order, and the ScoreAffine at its end (whose ArgMax is the graph's output)."""
    try:
        units = {u.stream: u for u in residual_units(graph).values()}
    except FoldingError as exc:
        raise HardwareError(str(exc)) from None
    links: list[_Link] = []
    cur: Node = start
    while True:
        if stream_node(graph, cur.name):  # a residual unit, or the stream's last sign
            unit = units.get(cur.name)
            if unit is not None:
                links.append(unit)
                cur = unit.add
            else:
                cur = _next(graph, cur, Threshold)
                links.append(cast(Threshold, cur))
            continue
        nxt = _next(graph, cur, Layer, MaxPool2d)
        if isinstance(nxt, MaxPool2d):
            links.append(nxt)
            cur = nxt
            continue
        layer = cast(Layer, nxt)
        after = _next(graph, layer, Threshold, ScoreAffine, Layer, Requantize)
        threshold = after if isinstance(after, Threshold) else None
        links.append(_LayerLink(layer, threshold))
        if threshold is not None:
            cur = threshold
            continue
        if isinstance(after, Requantize):  # the residual stream starts
            links.append(after)
            cur = after
            continue
        if isinstance(after, Layer):  # a low-rank pair: integers into the next layer
            if layer.conv or after.conv or graph.types[layer.name].signed:
                raise HardwareError(f"graph {graph.name!r}: {layer.kind} {layer.name!r} may "
                                    "feed a dense layer directly only as a dense layer with "
                                    "unsigned (popcount) outputs")
            cur = layer
            continue
        if layer.conv:
            raise HardwareError(f"graph {graph.name!r}: the scores must come from a dense "
                                f"layer, not the convolution {layer.name!r}")
        score = cast(ScoreAffine, after)
        argmax = _next(graph, score, ArgMax)
        if argmax.name != graph.outputs[0]:
            raise HardwareError(f"graph {graph.name!r}: the output must be the ArgMax "
                                f"{argmax.name!r}, not {graph.outputs[0]!r}")
        return links, score


# ----------------------------------------------------------------------------- builders


def _window_stage(name: str, node: Layer, geo: Window, t: TensorType, cost: LayerCost,
                  in_elems: int) -> WindowStage:
    """A convolution's sliding window, its words as the MVU behind it takes them."""
    h, w, c = t.shape
    k = geo.kernel
    bits = 1 if t.bipolar else t.bits
    if cost.layout == "index":  # whole window columns, as few as load a window in time
        lanes = index_window_lanes(k, cost.nf * cost.sf)
    else:
        lanes = window_lanes(k, c, in_elems)
    return WindowStage(name=name, node=node.name, in_elems=c, in_bits=bits,
                       out_elems=lanes * k * c, out_bits=bits, h=h, w=w, c=c, elem_bits=bits,
                       kernel=k, stride=geo.stride, pad=geo.pad, pad_value=int(geo.pad_bit(t)),
                       lanes=lanes)


_MVU_STAGES: dict[str, type[MVUStage]] = {"index": IndexMVUStage, "group": GroupMVUStage,
                                          "serial": SerialMVUStage}


def _unit_fields(graph: Graph, link: _LayerLink, cost: LayerCost, weights: np.ndarray,
                 model: ResourceModel) -> dict[str, Any]:
    """The MVU's parameters: the folding's, the layer's types, the encoding's ``unit``
    (:func:`~.weights.unit_weights` of its weights, polarity, offsets or planes;
    ``Encoding.unit_params``, whose other keys replace the layer's, as a ternary layer's
    accumulator does), and the thresholds of a Threshold after it, as the encoding's unit
    compares them."""
    node = link.layer
    t, t_acc = graph.types[node.input], graph.types[node.name]
    fields: dict[str, Any] = dict(
        layout=cost.layout, pe=cost.pe, simd=cost.simd, nf=cost.nf, sf=cost.sf,
        acc_bits=t_acc.bits, acc_signed=t_acc.signed, input_bits=1 if t.bipolar else t.bits,
        bipolar=t.bipolar, thresholds=None, weight_memory=cost.weight_memory,
        register_reads=model.register_reads, credit=model.register_reads,
        block_pes=cost.block_pes, lutrom_max_depth=model.lutrom_max_depth, frames=cost.frames)
    params = node.encoding.unit_params(weights, t)
    fields["unit"] = unit_weights(params.pop("weights"), params.pop("polarity", None),
                                  params.pop("plane_scale", None), params.pop("offset", None),
                                  params.pop("offset_scale", 1))
    fields.update(params)
    if link.threshold is not None:
        fields["thresholds"] = node.encoding.unit_thresholds(
            np.asarray(link.threshold.thresholds), t)
    elif not node.encoding.UNIT_ACCUMULATES_IR:
        raise HardwareError(f"graph {graph.name!r}: {node.kind} {node.name!r} must feed a "
                            "Threshold: its unit accumulates another integer than the layer, "
                            "so only the thresholded bits are the layer's")
    return fields


def _layer_stages(graph: Graph, link: _LayerLink, cost: LayerCost, model: ResourceModel,
                  names: set[str]) -> list[Stage]:
    """A layer's stages: a convolution's sliding window, then its MVU."""
    node = link.layer
    t, t_acc = graph.types[node.input], graph.types[node.name]
    bits = 1 if t.bipolar else t.bits
    weights = node.encoding.planes()  # (planes, mh, mw)
    group = group_structure(weights[0])[0] if cost.layout == "group" else 0
    if cost.layout == "index" and max(1, int(weights[0].sum(axis=1).max())) % cost.simd:
        raise HardwareError("padded foldings (pe or simd not dividing the layer) are not "
                            "supported by the generator yet; fold without --allow-padding")
    in_elems = cost.simd * group if group else cost.simd  # the group layout: SIMD groups of G
    stages: list[Stage] = []
    if isinstance(node.geometry, Window):
        swu = _window_stage(sanitize(node.name, "swu", names), node, node.geometry, t, cost,
                            in_elems)
        stages.append(swu)
        if cost.layout == "index":
            in_elems = swu.out_elems
        weights = weights[..., window_order(node.geometry.kernel, t.shape[2])]
    elif cost.layout == "index":
        in_elems = vector_beats(weights.shape[-1], cost.nf * cost.sf)
    fields = _unit_fields(graph, link, cost, weights, model)
    if group:
        fields["group"] = group
    out_bits = 1 if link.threshold is not None else t_acc.bits
    stages.append(_MVU_STAGES.get(cost.layout, MVUStage)(
        name=sanitize(node.name, "mvu", names), node=node.name, in_elems=in_elems,
        in_bits=bits, out_elems=cost.pe, out_bits=out_bits, **fields))
    return stages


def _pool_stage(graph: Graph, node: MaxPool2d, names: set[str]) -> PoolStage:
    """A max pool: a pixel of all channels a word."""
    h, w, c = graph.types[node.input].shape
    return PoolStage(name=sanitize(node.name, "pool", names), node=node.name, in_elems=c,
                     in_bits=1, out_elems=c, out_bits=1, h=h, w=w, c=c, kernel=node.kernel,
                     stride=node.stride)


def _score_stage(graph: Graph, node: ScoreAffine, fast: bool, names: set[str]) -> ScoreStage:
    """The score/argmax stage: one accumulator a word in, one result beat a class out."""
    t_acc, t_score = graph.types[node.input], graph.types[node.name]
    return ScoreStage(name=sanitize(node.name, "score", names), node=node.name, in_elems=1,
                      in_bits=t_acc.bits, out_elems=1, out_bits=0,
                      scale=tuple(int(v) for v in node.scale),
                      bias=tuple(int(v) for v in node.bias), acc_bits=t_acc.bits,
                      acc_signed=t_acc.signed, score_bits=t_score.bits, split_products=fast)


def _requant_stage(graph: Graph, node: Requantize, lanes: int, names: set[str]) -> RequantStage:
    """A layer's accumulators onto the stream: the MVU's ``lanes`` channels a word."""
    t_acc, t = graph.types[node.input], graph.types[node.name]
    return RequantStage(name=sanitize(node.name, "requant", names), node=node.name,
                        in_elems=lanes, in_bits=t_acc.bits, out_elems=lanes, out_bits=t.bits,
                        c=t.shape[-1], acc_bits=t_acc.bits, acc_signed=t_acc.signed,
                        mult=tuple(int(v) for v in node.mult),
                        bias=tuple(int(v) for v in node.bias), shift=node.shift)


def _sign_stage(graph: Graph, node: Threshold, names: set[str]) -> SignStage:
    """The stream's sign before a layer: a pixel a word."""
    t = graph.types[node.input]
    c = t.shape[-1]
    return SignStage(name=sanitize(node.name, "sign", names), node=node.name, in_elems=c,
                     in_bits=t.bits, out_elems=c, out_bits=1,
                     thresholds=tuple(int(v) for v in node.thresholds))


def _residual_stage(graph: Graph, unit: ResidualUnit, cost: LayerCost, model: ResourceModel,
                    names: set[str]) -> ResidualStage:
    """A residual unit: its convolution's window and MVU inside one block."""
    window, mvu = _layer_stages(graph, _LayerLink(unit.layer, None), cost, model, names)
    if not isinstance(window, WindowStage) or type(mvu) is not MVUStage:
        raise HardwareError(f"graph {graph.name!r}: the convolution {unit.layer.name!r} of a "
                            f"residual unit needs the dense layout, not {cost.layout!r}")
    c_in = graph.types[unit.stream].shape[-1]
    t = graph.types[unit.add.name]
    return ResidualStage(name=sanitize(unit.add.name, "res", names), node=unit.add.name,
                         in_elems=c_in, in_bits=t.bits, out_elems=mvu.pe, out_bits=t.bits,
                         thresholds=tuple(int(v) for v in unit.sign.thresholds),
                         window=window, mvu=mvu, c_out=t.shape[-1],
                         mult=tuple(int(v) for v in unit.requant.mult),
                         bias=tuple(int(v) for v in unit.requant.bias),
                         shift=unit.requant.shift,
                         skip_depth=unit.skip_depth)


def build_plan(graph: Graph, folding: Folding, fifo_min: int = 2) -> Plan:
    """Stages, formats and FIFO depths of ``graph`` at ``folding``.

    FIFO depths start from the cost model's (``folding.fifos``) and are at least
    ``fifo_min``; a depth of 2 is a skid buffer (``hw.streams.SkidBuffer``, a word a
    cycle). In front of a serial composite MVU the FIFO holds one input vector plus two.

    Raises :class:`HardwareError` for graphs outside the supported chain, for
    several inputs/outputs and for padded foldings.
    """
    node = _input(graph, folding)
    links, score = _chain(graph, node)
    fold = {c.name: c for c in folding.layers}
    model = DEVICES[folding.device]
    # a fast fabric: block-RAM reads registered, MVUs stall by credits, DSP products split
    fast = model.register_reads
    fifo_min = max([fifo_min] + [int(f.get("depth", 0)) for f in folding.fifos])
    names: set[str] = set()
    stages: list[Stage] = []
    for link in links:
        if isinstance(link, MaxPool2d):
            stages.append(_pool_stage(graph, link, names))
        elif isinstance(link, Requantize):
            stages.append(_requant_stage(graph, link, stages[-1].out_elems, names))
        elif isinstance(link, Threshold):
            stages.append(_sign_stage(graph, link, names))
        elif isinstance(link, ResidualUnit):
            stages.append(_residual_stage(graph, link, fold[link.layer.name], model, names))
        else:
            stages.extend(_layer_stages(graph, link, fold[link.layer.name], model, names))
    stages.append(_score_stage(graph, score, fast, names))
    stages = [replace(s, fifo_depth=s.fifo_depth_at(fifo_min)) for s in stages]  # FIFO sizing
    t_in, classes = graph.types[node.name], len(score.scale)
    return Plan(graph=graph.name, top_name=sanitize(graph.name, "bitfold", set()),
                input_name=node.name, input_shape=tuple(t_in.shape),
                input_bits=1 if t_in.bipolar else t_in.bits, input_bipolar=t_in.bipolar,
                stages=tuple(stages), classes=classes, score_bits=graph.types[score.name].bits,
                class_bits=class_bits(classes), cycles_per_frame=folding.cycles_per_frame,
                folding={c.name: {"pe": c.pe, "simd": c.simd, "nf": c.nf, "sf": c.sf,
                                  **({"frames": c.frames} if c.frames > 1 else {}),
                                  "cycles": c.cycles} for c in folding.layers})
