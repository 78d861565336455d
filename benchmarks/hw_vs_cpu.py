"""The accelerator against every CPU baseline, for several trained networks, in one run.

For each network (a trained run folder) and board: compile, fold for the board
(the LUT share ``bitfold run`` uses, or ``--max-luts`` per network), generate,
simulate test frames in Icarus (the measured cycles per frame; every result
checked against the golden model), build the bitstream (Fmax from nextpnr) and
run ``bitfold bench``. Prints one markdown table: hardware frames/s at Fmax and
each CPU baseline at batch 1 and at its best batch, with the ratios.

    .venv/bin/python -m benchmarks.hw_vs_cpu \\
        mlp-digits=runs/mlp-digits-digits@icebreaker sfc=runs/sfc-mnist@ulx3s-85f ...

A spec is ``NAME=RUN@BOARD[:MAX_LUTS]``; builds go to ``build/hw-vs-cpu/NAME``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bitfold.artifacts import read_json
from bitfold.boards.targets import get_board
from bitfold.cli import main as bitfold
from bitfold.pipeline import LUT_SHARE


def step(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
    print("$ bitfold " + " ".join(argv), flush=True)
    code = bitfold(argv)
    if code not in ok:
        sys.exit(f"hw_vs_cpu: `bitfold {' '.join(argv)}` failed with exit {code}")


def measure(name: str, run: str, board_name: str, max_luts: int | None, frames: int,
            out: Path, bench_only: bool = False) -> dict:
    board = get_board(board_name)
    build = out / name
    b = str(build)
    luts = max_luts or int(board.luts * LUT_SHARE[board.family])
    t0 = time.perf_counter()
    if not bench_only:  # else the builds and simulations of an earlier run are reused
        step(["compile", run, "--out", b])
        step(["fold", b, "--board", board.name, "--max-luts", str(luts)])
        step(["generate", b, "--folding", str(build / "folding.json")])
        step(["simulate", b, "--frames", str(frames)])
        step(["build", b, "--board", board.name, "--quiet"], ok=(0, 3))
    step(["bench", b, "--board", board.name, "--quiet"])
    doc = read_json(build / "bench.json")
    doc["name"], doc["wall_s"] = name, time.perf_counter() - t0
    return doc


def row(doc: dict) -> str:
    hw, cpu = doc["hardware"], doc["cpu"]
    folding = read_json(Path(doc["build"]) / "folding.json")
    cells = [doc["name"], f"{hw['board']} ({hw['luts']} LUTs, {hw['brams']} BRAMs)",
             " ".join(f"({x['pe']},{x['simd']})" for x in folding["layers"]),
             f"{hw['cycles_per_frame']:g}", f"{hw['clock_mhz']:g}", f"{hw['fps']:,.0f}"]
    for name in ("torch-float", "torch-binary", "golden-packed"):
        one = next(r for r in cpu["rows"] if r["name"] == name and r["batch"] == 1)
        best = cpu["best"][name]
        cells.append(f"{one['fps']:,.0f} ({hw['fps'] / one['fps']:.2f}x)")
        cells.append(f"{best['fps']:,.0f} @{best['batch']} ({hw['fps'] / best['fps']:.2f}x)")
    return "| " + " | ".join(cells) + " |"


HEADER = ("| network | board (nextpnr) | folding (PE,SIMD) | cycles/frame (sim) | Fmax MHz | "
          "hardware fps | torch float b1 (hw/cpu) | torch float best | torch binary b1 | "
          "torch binary best | packed golden b1 | packed golden best |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", metavar="NAME=RUN@BOARD[:MAX_LUTS]")
    ap.add_argument("--frames", type=int, default=16, help="simulated test frames (default 16)")
    ap.add_argument("--out", default="build/hw-vs-cpu")
    ap.add_argument("--bench-only", action="store_true",
                    help="reuse the builds and simulations; rerun only bitfold bench")
    args = ap.parse_args()
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    docs = []
    for spec in args.specs:
        name, rest = spec.split("=", 1)
        run, board = rest.split("@", 1)
        board, _, luts = board.partition(":")
        docs.append(measure(name, run, board, int(luts) if luts else None, args.frames,
                            Path(args.out), args.bench_only))
    m = docs[0]["machine"]
    print(f"\nCPU: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, numpy {m['numpy']}; "
          f"load average at each bench: {', '.join(str(d['machine']['load_average']) for d in docs)}")
    print(HEADER)
    for d in docs:
        print(row(d))


if __name__ == "__main__":
    main()
