"""``bitfold generate``: the IR and a folding -> ``BUILD/rtl/`` (Verilog, memories, manifest).

Writes, for a graph whose sanitized top name is ``TOP``:

* ``TOP_core.v``: the dataflow core, emitted by ``amaranth.back.verilog`` with
  the builtin Yosys and no source locations, so the same IR and folding give
  the same bytes;
* ``TOP.v``: the AXI-Stream-style wrapper (Jinja2, ``templates/wrapper.v.j2``);
* ``mem/STAGE_weights.mem`` (``mem/STAGE_indices.mem`` for a sparse layer in the
  index layout), ``mem/STAGE_thresholds.mem``: every MVU's memory contents in
  ``$readmemh`` form (the core has them built in; these are for inspection and
  other flows);
* ``manifest.json``: ports, input beat format, output format, folding,
  expected cycles per frame, stages and files (:func:`read_manifest` reads it
  back and refuses a manifest of another schema).

The output is narrow: per frame, ``classes`` beats of ``score_bits + class_bits``
bits, class 0 first. Beat ``c`` holds score ``c`` (signed) in the low bits and
the index of the highest score among classes ``0 .. c`` above it; ``m_axis_tlast``
marks the frame's last beat, whose index is the frame's class.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bitfold.artifacts import ArtifactError, atomic_write, read_json, write_json
from bitfold.compiler.folding import Folding, write_folding
from bitfold.compiler.ir import Graph

from .plan import Plan, build_plan

__all__ = ["MANIFEST_SCHEMA", "generate", "manifest", "read_manifest", "render", "verilog_core"]

MANIFEST_SCHEMA = 2  # 2: the narrow output, one beat per class with tlast
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class WrapperContext:
    """What ``wrapper.v.j2`` renders from."""

    top: str
    core: str
    graph_comment: str
    in_elems: int
    in_bits: int
    in_width: int
    beats_per_frame: int
    out_width: int
    class_bits: int
    classes: int
    score_bits: int
    cycles_per_frame: int


@dataclass(frozen=True)
class MemoryContext:
    """What ``memory.mem.j2`` renders from."""

    title: str
    width: int
    depth: int
    words: tuple[str, ...]


def render(template: str, ctx: Any) -> str:
    """Render ``templates/TEMPLATE`` with ``ctx`` (undefined names are errors)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.get_template(template).render(ctx=ctx)


