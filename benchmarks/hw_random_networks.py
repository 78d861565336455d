"""Random small networks generated and checked bit-exact in amaranth.sim (the larger run).

Hypothesis draws ``--count`` random lowered networks (dense and convolutional
layers, max pools, multi-bit or bipolar inputs; ``tests/compiler/randgraphs``),
the compiler folds them, a random legal folding is picked, the hardware
generator builds the dataflow top and ``amaranth.sim`` runs ``--frames`` random
frames with random idle input cycles and output backpressure. Every class and
score is compared with the golden model; a mismatch is recorded, not raised,
so the count is complete. Prints one line per failing network and a summary.

    .venv/bin/python -m benchmarks.hw_random_networks --count 200
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


def main() -> None:
    from bitfold.compiler.golden import run_reference
    from bitfold.compiler.ir import ScoreAffine
    from bitfold.hw.plan import build_plan
    from bitfold.hw.simulate import simulate_network
    from tests.compiler.randgraphs import lowered_graphs, random_inputs
    from tests.hw.helpers import folded, random_folding

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="networks (default: 200)")
    ap.add_argument("--frames", type=int, default=8, help="frames per network (default: 8)")
    ap.add_argument("--max-layers", type=int, default=3)
    ap.add_argument("--seed", type=int, help="hypothesis seed (default: derandomized)")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args()
    stats = {"networks": 0, "exact": 0, "mismatch": 0, "error": 0, "frames": 0,
             "conv": 0, "pool": 0, "cycles": 0}
    t0 = time.time()

    @settings(max_examples=args.count, deadline=None, database=None,
              derandomize=args.seed is None, suppress_health_check=list(HealthCheck))
    @seed(args.seed or 0)
    @given(lowered_graphs(max_layers=args.max_layers), st.integers(0, 2**16))
    def one(graph, seed) -> None:
        graph = folded(graph)
        stats["networks"] += 1
        stats["conv"] += any(n.kind == "BinaryConv2d" for n in graph.nodes)
        stats["pool"] += any(n.kind == "MaxPool2d" for n in graph.nodes)
        try:
            folding = random_folding(graph, np.random.default_rng(seed))
            x = random_inputs(graph, args.frames, seed)
            ref = run_reference(graph, x)
            run = simulate_network(build_plan(graph, folding), x, p_idle=0.3, p_stall=0.3,
                                   seed=seed)
            score = next(n.name for n in graph.nodes if isinstance(n, ScoreAffine))
            ok = np.array_equal(run.classes, ref[graph.outputs[0]]) and \
                np.array_equal(run.scores, ref[score])
            stats["frames"] += len(x)
            stats["cycles"] += run.cycles
            stats["exact" if ok else "mismatch"] += 1
            if not ok:
                print(f"MISMATCH {graph.name}: {[n.kind for n in graph.nodes]}")
        except Exception:  # recorded and counted; the run goes on
            stats["error"] += 1
            print(f"ERROR {graph.name}:\n{traceback.format_exc()}")

    one()
    stats["wall_s"] = round(time.time() - t0, 1)
    stats["seed"] = args.seed
    print(json.dumps(stats))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(stats, f, indent=2)


if __name__ == "__main__":
    main()
