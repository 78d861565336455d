"""``bitfold generate``: the IR and a folding -> ``BUILD/rtl/`` (Verilog and its manifest).

Writes, for a graph whose sanitized top name is ``TOP``:

* ``TOP_core.v``: the dataflow core, emitted by ``amaranth.back.verilog`` with
  the builtin Yosys and no source locations, so the same IR and folding give
  the same bytes. Every weight, index and threshold memory is initialized in it:
  the core is the one copy of the network's parameters, and no separate memory
  files are written (a second copy that no design reads would invite edits that
  change nothing);
* ``TOP.v``: the AXI-Stream-style wrapper (Jinja2, ``templates/wrapper.v.j2``);
* ``manifest.json``: ports, input beat format, output format, folding,
  expected cycles per frame, stages, files with their SHA-256, and the SHA-256
  of the ``graph.json`` and ``folding.json`` they were generated from
  (:func:`read_manifest` reads it back and refuses a manifest of another schema;
  :func:`check_rtl` checks the folder against it).

``rtl/`` and ``BUILD/folding.json`` are replaced as one unit
(:func:`bitfold.artifacts.replaced_dir`): an interrupted generate leaves the previous
folder and folding (or none). Should the two still disagree (a hard kill in the swap,
a hand edit, a later ``bitfold fold``), :func:`check_rtl` says so.

The output is narrow: per frame, ``classes`` beats of ``score_bits + class_bits``
bits, class 0 first. Beat ``c`` holds score ``c`` (signed) in the low bits and
the index of the highest score among classes ``0 .. c`` above it; ``m_axis_tlast``
marks the frame's last beat, whose index is the frame's class.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitfold.artifacts import ArtifactError, read_json, replaced_dir, sha256_file, write_json
from bitfold.compiler.folding import Folding, write_folding
from bitfold.compiler.ir import Graph

from .plan import Plan, build_plan

__all__ = ["MANIFEST_SCHEMA", "check_rtl", "generate", "manifest", "read_manifest", "render",
           "verilog_core"]

# 2: the narrow output, one beat per class with tlast; 3: file hashes, the graph and folding
# hashes, no memory files
MANIFEST_SCHEMA = 3
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
                            f"{MANIFEST_SCHEMA} (from an older bitfold); rerun `bitfold "
                            f"generate {build}`")
    return doc


def _rerun(build: Path) -> str:
    return f"rerun `bitfold generate {build} --folding {build}/folding.json`"


def check_rtl(rtl: str | Path, build: str | Path | None = None) -> dict[str, Any]:
    """The manifest of ``rtl``, once the folder is checked to be what ``bitfold generate`` wrote.

    Every file the manifest lists must be there with its SHA-256; with ``build``,
    ``BUILD/graph.json`` and ``BUILD/folding.json`` must be the ones it was generated
    from. Raises :class:`~bitfold.artifacts.ArtifactError` (one line, with the command
    that writes the folder again) otherwise.
    """
    rtl = Path(rtl)
    doc = read_manifest(rtl)
    where = Path(build) if build is not None else rtl.parent
    hashes = doc.get("sha256") or {}
    for name in doc["files"]:
        path = rtl / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (listed in {rtl}/manifest.json); "
                                f"{_rerun(where)}")
        if sha256_file(path) != hashes.get(name):
            raise ArtifactError(f"{path}: changed since bitfold generate wrote it (SHA-256 "
                                f"differs from {rtl}/manifest.json); {_rerun(where)}")
    if build is not None:
        for name, what in (("graph.json", "graph"), ("folding.json", "folding")):
            path = where / name
            if not path.is_file() or sha256_file(path) != doc.get(f"{what}_sha256"):
                raise ArtifactError(f"{rtl}: generated from another {name} than {path} (it "
                                    f"changed since, or generate was interrupted); "
                                    f"{_rerun(where)}")
    return doc


def manifest(plan: Plan, folding: Folding, hashes: dict[str, str], graph_sha256: str | None,
             folding_sha256: str | None) -> dict[str, Any]:
    """The ``manifest.json`` document of a generated accelerator.

    ``hashes`` maps each file of ``rtl/`` (but the manifest) to its SHA-256; the other
    two are those of the ``graph.json`` and ``folding.json`` it is generated from.
    """
    in_width = plan.in_elems * plan.stages[0].in_bits
    return {
        "schema": MANIFEST_SCHEMA,
        "graph": plan.graph,
        "top": plan.top_name,
        "core": f"{plan.top_name}_core",
        "files": sorted(hashes),
        "sha256": dict(sorted(hashes.items())),
        "graph_sha256": graph_sha256,
        "folding_sha256": folding_sha256,
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
                    "out_elems": s.out_elems, "fifo_depth": s.fifo_depth, **s.describe()}
                   for s in plan.stages],
    }


def generate(build: str | Path, graph: Graph, folding: Folding) -> dict[str, Any]:
    """Write ``BUILD/rtl/`` and ``BUILD/folding.json`` as one unit; return the manifest."""
    build = Path(build)
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
    data = {name: text.encode() for name, text in texts.items()}
    graph_json = build / "graph.json"
    graph_sha = sha256_file(graph_json) if graph_json.is_file() else None
    with replaced_dir(build / "rtl", beside=("folding.json",)) as rtl:
        folding_sha = sha256_file(write_folding(rtl, folding))  # moved to BUILD/ with the swap
        for name, raw in data.items():
            (rtl / name).write_bytes(raw)
        doc = manifest(plan, folding, {n: hashlib.sha256(b).hexdigest() for n, b in data.items()},
                       graph_sha, folding_sha)
        write_json(rtl / "manifest.json", doc)
    return doc
