"""The cost model against real board builds: estimated vs built LUTs, flip-flops, block RAMs.

A calibration set of designs (both families; MLP and CNN; small and large
foldings; sparse and composite), each one ``bitfold`` command chain: train on
the embedded digits (seconds) or reuse a trained run, compile, fold for a LUT
budget with the board's resource model, and ``bitfold build`` the UART bridge
top. The build's ``report.json`` holds nextpnr's counts (iCE40: logic cells;
ECP5: LUT4 cells) and the estimate it was built from, plus the board top's
allowance (``boards.flow.TOP_LUTS``). Prints one row per design and the ratio
built / estimate::

    .venv/bin/python -m benchmarks.cost_vs_built                 # every design
    .venv/bin/python -m benchmarks.cost_vs_built --designs mlp-ice40-small sfc-ecp5-mid

Builds are reused when their report is newer than the folding (``--force`` rebuilds).
Writes ``OUT/table.json`` (default ``OUT`` = ``runs/cost_vs_built``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bitfold.cli import main as bitfold

TRAIN = ["--dataset", "digits", "--epochs", "3", "--quiet"]


@dataclass(frozen=True)
class Design:
    """One calibration design: a network (trained here or given), a board, a LUT budget."""

    name: str
    train: tuple[str, ...]  # trainer options, or () for a run folder given by --sfc-run
    board: str
    max_luts: int


DESIGNS = (
    Design("mlp-ice40-small", ("--model", "mlp-digits", *TRAIN), "icebreaker", 600),
    Design("mlp-ice40-large", ("--model", "mlp-digits", *TRAIN), "icebreaker", 2500),
    Design("cnn-ice40", ("--model", "cnn-digits", *TRAIN), "icebreaker", 2500),
    Design("sparse-ice40", ("--model", "mlp-digits", "--quantizer", "sparse", "--sparsity", "0.5",
                            *TRAIN), "icebreaker", 1500),
    Design("mlp-ecp5-small", ("--model", "mlp-digits", *TRAIN), "ulx3s-85f", 1000),
    Design("mlp-ecp5-large", ("--model", "mlp-digits", *TRAIN), "ulx3s-85f", 8000),
    Design("cnn-ecp5", ("--model", "cnn-digits", *TRAIN), "ulx3s-85f", 12000),
    Design("composite-ecp5", ("--model", "mlp-digits", "--quantizer", "composite", "--bases",
                              "2", *TRAIN), "ulx3s-85f", 4000),
    Design("sparse-ecp5", ("--model", "mlp-digits", "--quantizer", "sparse", "--sparsity", "0.75",
                           "--sparse-group", "4", *TRAIN), "ulx3s-85f", 3000),
    Design("sfc-ecp5-mid", (), "ulx3s-85f", 12000),
    Design("sfc-ecp5-large", (), "ulx3s-85f", 30000),
)


def _step(argv: list[str]) -> None:
    print("$ bitfold " + " ".join(argv), flush=True)
    code = bitfold(argv)
    if code:
        raise SystemExit(f"cost_vs_built: `bitfold {' '.join(argv)}` failed with exit {code}")


def measure(design: Design, out: Path, sfc_run: Path | None, force: bool) -> dict:
    """Train (or reuse), compile, fold and build ``design``; its estimate and built counts."""
    from bitfold.boards.targets import get_board

    board = get_board(design.board)
    run = out / design.name / "run"
    if design.train:
        if not (run / "checkpoint.pt").is_file():
            _step(["train", *design.train, "--out", str(run)])
    elif sfc_run is None:
        raise SystemExit(f"cost_vs_built: {design.name} needs a trained sfc run (--sfc-run RUN)")
    else:
        run = sfc_run
    build = out / design.name / "build"
    if not (build / "graph.json").is_file():
        _step(["compile", str(run), "--out", str(build)])
    _step(["fold", str(build), "--max-luts", str(design.max_luts), "--device", board.family,
           "--max-brams", str(board.brams)])
    report_path = build / "boards" / board.name / "report.json"
    folding = build / "folding.json"
    if force or not report_path.is_file() or report_path.stat().st_mtime < folding.stat().st_mtime:
        start = time.monotonic()
        _step(["build", str(build), "--board", board.name])
        print(f"{design.name}: built in {time.monotonic() - start:.0f} s", flush=True)
    report = json.loads(report_path.read_text())
    from bitfold.boards.flow import TOP_LUTS

    est = report["estimate"]
    fold_doc = json.loads(folding.read_text())
    return {"design": design.name, "board": board.name, "family": board.family,
            "est_luts": est["luts"] + TOP_LUTS, "luts": report["luts"],
            "est_ffs": fold_doc.get("totals", {}).get("ffs"), "ffs": report["ffs"],
            "est_brams": est["brams"], "brams": report["brams"],
            "cycles_per_frame": est["cycles_per_frame"],
            "clock_mhz": report.get("clock_mhz"), "fmax_mhz": report["fmax_mhz"],
            "build_s": report.get("build_s")}


def _ratio(built, est) -> str:
    return f"{built / est:.2f}" if built and est else "-"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--designs", nargs="*", choices=[d.name for d in DESIGNS])
    ap.add_argument("--sfc-run", type=Path, help="a trained sfc run (MNIST) for the sfc designs")
    ap.add_argument("--out", type=Path, default=Path("runs/cost_vs_built"))
    ap.add_argument("--force", action="store_true", help="rebuild every bitstream")
    args = ap.parse_args(argv)
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    chosen = [d for d in DESIGNS if not args.designs or d.name in args.designs]
    rows = [measure(d, args.out, args.sfc_run, args.force) for d in chosen]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nload average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print("| design | board | cycles/frame | LUTs est / built (ratio) | FFs est / built (ratio) "
          "| BRAM est / built | clock / Fmax MHz |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['design']} | {r['board']} | {r['cycles_per_frame']} | {r['est_luts']} / "
              f"{r['luts']} ({_ratio(r['luts'], r['est_luts'])}) | {r['est_ffs']} / {r['ffs']} "
              f"({_ratio(r['ffs'], r['est_ffs'])}) | {r['est_brams']} / {r['brams']} | "
              f"{r['clock_mhz']} / {r['fmax_mhz']} |")


if __name__ == "__main__":
    main()
