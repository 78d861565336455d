"""Binary, sparse, composite and low-rank sfc side by side: accuracy, memory, cost model, board.

One ``bitfold run`` per variant and data set (train, compile, golden, fold at one LUT
budget, generate, simulate in Verilator against the golden model, a ``ulx3s-85f``
bitstream, bench), with the same training options for all; the float baseline is
``bitfold train --quantizer float`` (it has no hardware). Stages are reused, so a rerun
only collects the table::

    .venv/bin/python -m benchmarks.quantizer_table --data-root ../shared/data
    .venv/bin/python -m benchmarks.quantizer_table --variants binary sparse75-1:4 --no-bitstream

Writes ``OUT/table.json`` and ``OUT/table.md`` (default ``OUT`` = ``runs/quantizers``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

COMMON = ["--model", "sfc", "--param", "dense", "--alpha", "learned", "--lr", "2e-3",
          "--batch-size", "256", "--epochs", "3", "--quiet"]
VARIANTS = {
    "float": ["--quantizer", "float"],
    "binary": ["--quantizer", "binary"],
    "domain": ["--quantizer", "domain"],
    "sparse50": ["--quantizer", "sparse", "--sparsity", "0.5"],
    "sparse75": ["--quantizer", "sparse", "--sparsity", "0.75"],
    "sparse50-1:2": ["--quantizer", "sparse", "--sparsity", "0.5", "--sparse-group", "2"],
    "sparse75-1:4": ["--quantizer", "sparse", "--sparsity", "0.75", "--sparse-group", "4"],
    "sparse75-1:4-all": ["--quantizer", "sparse", "--sparsity", "0.75", "--sparse-group", "4",
                         "--sparse-first-layer"],
    "composite2": ["--quantizer", "composite", "--bases", "2"],
    "composite3": ["--quantizer", "composite", "--bases", "3"],
    "lowrank64": ["--quantizer", "composite", "--bases", "2", "--low-rank", "64"],
}
DATASETS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}
BOARD = "ulx3s-85f"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _network_weights(config: dict) -> int:
    """Weights of the network's binary layers, as trained (before any low-rank split)."""
    from bitfold.train.layers import binary_layers
    from bitfold.train.models import build_model

    model = build_model(config["model"], (1, 28, 28), 10, 0.0)
    return sum(layer.weight.numel() for _, layer in binary_layers(model))


