"""Many generated accelerators in one simulator build, each checked against its golden outputs.

A Verilator build of a design costs tens of seconds, far more than streaming a
few dozen frames through a small one. :func:`simulate_many` puts many designs
(each a ``BUILD/rtl`` folder from ``bitfold generate``, unchanged) side by side
in one Verilog top, :func:`batch_top`, whose ports are each design's AXI-Stream
ports with a prefix ``nK_``; builds it once; and runs
:mod:`bitfold.sim.multi_testbench`, which drives every design concurrently with
its own frames, idle-input and backpressure patterns and golden expectations.
It returns one record per design.

The generated modules do not clash: a core's modules are all named after its
top (``TOP``, ``TOP_core`` and ``\\TOP_core.STAGE``), and the top is the graph's
sanitized name (:func:`bitfold.hw.names.sanitize`), so designs of graphs with
distinct names have distinct modules. :func:`module_names` reads them back and
:func:`batch_top` refuses a batch in which two sources define the same module.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitfold.artifacts import read_json, write_json

from .frames import Vectors
from .tools import (
    SIMULATORS,
    TIMESCALE,
    SimulationError,
    build_design,
    check_installed,
    cocotb_runner,
    simulator_path,
)

__all__ = ["BATCH_TOP", "PORTS", "Design", "batch_top", "keep_runtime", "module_names",
           "simulate_many"]

BATCH_TOP = "bitfold_batch"
PORTS = ("s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "m_axis_tdata", "m_axis_tlast",
         "m_axis_tvalid", "m_axis_tready")  # each design's, as TOP.v names them
_MODULE = re.compile(r"^\s*module\s+(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)", re.MULTILINE)


@dataclass
class Design:
    """One design of a batch: its generated folder, vectors and stall patterns.

    ``vectors`` may hold more frames than expected results (``len(frames) >
    len(classes)``) or fewer: the testbench sends every frame and expects every
    result, so a design then shows as adding or losing frames (the tests use it).
    """

    name: str
    rtl: Path
    vectors: Vectors
    p_idle: float = 0.0
    p_stall: float = 0.0
    idle_burst: float = 1.0
    stall_burst: float = 1.0
    seed: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from bitfold.hw.generate import check_rtl

        self.rtl = Path(self.rtl)
        if not self.manifest:
            self.manifest = check_rtl(self.rtl)  # whole, as bitfold generate wrote it

    def sources(self) -> list[Path]:
        return [self.rtl / f for f in self.manifest["files"] if f.endswith(".v")]

    def stuck_cycles(self) -> int:
        """Cycles without a beat in or out after which the design is taken to be stuck."""
        m = self.manifest
        cycles = m["expected_cycles_per_frame"] + m["input"]["beats_per_frame"] \
            + m["output"]["beats_per_frame"]
        return int(2_000 + 20 * cycles * (1 + self.idle_burst) * (1 + self.stall_burst))

    def max_cycles(self) -> int:
        """A generous cycle limit, as :func:`bitfold.sim.runner.simulate` sets one."""
        m = self.manifest
        cycles = m["expected_cycles_per_frame"] + m["input"]["beats_per_frame"] \
            + m["output"]["beats_per_frame"]
        slow = (1 + self.idle_burst / 4) * (1 + self.stall_burst / 4)
        return int(10_000 + 4 * cycles * (len(self.vectors.frames) + 4)
                   * (1 + int(10 * max(self.p_idle, self.p_stall))) * slow)


def module_names(text: str) -> list[str]:
    """The names of the modules a Verilog source defines (escaped names without the ``\\``)."""
    return [m.lstrip("\\") for m in _MODULE.findall(text)]


def batch_top(designs: list[Design], top: str = BATCH_TOP) -> str:
    """The Verilog of one top holding every design, design ``K``'s ports prefixed ``nK_``.

    Raises :class:`SimulationError` if two sources (or the top) define the same module.
    """
    seen: Counter[str] = Counter([top])
    for d in designs:
        for src in d.sources():
            seen.update(module_names(src.read_text()))
    clash = sorted(n for n, c in seen.items() if c > 1)
    if clash:
        raise SimulationError(f"modules defined more than once in the batch: "
                              f"{', '.join(clash[:8])}; give the graphs distinct names")
    ports = ["input  wire aclk", "input  wire aresetn"]
    body = []
    for k, d in enumerate(designs):
        spec = d.manifest["ports"]
        for p in PORTS:
            w = spec[p]["width"]
            rng = f"[{w - 1}:0] " if w > 1 else ""
            way = {"in": "input ", "out": "output"}[spec[p]["direction"]]
            ports.append(f"{way} wire {rng}n{k}_{p}")
        conns = ",\n".join(f"        .{p}(n{k}_{p})" for p in PORTS)
        body.append(f"    // n{k}: {re.sub(r'[^A-Za-z0-9_.-]', '_', d.name)[:64]}\n"
                    f"    {d.manifest['top']} u{k} (\n        .aclk(aclk),\n"
                    f"        .aresetn(aresetn),\n{conns}\n    );")
    head = ",\n    ".join(ports)
    return (f"// {top}: {len(designs)} bitfold accelerators side by side (generated by "
            f"bitfold.sim.multi; do not edit)\n`default_nettype none\nmodule {top} (\n    {head}\n);\n"
            + "\n".join(body) + "\nendmodule\n`default_nettype wire\n")


def simulate_many(designs: list[Design], work: str | Path, *, simulator: str = "verilator",
                  top: str = BATCH_TOP, drain_cycles: int | None = None,
                  runtime_from: Path | None = None) -> dict[str, Any]:
    """Build ``designs`` into one top in ``work`` and stream every design's frames.

    Returns ``{"designs": [...], "build_s", "sim_s", "stream_s", "cycles"}``: per design
    (in order) ``frames``, ``frames_expected``, ``mismatches``, ``first_mismatch``,
    ``extra_beats`` (beats after its last expected frame, within ``drain_cycles``),
    ``partial_beats`` (of an unfinished frame), ``timed_out`` (frames lost: fewer results
    than expected by its cycle limit), ``stuck`` (stopped early: no beat in or out for
    :meth:`Design.stuck_cycles`), ``cycles``, ``cycles_per_frame``,
    ``latency_cycles`` and ``classes``. Nothing is raised for a design that differs: the
    caller reads the records. ``runtime_from``: a folder with a previous Verilator build's
    runtime objects (:func:`keep_runtime`), so that this build does not compile them again.
    """
    if simulator not in SIMULATORS:
        raise SimulationError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if not designs:
        raise SimulationError("no designs to simulate")
    check_installed(simulator)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    top_v = work / f"{top}.v"
    text = batch_top(designs, top)
    if not top_v.is_file() or top_v.read_text() != text:
        top_v.write_text(text)
    sources = [top_v] + [s for d in designs for s in d.sources()]
    build_s = build_design(work, {"top": top}, simulator, work / "build", sources=sources,
                           runtime_from=runtime_from)

    cfgs = [_design_config(k, d, work) for k, d in enumerate(designs)]
    if drain_cycles is None:  # long enough for a frame to pass through the slowest design twice
        drain_cycles = 200 + 4 * max(d.manifest["expected_cycles_per_frame"]
                                     + d.manifest["input"]["beats_per_frame"]
                                     + d.manifest["output"]["beats_per_frame"] for d in designs)
    result = work / "result.json"
    result.unlink(missing_ok=True)
    config = {"designs": cfgs, "drain_cycles": drain_cycles, "result": str(result.resolve())}
    write_json(work / "config.json", config)
    t = time.perf_counter()
    _run(simulator, top, work)
    sim_s = time.perf_counter() - t
    if not result.is_file():
        raise SimulationError(f"{simulator} ended without a result; see {work / 'sim.log'}")
    res = read_json(result)
    return {"designs": res["designs"], "cycles": res["cycles"], "build_s": round(build_s, 3),
            "sim_s": round(sim_s, 3), "stream_s": round(res["sim_wall_s"], 3),
            "drain_cycles": drain_cycles, "simulator": simulator}


def _design_config(k: int, d: Design, work: Path) -> dict[str, Any]:
    """Design ``k``'s part of the testbench configuration; its vectors saved under ``work``."""
    shape = tuple(d.manifest["input"]["shape"])
    elems = 1
    for s in shape:
        elems *= s
    if d.vectors.frames.ndim != 2 or d.vectors.frames.shape[1] != elems:
        raise SimulationError(f"{d.name}: frames must be (N, {elems}) flattened, not "
                              f"{d.vectors.frames.shape}")
    vec = d.vectors.save(work / "vectors" / f"n{k}.npz")
    return {"prefix": f"n{k}", "name": d.name, "vectors": str(vec.resolve()),
            "input": d.manifest["input"], "output": d.manifest["output"],
            "p_idle": d.p_idle, "p_stall": d.p_stall, "idle_burst": d.idle_burst,
            "stall_burst": d.stall_burst, "seed": d.seed,
            "max_cycles": d.max_cycles(), "stuck_cycles": d.stuck_cycles()}


def keep_runtime(build: Path, dest: Path) -> None:
    """Copy a Verilator build's runtime objects and its recipe to ``dest`` (for ``runtime_from``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in [*build.glob("verilated*.o"), *build.glob("verilated*.d"),
              build / "bitfold-recipe.txt"]:
        if f.is_file():
            shutil.copy2(f, dest)


def _run(simulator: str, top: str, work: Path) -> None:
    runner = cocotb_runner(simulator)
    os.environ["PATH"] = simulator_path()
    env = {"BITFOLD_SIM_CONFIG": str((work / "config.json").resolve()),
           "PATH": simulator_path(), "COCOTB_LOG_LEVEL": "WARNING"}
    try:
        runner.test(test_module="bitfold.sim.multi_testbench", hdl_toplevel=top,
                    hdl_toplevel_lang="verilog", build_dir=str(work / "build"),
                    test_dir=str(work), extra_env=env,
                    timescale=TIMESCALE if simulator == "icarus" else None,
                    results_xml=str((work / "results.xml").resolve()),
                    log_file=str(work / "sim.log"))
    except SystemExit:  # cocotb_tools exits when a test failed; the result file says why
        pass
