"""Random IR graphs through their generated Verilog in Verilator, against the golden model.

Hypothesis draws ``--count`` distinct random lowered networks from
``tests/compiler/randgraphs.py`` with every encoding (binary, sparse,
composite, low-rank, domain; dense and convolutional layers, max pools,
bipolar or 1..8-bit unsigned inputs, up to ``--max-layers`` hidden layers).
Each is folded by the compiler and given a random legal folding: per layer a
random layout among those it has (sparse: mask, index or group; composite:
dense or serial), random PE and SIMD, block-RAM PEs where allowed, for the
ECP5 or the iCE40 model (registered block-RAM reads and credits, or not).
``bitfold generate`` writes its ``rtl/``; the golden model
(``compiler.golden.run_reference``) gives the class and every score of
``--frames`` random frames (a quarter of them at the extremes).

Networks are simulated ``--batch`` at a time in one Verilator build
(:mod:`bitfold.sim.multi`: every core side by side in one top, one cocotb
testbench driving all of them concurrently), each with its own frames and its
own random idle-input and backpressure patterns (pause fractions 0..0.8, single
cycles or bursts). A network passes when every frame's class, scores and tlast
equal the golden model's, no frame is lost and none is added. A mismatch is
recorded, not raised, so the count is complete; a failing network's build
folder is kept under ``OUT/failed/NAME`` with a replay command.

    .venv/bin/python -m benchmarks.rtl_differential --count 1000 --seed 1
    .venv/bin/python -m benchmarks.rtl_differential --replay OUT/failed/NAME
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.sim.randnets, also when run as a script
    sys.path.insert(0, str(ROOT))

from tests.sim.randnets import (  # noqa: E402
    draw_graphs,
    graph_key,
    load_network,
    prepare,
    verdict,
)


def replay(folder: Path, simulator: str) -> int:
    """Simulate one kept network alone (same frames, same stalls) and in amaranth.sim."""
    from bitfold.compiler.folding import read_folding
    from bitfold.compiler.serialize import load_graph
    from bitfold.hw.plan import build_plan
    from bitfold.hw.simulate import simulate_network
    from bitfold.sim.multi import simulate_many

    info, design = load_network(folder)
    res = simulate_many([design], folder / "replay", simulator=simulator)
    rec = res["designs"][0]
    print(json.dumps({k: v for k, v in rec.items() if k != "classes"}, indent=2))
    graph = load_graph(folder)
    plan = build_plan(graph, read_folding(folder / "folding.json", graph))
    x = design.vectors.frames.reshape(-1, *graph.types[graph.inputs[0]].shape)
    run = simulate_network(plan, x, p_idle=design.p_idle, p_stall=design.p_stall,
                           seed=design.seed)
    ok = np.array_equal(run.classes, design.vectors.classes) and \
        np.array_equal(run.scores, design.vectors.scores)
    print(f"{simulator}: {verdict(rec)}; amaranth.sim: {'exact' if ok else 'mismatch'}")
    return 0 if verdict(rec) == "exact" else 1


def source_state(out: Path) -> dict[str, Any]:
    """The commit, which tracked files of the code under test differ from it, and that
    difference (written to ``OUT/source.diff``; its SHA-256 in the summary)."""
    import hashlib
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    paths = ("compiler", "hw", "sim", "tests/compiler/randgraphs.py", "tests/hw/helpers.py",
             "tests/sim")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    diff = git("diff", "HEAD", "--", *paths)
    (out / "source.diff").write_text(diff)
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [line[3:] for line in dirty.splitlines() if line.strip()],
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16]}


def run(count: int, seed: int, *, batch: int = 40, frames: int = 32, max_layers: int = 3,
        out: Path, simulator: str = "verilator", keep: bool = False,
        log=print) -> dict[str, Any]:
    """The whole differential; returns the summary (and writes ``OUT/networks.jsonl``)."""
    t0 = time.time()
    load0 = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    source = source_state(out)  # before anything is imported: what this run tests
    graphs = draw_graphs(count, seed, max_layers)
    stats: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    times = Counter({"gen_s": 0.0, "build_s": 0.0, "sim_s": 0.0})
    failed: list[str] = []
    records = out / "networks.jsonl"
    with records.open("w") as log_file:
        for b0 in range(0, len(graphs), batch):
            work = out / f"batch{b0 // batch}"
            nets = [prepare(g, s, b0 + i, frames, work / f"rd{b0 + i}")
                    for i, (g, s) in enumerate(graphs[b0:b0 + batch])]
            times["gen_s"] += sum(n.gen_s for n in nets)
            results = _simulate_batch([n for n in nets if n.design is not None], work, out,
                                      simulator, times, stats)
            for n in nets:
                _record(n, results.get(n.name), stats, kinds, log_file, out, failed, log)
            if not keep:
                for n in nets:
                    shutil.rmtree(n.folder, ignore_errors=True)
                shutil.rmtree(work / "sim" / "build", ignore_errors=True)
            log(f"batch {b0 // batch}: {len(nets)} networks, {stats['exact']} of "
                f"{stats['networks']} exact so far, {time.time() - t0:.0f} s")
    summary = {
        "networks": stats["networks"], "distinct_graphs": len({graph_key(g) for g, _ in graphs}),
        "exact": stats["exact"], "mismatch": stats["mismatch"],
        "lost": stats["lost"], "extra": stats["extra"], "error": stats["error"],
        "frames": stats["frames"], "sim_cycles": stats["sim_cycles"],
        "batches": -(-len(graphs) // batch), "batch": batch, "frames_per_network": frames,
        "seed": seed, "simulator": simulator,
        "verilator_opt": os.environ.get("BITFOLD_VERILATOR_OPT", ""),
        "features": dict(sorted(kinds.items())),
        "gen_s": round(times["gen_s"], 1), "build_s": round(times["build_s"], 1),
        "sim_s": round(times["sim_s"], 1), "wall_s": round(time.time() - t0, 1),
        "load_start": [round(v, 2) for v in load0], "load_end": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(), "failed": failed, **source,
    }
    return summary


def _simulate_batch(ok: list, work: Path, out: Path, simulator: str, times: Counter,
                    stats: Counter) -> dict[str, dict[str, Any]]:
    """One build of the batch's networks that generated (``ok``) and their records by name;
    a batch that does not build or run gives every one of them its error and no record."""
    from bitfold.sim.multi import keep_runtime, simulate_many

    if not ok:
        return {}
    try:
        res = simulate_many([n.design for n in ok], work / "sim", simulator=simulator,
                            runtime_from=out / "runtime")
        if simulator == "verilator":
            keep_runtime(work / "sim" / "build", out / "runtime")
        times["build_s"] += res["build_s"]
        times["sim_s"] += res["sim_s"]
        stats["sim_cycles"] += res["cycles"]
        return {r["name"]: r for r in res["designs"]}
    except Exception:  # a batch that does not build or run: every network errs
        for n in ok:
            n.error = traceback.format_exc()
        return {}


def _record(n, rec: dict[str, Any] | None, stats: Counter, kinds: Counter, log_file,
            out: Path, failed: list[str], log) -> None:
    """Count network ``n``'s verdict, write its line of networks.jsonl and, unless it was
    exact, keep its folder under ``OUT/failed`` and say how to replay it."""
    stats["networks"] += 1
    v = "error" if n.error or rec is None else verdict(rec)
    stats[v] += 1
    if rec is not None:
        stats["frames"] += rec["frames"]
    kinds.update(n.features)
    row = {"name": n.name, "index": n.index, "seed": n.seed, "verdict": v,
           "features": n.features, "cycles_per_frame": n.cycles_per_frame,
           "stalls": n.stalls, "gen_s": round(n.gen_s, 2)}
    if rec is not None:
        row.update({k: rec[k] for k in ("frames", "mismatches", "extra_beats",
                                        "timed_out", "cycles", "first_mismatch")})
    if n.error:
        row["error"] = n.error
    log_file.write(json.dumps(row) + "\n")
    log_file.flush()
    if v != "exact":
        keep_at = out / "failed" / n.name
        if n.folder.exists():
            if keep_at.exists():
                shutil.rmtree(keep_at)
            shutil.copytree(n.folder, keep_at)
        failed.append(n.name)
        log(f"{v.upper()} {n.name} ({', '.join(n.features)})"
            + (f": first {rec['first_mismatch']}" if rec and rec["first_mismatch"]
               else "")
            + (f"\n{n.error}" if n.error else "")
            + f"\n  replay: {sys.executable} -m benchmarks.rtl_differential "
              f"--replay {keep_at}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="networks (default: 1000)")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed (default: 0)")
    ap.add_argument("--batch", type=int, default=40, help="networks per Verilator build (40)")
    ap.add_argument("--frames", type=int, default=32, help="frames per network (default: 32)")
    ap.add_argument("--max-layers", type=int, default=3, help="hidden layers at most (3)")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "rtl_differential",
                    help="work folder (default: build/rtl_differential)")
    ap.add_argument("--keep", action="store_true", help="keep every network's folder")
    ap.add_argument("--opt", default="-O0",
                    help="C++ optimization of the Verilator builds (BITFOLD_VERILATOR_OPT; "
                         "default -O0: these builds run few cycles, so compiling fast wins)")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--replay", type=Path, metavar="DIR",
                    help="simulate one kept network (OUT/failed/NAME) alone, and in amaranth.sim")
    args = ap.parse_args(argv)
    os.environ["BITFOLD_VERILATOR_OPT"] = args.opt
    if args.replay:
        return replay(args.replay, args.simulator)
    summary = run(args.count, args.seed, batch=args.batch, frames=args.frames,
                  max_layers=args.max_layers, out=args.out, simulator=args.simulator,
                  keep=args.keep)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["exact"] == summary["networks"] else 1


if __name__ == "__main__":
    sys.exit(main())
