"""RTL simulation speed, Icarus vs Verilator side by side, on generated accelerators.

For every ``--build`` folder (compiled and generated: ``bitfold generate``), runs
test frames of its data set through both simulators with the cocotb testbench
(a fresh build each, unless ``--reuse``), checks every result against the golden
model and prints one markdown row per design and simulator: build time, frames,
simulation wall time, frames/s, cycles/s, mismatches, measured and analytic
cycles per frame, first-frame latency, and the golden accuracy of those frames
(the RTL's, since every class must match).

    .venv/bin/python -m benchmarks.sim_speed --build build/simbench/mlp-digits-digits \\
        --frames verilator=360 icarus=360
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

HEADER = ("| design | simulator | build s | frames | sim s | frames/s | cycles/s | mismatches | "
          "cycles/frame (analytic) | latency | accuracy |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    from bitfold.compiler.serialize import load_graph
    from bitfold.sim.frames import expected_outputs
    from bitfold.sim.runner import dataset_frames, simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="append", required=True, help="build folder (repeatable)")
    ap.add_argument("--frames", nargs="+", default=["verilator=360", "icarus=100"],
                    metavar="SIM=N", help="frames per simulator (default: verilator=360 icarus=100)")
    ap.add_argument("--reuse", action="store_true", help="reuse an up-to-date simulator build")
    ap.add_argument("--stalls", action="store_true", help="random idle cycles and backpressure")
    ap.add_argument("--json", metavar="FILE", help="also write every report to FILE")
    args = ap.parse_args()
    plan = [(s, int(n)) for s, n in (f.split("=") for f in args.frames)]
    reports = []
    print(HEADER)
    for build in map(Path, args.build):
        most = max(n for _, n in plan)
        x, labels, _ = dataset_frames(build, most)
        classes, scores = expected_outputs(load_graph(build), x)
        for simulator, n in plan:
            sim_dir = build / "sim-bench"
            if not args.reuse:
                shutil.rmtree(sim_dir / simulator / "build", ignore_errors=True)
            t0 = time.perf_counter()
            r = simulate(build, x[:n], simulator=simulator, stalls=args.stalls, sim_dir=sim_dir,
                         expected=(classes[:n], scores[:n]))
            r["bench_wall_s"] = time.perf_counter() - t0
            acc = float((classes[:n] == labels[:n]).mean())
            r.update(design=build.name, accuracy=acc)
            reports.append(r)
            cpf = r["cycles_per_frame"]
            print(f"| {build.name} | {simulator} | {r['build_s']:.1f} | {r['frames']} | "
                  f"{r['sim_s']:.1f} | {r['frames_per_s']:.1f} | {r['cycles_per_s']:,.0f} | "
                  f"{r['mismatches']} | {cpf if cpf is None else f'{cpf:.1f}'} "
                  f"({r['analytic_cycles_per_frame']}) | {r['latency_cycles']} | {acc:.4f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