def run_variant(bitfold: str, out: Path, name: str, dataset: str, data_dir: Path,
                max_luts: int, frames: int, bitstream: bool, log) -> None:
    data = ["--dataset", dataset, "--data-dir", str(data_dir)]
    if name == "float":
        if (out / "train" / "metrics.json").is_file():
            return
        cmd = [bitfold, "train", *COMMON, *data, *VARIANTS[name], "--out", str(out / "train")]
    else:
        cmd = [bitfold, "run", *COMMON, *data, *VARIANTS[name], "--board", BOARD,
               "--max-luts", str(max_luts), "--simulator", "verilator", "--frames", str(frames),
               "--out", str(out)] + ([] if bitstream else ["--no-bitstream"])
    print(f"$ {shlex.join(cmd)}", file=log, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    print(f"{name} {dataset}: exit {proc.returncode} in {time.monotonic() - t0:.0f} s",
          flush=True)


def collect(out: Path, name: str, dataset: str) -> dict:
    """One table row from a run folder."""
    config = _read(out / "train" / "config.json")
    row: dict = {"variant": name, "dataset": dataset,
                 "accuracy": _read(out / "train" / "metrics.json").get("test_accuracy")}
    weights = _network_weights(config) if config else None
    row["weights"] = weights
    if name == "float":
        row["bits_per_weight"] = 32
        row["weight_bits"] = 32 * weights if weights else None
        return row
    build = out / "build"
    golden, folding = _read(build / "golden.json"), _read(build / "folding.json")
    sim, board = _read(build / "sim" / "report.json"), _read(build / "boards" / BOARD /
                                                             "report.json")
    totals = folding.get("totals", {})
    row.update(
        golden_accuracy=golden.get("accuracy"), agreement=golden.get("agreement"),
        weight_bits=totals.get("weight_bits"),
        bits_per_weight=totals["weight_bits"] / weights if totals and weights else None,
        folding=[[c["pe"], c["simd"], c["layout"]] for c in folding.get("layers", [])],
        cycles_per_frame=totals.get("cycles_per_frame"),
        est_luts=totals.get("luts"), est_ffs=totals.get("ffs"), est_brams=totals.get("brams"),
        sim_frames=sim.get("frames"), sim_mismatches=sim.get("mismatches"),
        sim_cycles_per_frame=sim.get("cycles_per_frame"),
        rtl_accuracy=sim.get("rtl_accuracy"),
        board_luts=board.get("luts"), board_ffs=board.get("ffs"), board_brams=board.get("brams"),
        fmax_mhz=board.get("fmax_mhz"), timing_met=board.get("timing_met"),
        build_s=board.get("build_s"))
    if board.get("fmax_mhz") and totals.get("cycles_per_frame"):
        row["fps_at_fmax"] = board["fmax_mhz"] * 1e6 / totals["cycles_per_frame"]
    return row


def _fmt(v, spec: str = "") -> str:
    return "" if v is None else format(v, spec)


def markdown(rows: list[dict]) -> str:
    head = ("| variant | data | test acc | bits/weight | weight bits | folding (PE,SIMD,layout) | "
            "cycles/frame | est. LUTs / FFs / BRAMs | ulx3s-85f LUTs / FFs / BRAMs | Fmax MHz | "
            "frames/s at Fmax | RTL frames, mismatches |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    short = {"dense": "", "mask": "m", "index": "i", "group": "g", "serial": "s"}
    for r in rows:
        fold = " ".join(f"({p},{s}{',' + short[lay] if short.get(lay) else ''})"
                        for p, s, lay in r.get("folding", []))
        est = "" if r.get("est_luts") is None else \
            f"{r['est_luts']:,} / {r['est_ffs']:,} / {r['est_brams']}"
        brd = "" if r.get("board_luts") is None else \
            f"{r['board_luts']:,} / {r['board_ffs']:,} / {r['board_brams']}"
        sim = "" if r.get("sim_frames") is None else f"{r['sim_frames']}, {r['sim_mismatches']}"
        lines.append(
            f"| {r['variant']} | {r['dataset']} | {_fmt(r.get('accuracy'), '.4f')} | "
            f"{_fmt(r.get('bits_per_weight'), '.2f')} | {_fmt(r.get('weight_bits'), ',')} | "
            f"{fold} | {_fmt(r.get('cycles_per_frame'), ',')} | {est} | {brd} | "
            f"{_fmt(r.get('fmax_mhz'), '.2f')} | {_fmt(r.get('fps_at_fmax'), ',.0f')} | {sim} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data",
                   help="folder with mnist/ and fashion-mnist/ (default: ../shared/data)")
    p.add_argument("--out", default="runs/quantizers", help="where the runs go")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--max-luts", type=int, default=4000, help="folding budget (estimate)")
    p.add_argument("--frames", type=int, default=500, help="test frames through the RTL")
    p.add_argument("--no-bitstream", action="store_true", help="skip the board builds")
    p.add_argument("--table-only", action="store_true", help="collect, run nothing")
    args = p.parse_args(argv)
    bitfold = str(Path(sys.executable).with_name("bitfold"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    rows = []
    with open(out / "log.txt", "a") as log:
        for dataset in args.datasets:
            for name in args.variants:
                folder = out / f"{dataset}-{name.replace(':', '-')}"
                if not args.table_only:
                    run_variant(bitfold, folder, name, dataset,
                                Path(args.data_root) / DATASETS[dataset], args.max_luts,
                                args.frames, not args.no_bitstream, log)
                rows.append(collect(folder, name, dataset))
    (out / "table.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