@contextmanager
def without_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off while a design is elaborated and converted.

    Elaboration makes millions of small, long-lived objects; each full collection walks
    them all, so with the collector on, conversion time grows with the square of the
    design (the 1M frames/s sfc core: over 20 CPU-minutes, 114 CPU-seconds without).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def verilog_core(plan: Plan) -> str:
    """The core's Verilog, emitted with the builtin Yosys (reproducible bytes)."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import verilog

    from .top import Dataflow

    with without_gc():
        return verilog.convert(Dataflow(plan), name=f"{plan.top_name}_core", emit_src=False)


def _out_width(plan: Plan) -> int:
    return plan.score_bits + plan.class_bits


def read_manifest(rtl: str | Path) -> dict[str, Any]:
    """``RTL/manifest.json``; refuses one of another schema (from an older ``bitfold generate``)."""
    path = Path(rtl) / "manifest.json"
    doc = read_json(path)
    if doc.get("schema") != MANIFEST_SCHEMA:
        build = Path(rtl).parent
        raise ArtifactError(f"{path}: manifest schema {doc.get('schema')!r}, this bitfold reads "
                            f"{MANIFEST_SCHEMA} (the output format changed); rerun `bitfold "
                            f"generate {build}`")
    return doc


def _memories(plan: Plan) -> dict[str, MemoryContext]:
    from .group_mvu import group_words
    from .index_mvu import index_words
    from .memwords import offset_words, threshold_words, weight_words

    mems = {}
    for stage in plan.stages:
        if stage.kind != "mvu":
            continue
        p = stage.params
        pe, simd = p["pe"], p["simd"]
        nf, sf = p["weights"].shape[-2] // pe, p["weights"].shape[-1] // simd
        planes = p["weights"].shape[0] if p["weights"].ndim == 3 else 1
        if p.get("layout") == "index":
            ib, slot, words = index_words(p["weights"], pe, simd)
            sf = len(words) // nf
            valid = ", then a valid bit" if slot > ib else ""
            mems[f"{stage.name}_indices.mem"] = _memory(
                f"{stage.node} kept-input positions: slot p*{simd}+s ({slot} bits: {ib}-bit "
                f"position{valid}) of address nf*{sf}+sf is kept input sf*{simd}+s of neuron "
                f"nf*{pe}+p", pe * simd * slot, words)
        elif p.get("layout") == "group":
            g = p["group"]
            n, slot, ragged, words = group_words(p["weights"], g, pe, simd)
            sf = len(words) // nf
            valid = ", then a valid bit" if ragged else ""
            mems[f"{stage.name}_groups.mem"] = _memory(
                f"{stage.node} kept positions in groups of {g}: slot (p*{simd}+s)*{n}+j "
                f"({slot} bits: the position in the group{valid}) of address nf*{sf}+sf is "
                f"kept input j of group sf*{simd}+s of neuron nf*{pe}+p", pe * simd * n * slot,
                words)
        elif p.get("layout") == "serial":
            from .serial_mvu import serial_weight_words

            mems[f"{stage.name}_weights.mem"] = _memory(
                f"{stage.node} weights, planes serial: bit p*{simd}+s of address "
                f"(nf*{sf}+sf)*{planes}+k is plane k (of {planes}), neuron nf*{pe}+p, input "
                f"sf*{simd}+s", pe * simd, serial_weight_words(p["weights"], pe, simd))
        else:
            words = weight_words(p["weights"], pe, simd)
            what = "mask" if p.get("polarity") is not None else "weights"
            mems[f"{stage.name}_weights.mem"] = _memory(
                f"{stage.node} {what}: bit k*{pe * simd}+p*{simd}+s of address nf*{sf}+sf is "
                f"plane k (of {planes}), neuron nf*{pe}+p, input sf*{simd}+s",
                planes * pe * simd, words)
        if p.get("offset") is not None:
            width, owords = offset_words(p["offset"], pe)
            mems[f"{stage.name}_offsets.mem"] = _memory(
                f"{stage.node} domain offsets (times the input's sum; the binary accumulator "
                f"times {p['offset_scale']}): {width}-bit two's complement per neuron, "
                f"fold nf (of {nf}) at address nf", pe * width, owords)
        if p["thresholds"] is not None:
            width, twords = threshold_words(p["thresholds"], pe, p["acc_bits"])
            mems[f"{stage.name}_thresholds.mem"] = _memory(
                f"{stage.node} thresholds: {width}-bit two's complement per neuron, "
                f"fold nf (of {nf}) at address nf", pe * width, twords)
    return mems


def _memory(title: str, width: int, words: list[int]) -> MemoryContext:
    digits = (width + 3) // 4
    return MemoryContext(title, width, len(words), tuple(f"{w:0{digits}x}" for w in words))


def manifest(plan: Plan, folding: Folding, files: list[str]) -> dict[str, Any]:
    """The ``manifest.json`` document of a generated accelerator."""
    in_width = plan.in_elems * plan.stages[0].in_bits
    cost = {c.name: c for c in folding.layers}  # each MVU's layout and weight memory
    return {
        "schema": MANIFEST_SCHEMA,
        "graph": plan.graph,
        "top": plan.top_name,
        "core": f"{plan.top_name}_core",
        "files": files,
        "clock": {"port": "aclk", "reset": "aresetn", "reset_active_low": True,
                  "reset_synchronous": True, "clock_mhz": folding.clock_mhz},
        "ports": {
            "s_axis_tdata": {"direction": "in", "width": in_width},
            "s_axis_tvalid": {"direction": "in", "width": 1},
            "s_axis_tready": {"direction": "out", "width": 1},
            "m_axis_tdata": {"direction": "out", "width": _out_width(plan)},
            "m_axis_tlast": {"direction": "out", "width": 1},
            "m_axis_tvalid": {"direction": "out", "width": 1},
            "m_axis_tready": {"direction": "in", "width": 1},
        },
        "input": {
            "tensor": plan.input_name,
            "shape": list(plan.input_shape),
            "element_bits": plan.input_bits,
            "bipolar": plan.input_bipolar,
            "elements_per_beat": plan.in_elems,
            "beats_per_frame": plan.beats_per_frame,
            "order": "frame flattened in (H, W, C) row-major order; element i of a beat at "
                     "tdata[i*element_bits +: element_bits]; bipolar elements as bits (1 = +1)",
        },
        "output": {
            "beats_per_frame": plan.classes,
            "score": {"lsb": 0, "bits": plan.score_bits, "signed": True},
            "class": {"lsb": plan.score_bits, "bits": plan.class_bits},
            "last": "m_axis_tlast",
            "order": "beat c carries score c (class 0 first) and the index of the highest of "
                     "scores 0..c (ties to the lowest); m_axis_tlast marks the last beat, "
                     "whose index is the frame's class",
        },
        "folding": {"clock_mhz": folding.clock_mhz, "device": folding.device,
                    "layers": plan.folding},
        "expected_cycles_per_frame": plan.cycles_per_frame,
        "bottleneck": folding.bottleneck,
        "stages": [{"name": s.name, "kind": s.kind, "node": s.node, "in_elems": s.in_elems,
                    "out_elems": s.out_elems, "fifo_depth": s.fifo_depth,
                    **({"weight_memory": cost[s.node].weight_memory,
                        "layout": cost[s.node].layout} if s.kind == "mvu" else {})}
                   for s in plan.stages],
    }


def generate(build: str | Path, graph: Graph, folding: Folding) -> dict[str, Any]:
    """Write ``BUILD/rtl/`` and ``BUILD/folding.json``; return the manifest."""
    build = Path(build)
    rtl = build / "rtl"
    plan = build_plan(graph, folding)
    texts: dict[str, str] = {f"{plan.top_name}_core.v": verilog_core(plan)}
    ctx = WrapperContext(
        top=plan.top_name, core=f"{plan.top_name}_core",
        graph_comment=re.sub(r"[^A-Za-z0-9_.-]", "_", plan.graph)[:64],
        in_elems=plan.in_elems, in_bits=plan.stages[0].in_bits,
        in_width=plan.in_elems * plan.stages[0].in_bits, beats_per_frame=plan.beats_per_frame,
        out_width=_out_width(plan), class_bits=plan.class_bits, classes=plan.classes,
        score_bits=plan.score_bits, cycles_per_frame=plan.cycles_per_frame)
    texts[f"{plan.top_name}.v"] = render("wrapper.v.j2", ctx)
    for name, mem in _memories(plan).items():
        texts[f"mem/{name}"] = render("memory.mem.j2", mem)
    for name, text in texts.items():
        atomic_write(rtl / name, partial(Path.write_text, data=text))
    for old in [*rtl.glob("*.v"), *rtl.glob("mem/*.mem")]:  # from an earlier generate
        if old.relative_to(rtl).as_posix() not in texts:
            old.unlink()
    doc = manifest(plan, folding, sorted(texts))
    write_json(rtl / "manifest.json", doc)
    write_folding(build, folding)
    return doc
