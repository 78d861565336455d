"""A board build's ``report.json``: nextpnr's figures, the clock, and the bitstream's SHA-256.

:func:`write_report` writes it from nextpnr's ``--report`` and Yosys' log;
:func:`read_board_report` reads it back only beside the bitstream it names, so a report is
never quoted for another bitstream (issue 15: an interrupted build once left the old report
beside no bitstream, and ``bench`` quoted its Fmax).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bitfold.artifacts import ArtifactError, read_json, sha256_file, write_json
from bitfold.compiler.folding import Folding

from .pll import BoardClock
from .targets import Board

__all__ = ["BOARD_REPORT_SCHEMA", "parse_build", "parse_nextpnr_report", "read_board_report",
           "write_report", "yosys_ffs"]

BOARD_REPORT_SCHEMA = 1


_LUT_CELLS = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}
_BRAM_CELLS = {"ice40": "ICESTORM_RAM", "ecp5": "DP16KD"}


def parse_nextpnr_report(doc: dict[str, Any], family: str, ffs: int | None = None) -> dict:
    """Utilization and Fmax from a nextpnr ``--report`` document.

    ``luts`` is nextpnr's logic cells (iCE40 ``ICESTORM_LC``: a LUT4 and its FF;
    ECP5 ``TRELLIS_COMB``); ``ffs`` is ``TRELLIS_FF`` on ECP5 and, as iCE40's
    report has no FF count, the synthesized ``SB_DFF*`` cells passed in.
    ``fmax_mhz`` is the slowest clock's achieved frequency.
    """
    util = doc.get("utilization", {})

    def used(cell: str) -> int:
        return int(util.get(cell, {}).get("used", 0))

    fmax = doc.get("fmax", {})
    if not fmax:
        raise ValueError("nextpnr report has no fmax entry (was a clock constrained?)")
    slowest = min(fmax.values(), key=lambda f: f["achieved"])
    return {"luts": used(_LUT_CELLS[family]),
            "ffs": used("TRELLIS_FF") if family == "ecp5" else ffs,
            "brams": used(_BRAM_CELLS[family]),
            "fmax_mhz": round(float(slowest["achieved"]), 2),
            "utilization": {k: {"used": v.get("used"), "available": v.get("available")}
                            for k, v in sorted(util.items())}}


def yosys_ffs(rpt: str) -> int | None:
    """Flip-flop cells in the last design summary of a Yosys ``stat`` log."""
    for block in reversed(re.split(r"^=== .* ===\s*$", rpt, flags=re.M)):
        counts = [int(m.group(1)) for m in
                  re.finditer(r"^\s+(\d+)\s+(?:\S+\s+)?(?:SB_DFF\w*|TRELLIS_FF)\s*$", block, re.M)]
        if counts:
            return sum(counts)
    return None


def parse_build(out: Path, board: Board) -> dict[str, Any]:
    doc = json.loads((out / "report_nextpnr.json").read_text())
    rpt = (out / "top.rpt").read_text(errors="replace") if (out / "top.rpt").exists() else ""
    return parse_nextpnr_report(doc, board.family, yosys_ffs(rpt))


def write_report(out: Path, board: Board, build_s: float, seed: int, top: str,
                 folding: Folding, clock: BoardClock | None = None,
                 attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``report.json`` from nextpnr's report, the bitstream, its clock and the build time.

    ``clock_mhz`` is the clock the bitstream runs at (``target_mhz`` too, the
    constraint nextpnr met or missed), beside nextpnr's ``fmax_mhz``, the
    ``oscillator_mhz`` and the ``pll`` parameters (None: the oscillator itself).
    ``attempts`` lists each build's clock and Fmax when the flow rebuilt.
    """
    clock = clock or BoardClock(board.clock_mhz, board.clock_mhz, None)
    parsed = parse_build(out, board)
    bitstream = out / f"top.{board.bitstream_ext}"
    report = {"schema": BOARD_REPORT_SCHEMA, "board": board.name, "device": board.device,
              "top": top, "seed": seed, **{k: parsed[k] for k in ("luts", "ffs", "brams")},
              "fmax_mhz": parsed["fmax_mhz"], **clock.to_json(), "target_mhz": clock.mhz,
              "timing_met": parsed["fmax_mhz"] >= clock.mhz,
              "attempts": attempts or [{"clock_mhz": clock.mhz, "fmax_mhz": parsed["fmax_mhz"],
                                        "timing_met": parsed["fmax_mhz"] >= clock.mhz}],
              "bitstream": bitstream.name, "bitstream_sha256": sha256_file(bitstream),
              "build_s": round(build_s, 1),
              "estimate": {"luts": folding.total("luts"), "brams": folding.total("brams"),
                           "cycles_per_frame": folding.cycles_per_frame},
              "utilization": parsed["utilization"]}
    write_json(out / "report.json", report)
    return report


def read_board_report(folder: str | Path) -> dict[str, Any]:
    """``FOLDER/report.json`` of a board build, checked against the bitstream beside it.

    Raises :class:`~bitfold.artifacts.ArtifactError` (one line, with the command that
    rebuilds it) when the report names no bitstream hash, its bitstream is missing, or
    the bitstream on disk is not the one the report describes.
    """
    folder = Path(folder)
    path = folder / "report.json"
    report = read_json(path, BOARD_REPORT_SCHEMA)
    name, sha = report.get("bitstream"), report.get("bitstream_sha256")
    again = (f"rebuild it: `bitfold build {folder.parent.parent} --board "
             f"{report.get('board', folder.name)}"
             f"{' --selftest' if report.get('top') == 'selftest' else ''}`")
    if not isinstance(name, str) or not isinstance(sha, str) or Path(name).name != name:
        raise ArtifactError(f"{path}: names no bitstream and its SHA-256 (written by an older "
                            f"bitfold); {again}")
    bitstream = folder / name
    if not bitstream.is_file():
        raise ArtifactError(f"{path}: its bitstream {bitstream} is missing; {again}")
    if sha256_file(bitstream) != sha:
        raise ArtifactError(f"{path}: describes another bitstream than {bitstream} (SHA-256 "
                            f"differs), so its Fmax and resources are not that bitstream's; "
                            f"{again}")
    return report
