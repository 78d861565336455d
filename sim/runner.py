"""Run the cocotb testbench of a generated accelerator with Icarus or Verilator.

:func:`simulate` is what the ``bitfold simulate`` verb and the tests call: it
writes the test vectors into the simulation folder, builds the design once per
simulator (``SIM_DIR/SIMULATOR/build/``, rebuilt only when the Verilog changed;
:mod:`bitfold.sim.tools`), runs :mod:`bitfold.sim.testbench` through cocotb's
runner and returns the report (also written as ``SIM_DIR/report.json``).

``SIM_DIR`` is replaced as one unit (:func:`bitfold.artifacts.replaced_dir`): the run
happens in a temporary sibling that is swapped in when it has a report, so an interrupted
or failed simulation leaves the previous whole folder (report, vectors, configuration and
result together) or none. The simulators' builds are a cache carried from the previous
folder into the new one (and back, when the run does not finish).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import held_signals, read_json, replaced_dir, sha256_file, write_json

from .frames import Vectors
from .tools import (
    SIMULATORS,
    STAMP,
    TIMESCALE,
    SimulationError,
    available,
    build_design,
    check_installed,
    cocotb_runner,
    simulator_path,
)

__all__ = ["SIMULATORS", "SimulationError", "available", "dataset_frames", "simulate",
           "simulator_path"]

REPORT_SCHEMA = 1


@contextmanager
def _carried_builds(old: Path, new: Path) -> Iterator[None]:
    """Move ``old/SIMULATOR/build`` (the simulators' build caches) into ``new``; if the block
    raises (an interrupt included), put back those still whole (a build that failed or was cut
    short has no stamp and stays, with its log)."""
    moved = []
    with held_signals():
        for simulator in SIMULATORS:
            if (old / simulator / "build").is_dir():
                (new / simulator).mkdir(parents=True, exist_ok=True)
                os.replace(old / simulator / "build", new / simulator / "build")
                moved.append(simulator)
    try:
        yield
    except BaseException:
        with held_signals():
            for simulator in moved:
                if (new / simulator / "build" / STAMP).is_file() and \
                        (old / simulator).is_dir() and not (old / simulator / "build").exists():
                    os.replace(new / simulator / "build", old / simulator / "build")
        raise


def dataset_frames(build: str | Path, n: int | None = None, dataset: str | None = None,
                   data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` (default all) test frames of ``BUILD``'s data set, in the IR's layout.

    The data set defaults to the one ``BUILD/compile.json`` records. Returns the
    frames, their labels and the data set's name. Needs the trainer (torch).
    """
    from bitfold.train.to_ir import build_test_set, nchw_to_ir

    data = build_test_set(build, dataset, data_dir)
    n = len(data.x_test) if n is None else min(n, len(data.x_test))
    return nchw_to_ir(data.x_test[:n].numpy()), data.y_test[:n].numpy(), data.name


def simulate(build: str | Path, frames: np.ndarray, *, simulator: str = "icarus",
             stalls: bool = False, p_idle: float = 0.3, p_stall: float = 0.3, seed: int = 0,
             sim_dir: str | Path | None = None, rtl: str | Path | None = None,
             expected: tuple[np.ndarray, np.ndarray] | None = None,
             labels: np.ndarray | None = None) -> dict[str, Any]:
    """Run ``frames`` through ``BUILD/rtl`` in an HDL simulator; check every output.

    Parameters
    ----------
    build : path
        Build folder with ``graph.json`` (the golden model) and ``rtl/`` (``bitfold generate``).
    frames : ndarray
        ``(N, *input shape)`` integer frames in the IR's layout (H, W, C).
    simulator : {"icarus", "verilator"}
    stalls : bool
        Random idle input cycles (``p_idle``) and output backpressure (``p_stall``).
    sim_dir : path, optional
        Where vectors, builds and ``report.json`` go (default ``BUILD/sim``); replaced as one
        unit, so give a folder of its own. A run that fails (the simulator cannot build the
        design or ends without a result) leaves its logs in ``SIM_DIR.failed``.
    rtl : path, optional
        The Verilog folder (default ``BUILD/rtl``).
    expected : (classes, scores), optional
        Golden outputs; computed with the packed executor when omitted.
    labels : ndarray, optional
        The frames' true classes: the report then has ``rtl_accuracy``, the
        fraction of frames whose class *from the RTL* is the label.

    Returns
    -------
    dict
        The report: ``frames``, ``mismatches``, ``cycles_per_frame``,
        ``analytic_cycles_per_frame``, ``latency_cycles``, ``simulator``,
        ``wall_s`` (all), ``build_s`` (compiling the design; 0 when up to date),
        ``sim_s`` (the simulator process, cocotb start-up included), ``stream_s``
        (the testbench streaming the frames), ``rtl_accuracy`` (with ``labels``), and on a
        mismatch ``first_mismatch``.
    """
    build = Path(build)
    rtl = Path(rtl) if rtl is not None else build / "rtl"
    sim_dir = Path(sim_dir) if sim_dir is not None else build / "sim"
    manifest, frames = _checked(build, rtl, simulator, np.asarray(frames))
    t_start = time.perf_counter()
    if expected is None:
        from bitfold.compiler.serialize import load_graph

        from .frames import expected_outputs

        expected = expected_outputs(load_graph(build), frames)
    vectors = Vectors(frames.reshape(len(frames), -1).astype(np.int64), *expected)
    p_idle, p_stall = (p_idle, p_stall) if stalls else (0.0, 0.0)
    return _replacing(sim_dir, t_start, lambda new: _simulate_in(
        new, build, rtl, manifest, simulator, vectors, p_idle, p_stall, seed, stalls, labels))


def _replacing(sim_dir: Path, t_start: float,
               run: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``run(new)`` in a new folder that replaces ``sim_dir`` once it has the report (with
    ``wall_s`` since ``t_start``); on a failure the new folder becomes ``SIM_DIR.failed``."""
    failed = sim_dir.with_name(sim_dir.name + ".failed")
    with replaced_dir(sim_dir) as new:
        try:
            with _carried_builds(sim_dir, new):
                report = run(new)
        except SimulationError as exc:  # keep its logs aside; the previous folder stays
            with held_signals():
                shutil.rmtree(failed, ignore_errors=True)
                new.rename(failed)
            raise SimulationError(str(exc).replace(str(new), str(failed))) from None
        report["wall_s"] = round(time.perf_counter() - t_start, 3)
        write_json(new / "report.json", report)
    shutil.rmtree(failed, ignore_errors=True)  # an older failure's logs, now outdated
    return report


def _checked(build: Path, rtl: Path, simulator: str,
             frames: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """``rtl``'s manifest (the folder whole, and generated from ``build``'s graph and folding)
    and ``frames``, once the simulator is known and installed and the frames fit the input."""
    if simulator not in SIMULATORS:
        raise SimulationError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if not (rtl / "manifest.json").is_file():
        raise SimulationError(f"{rtl}: no manifest.json; run `bitfold generate {build} "
                              "--target-fps F` first")
    from bitfold.hw.generate import check_rtl

    manifest = check_rtl(rtl, build)  # whole, and generated from this graph and folding
    check_installed(simulator)
    shape = tuple(manifest["input"]["shape"])
    if frames.ndim < 1 or len(frames) < 1 or frames.shape[1:] != shape:
        raise SimulationError(f"frames must be (N, {', '.join(map(str, shape))}) with N >= 1, "
                              f"not {frames.shape}")
    return manifest, frames


def _simulate_in(sim_dir: Path, build: Path, rtl: Path, manifest: dict[str, Any], simulator: str,
                 vectors: Vectors, p_idle: float, p_stall: float, seed: int, stalls: bool,
                 labels: np.ndarray | None) -> dict[str, Any]:
    """:func:`simulate`'s run, in the new folder ``sim_dir``; returns the report (no ``wall_s``)."""
    work = sim_dir / simulator
    work.mkdir(parents=True, exist_ok=True)
    vectors.save(work / "vectors.npz")
    result_path = work / "result.json"
    cycles = manifest["expected_cycles_per_frame"]
    write_json(work / "config.json",
               _testbench_config(manifest, len(vectors.classes), p_idle, p_stall, seed))

    build_s = build_design(rtl, manifest, simulator, work / "build")
    t_sim = time.perf_counter()
    _run(simulator, manifest, work)
    sim_s = time.perf_counter() - t_sim
    if not result_path.is_file():
        raise SimulationError(f"{simulator} ended without a result; see {work / 'sim.log'}")
    res = read_json(result_path)
    report = {
        "schema": REPORT_SCHEMA,
        "top": manifest["top"],
        # the design simulated: rtl/manifest.json holds the hash of every file, graph.json and
        # folding.json, so bench takes these cycles only for the rtl/ they were measured on
        "rtl_manifest_sha256": sha256_file(rtl / "manifest.json"),
        "simulator": simulator,
        "stalls": {"p_idle": p_idle, "p_stall": p_stall, "seed": seed} if stalls else None,
        "frames": res["frames"],
        "frames_expected": res["frames_expected"],
        "mismatches": res["mismatches"],
        "timed_out": res["timed_out"],
        "cycles_per_frame": res["cycles_per_frame"],
        "analytic_cycles_per_frame": cycles,
        "latency_cycles": res["latency_cycles"],
        "cycles": res["cycles"],
        "wall_s": None,
        "build_s": round(build_s, 3),
        "sim_s": round(sim_s, 3),
        "stream_s": round(res["sim_wall_s"], 3),
        "frames_per_s": round(res["frames"] / sim_s, 3),
        "cycles_per_s": round(res["cycles"] / sim_s, 1),
        "rtl_accuracy": None,
    }
    if labels is not None:  # the RTL's own classes against the labels (X or Z counts as wrong)
        got = res["classes"]
        report["rtl_accuracy"] = (sum(c == int(y) for c, y in zip(got, labels, strict=False))
                                  / len(got)) if got else None
    if res["first_mismatch"] is not None:
        first = res["first_mismatch"]
        report["first_mismatch"] = {
            **first,
            "hint": f"per-layer golden values: bitfold golden {build} --dump {first['frame'] + 1} "
                    f"(frame {first['frame']} of the test set) writes {build}/golden_dump.npz"}
    return report


def _testbench_config(manifest: dict[str, Any], n: int, p_idle: float, p_stall: float,
                      seed: int) -> dict[str, Any]:
    """The testbench's ``config.json`` for ``n`` frames: the streams, the stall pattern and a
    cycle limit well past what the design needs."""
    cycles = manifest["expected_cycles_per_frame"]
    return {  # paths relative to this file's folder, which is renamed into place
        "vectors": "vectors.npz", "result": "result.json",
        "input": manifest["input"], "output": manifest["output"],
        "p_idle": p_idle, "p_stall": p_stall, "seed": seed,
        "max_cycles": 10_000 + 4 * (cycles + manifest["input"]["beats_per_frame"])
        * (n + 4) * (1 + int(10 * max(p_idle, p_stall))),
    }


def _run(simulator: str, manifest: dict[str, Any], work: Path) -> None:
    runner = cocotb_runner(simulator)
    os.environ["PATH"] = simulator_path()
    env = {"BITFOLD_SIM_CONFIG": str((work / "config.json").resolve()),
           "PATH": simulator_path(), "COCOTB_LOG_LEVEL": "WARNING"}
    try:
        runner.test(test_module="bitfold.sim.testbench", hdl_toplevel=manifest["top"],
                    hdl_toplevel_lang="verilog",
                    build_dir=str(work / "build"), test_dir=str(work), extra_env=env,
                    timescale=TIMESCALE if simulator == "icarus" else None,
                    results_xml=str((work / "results.xml").resolve()),
                    log_file=str(work / "sim.log"))
    except (SystemExit, RuntimeError):  # the test failed, or the simulator did (cocotb_tools
        pass                             # exits or raises); the result file, or its absence, says
