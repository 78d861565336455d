"""A stream soak: many frames through one generated design in Verilator, random stalls on both sides.

Folds a network (``--build BUILD``, e.g. the trained ``runs/demo/build`` of
``make demo``; ``--example NAME``, a hand-made one of ``tests/hw/helpers.py``;
without either, a small random network drawn as the differential does) for
``--cycles`` cycles per frame at 100 MHz (``fold_for_fps``), generates its
Verilog, and streams ``--frames`` random frames (a quarter at the input range's
extremes) through it in Verilator with random idle input cycles and output
backpressure, in bursts (:func:`bitfold.sim.multi_testbench.pause_pattern`).
Every result is compared in order with the golden model
(``compiler.golden.run_reference``; the packed executor is checked against it
too). The run passes when no frame is lost (all results arrive before the design
stalls for good), none is added (no beat within the drain period after the last)
and none differs (class, every score, tlast). Consecutive frames whose golden
outputs differ are counted: a lost or duplicated frame there would also show as
a mismatch.

    .venv/bin/python -m benchmarks.rtl_soak --build runs/demo/build --frames 100000
    .venv/bin/python -m benchmarks.rtl_soak --example sparse-cnn --cycles 36 --frames 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.*, also when run as a script
    sys.path.insert(0, str(ROOT))


EXAMPLES = ("small-cnn", "sparse-cnn", "domain-cnn", "composite-mlp")  # tests/hw/helpers


def _graph(build: Path | None, seed: int, example: str | None = None):
    from bitfold.compiler.serialize import load_graph

    if build is not None:
        return load_graph(build)
    if example is not None:
        from tests.hw import helpers

        if example == "sparse-cnn":  # 1:2 structured, as --sparse-group 2 trains
            return helpers.sparse_cnn(0.5, "sparse cnn", group=2)
        return getattr(helpers, example.replace("-", "_"))()
    from tests.sim.randnets import draw_graphs, draw_network

    graphs = draw_graphs(1, seed)
    return draw_network(*graphs[0], 0)[0]


def golden(graph, x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, int]:
    """Class and scores of every frame from the reference interpreter, and how many frames
    the packed executor (``sim.frames.expected_outputs``) disagrees on."""
    from bitfold.compiler.golden import run_reference
    from bitfold.compiler.ir import ScoreAffine
    from bitfold.sim.frames import expected_outputs

    score = next(n.name for n in graph.nodes if isinstance(n, ScoreAffine))
    cls, scores, differ = [], [], 0
    for i in range(0, len(x), chunk):
        ref = run_reference(graph, x[i:i + chunk])
        c, s = ref[graph.outputs[0]].astype(np.int64), ref[score].astype(np.int64)
        pc, ps = expected_outputs(graph, x[i:i + chunk])
        differ += int(np.sum((pc != c) | np.any(ps != s, axis=1)))
        cls.append(c)
        scores.append(s)
    return np.concatenate(cls), np.concatenate(scores), differ


def soak(graph, *, frames: int, cycles: int, out: Path, seed: int = 0, p_idle: float = 0.3,
         p_stall: float = 0.3, idle_burst: float = 4.0, stall_burst: float = 4.0,
         log=print) -> dict[str, Any]:
    from benchmarks.rtl_differential import source_state
    from bitfold.compiler.folding import fold_for_fps
    from bitfold.compiler.serialize import save_graph
    from bitfold.hw.generate import generate
    from bitfold.sim.frames import Vectors
    from bitfold.sim.multi import Design, simulate_many
    from tests.compiler.randgraphs import random_inputs

    t0 = time.time()
    load0 = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    source = source_state(out)
    folding = fold_for_fps(graph, 100e6 / cycles, clock_mhz=100.0)
    build = out / "build"
    save_graph(graph, build)
    t = time.perf_counter()
    manifest = generate(build, graph, folding)
    gen_s = time.perf_counter() - t
    log(f"{graph.name}: folding {[(c.name, c.pe, c.simd, c.layout) for c in folding.layers]}, "
        f"{folding.cycles_per_frame} cycles/frame; generated in {gen_s:.1f} s")
    x = random_inputs(graph, frames, seed)
    t = time.perf_counter()
    cls, scores, packed_differ = golden(graph, x)
    golden_s = time.perf_counter() - t
    same = np.all(scores[1:] == scores[:-1], axis=1) & (cls[1:] == cls[:-1])
    vectors = Vectors(x.reshape(len(x), -1).astype(np.int64), cls, scores)
    design = Design(graph.name, build / "rtl", vectors, p_idle=p_idle, p_stall=p_stall,
                    idle_burst=idle_burst, stall_burst=stall_burst, seed=seed)
    log(f"golden outputs of {frames} frames in {golden_s:.1f} s; streaming through Verilator")
    res = simulate_many([design], out / "sim")
    rec = res["designs"][0]
    got = np.array([-1 if c is None else c for c in rec["classes"]])
    return {
        "network": graph.name, "folding": [[c.name, c.pe, c.simd, c.layout]
                                           for c in folding.layers],
        "cycles_per_frame_analytic": manifest["expected_cycles_per_frame"],
        "cycles_per_frame_measured": rec["cycles_per_frame"],
        "stalls": {"p_idle": p_idle, "idle_burst": idle_burst, "p_stall": p_stall,
                   "stall_burst": stall_burst, "seed": seed},
        "frames_sent": len(x), "beats_sent": rec["beats_sent"], "beats_total": rec["beats_total"],
        "frames_received": rec["frames"], "frames_expected": rec["frames_expected"],
        "lost": rec["frames_expected"] - rec["frames"], "extra_beats": rec["extra_beats"],
        "partial_beats": rec["partial_beats"], "mismatches": rec["mismatches"],
        "first_mismatch": rec["first_mismatch"], "stuck": rec["stuck"],
        "classes_equal_golden": int(np.sum(got == cls[:len(got)])),
        "consecutive_distinct": int(np.sum(~same)), "packed_vs_reference_differ": packed_differ,
        "cycles": rec["cycles"], "latency_cycles": rec["latency_cycles"],
        "drain_cycles": res["drain_cycles"],
        "gen_s": round(gen_s, 1), "golden_s": round(golden_s, 1), "build_s": res["build_s"],
        "sim_s": res["sim_s"], "stream_s": res["stream_s"],
        "cycles_per_s": round(rec["cycles"] / res["stream_s"]) if res["stream_s"] else None,
        "wall_s": round(time.time() - t0, 1),
        "load_start": [round(v, 2) for v in load0],
        "load_end": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
        "verilator_opt": os.environ.get("BITFOLD_VERILATOR_OPT", ""), **source,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=Path, help="a build folder with graph.json (default: a "
                                               "small random network from --seed)")
    ap.add_argument("--example", choices=EXAMPLES,
                    help="a hand-made network of tests/hw/helpers.py instead (sparse-cnn: 1:2 "
                         "structured, group layout; the CNNs' pool bounds them to 36 cycles)")
    ap.add_argument("--frames", type=int, default=100_000, help="frames (default: 100000)")
    ap.add_argument("--cycles", type=int, default=10,
                    help="target cycles per frame (fold_for_fps at 100 MHz; default 10)")
    ap.add_argument("--seed", type=int, default=0, help="frames and stall patterns (default 0)")
    ap.add_argument("--p-idle", type=float, default=0.3, help="idle input cycles (0.3)")
    ap.add_argument("--idle-burst", type=float, default=4.0, help="their mean run length (4)")
    ap.add_argument("--p-stall", type=float, default=0.3, help="backpressure cycles (0.3)")
    ap.add_argument("--stall-burst", type=float, default=4.0, help="their mean run length (4)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "rtl_soak",
                    help="work folder (default: build/rtl_soak)")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args(argv)
    graph = _graph(args.build, args.seed, args.example)
    summary = soak(graph, frames=args.frames, cycles=args.cycles, out=args.out, seed=args.seed,
                   p_idle=args.p_idle, p_stall=args.p_stall, idle_burst=args.idle_burst,
                   stall_burst=args.stall_burst)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    ok = not (summary["lost"] or summary["extra_beats"] or summary["partial_beats"]
              or summary["mismatches"] or summary["packed_vs_reference_differ"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
