"""Training step time of each weight parametrization against ``dense``.

One forward + backward + Adam step on a fixed batch, for each parametrization
in turn (round robin, so every ratio comes from the same minutes of this noisy
machine), ``--rounds`` times; the median per parametrization is reported with
its ratio to ``dense`` measured in the same run.

    .venv/bin/python benchmarks/train_step.py [--models sfc,cnn-digits] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import bitfold  # noqa: F401  (MKL_CBWR before torch)
from bitfold.train.layers import parametrize_model
from bitfold.train.models import build_model

PARAMS = ("dense", "svd", "tucker", "holistic-tucker", "cp")
SHAPES = {"mlp-digits": (1, 8, 8), "cnn-digits": (1, 8, 8), "tfc": (1, 28, 28),
          "sfc": (1, 28, 28), "lfc": (1, 28, 28), "cnv": (3, 32, 32)}


def make_step(model_name: str, param: str, batch: int):
    torch.manual_seed(0)
    model = build_model(model_name, SHAPES[model_name], 10)
    parametrize_model(model, param, "learned")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, *SHAPES[model_name])
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="sfc,cnn-digits")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5, help="steps timed together per round")
    ap.add_argument("--out", default="runs/bench/train_step.json")
    args = ap.parse_args()

    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
                          f"{torch.__version__}", "batch": args.batch, "models": {}}
    for model_name in args.models.split(","):
        steps = {p: make_step(model_name, p, args.batch) for p in PARAMS}
        for step in steps.values():  # warm up
            step()
        times: dict[str, list[float]] = {p: [] for p in PARAMS}
        for _ in range(args.rounds):
            for p, step in steps.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[p].append((time.perf_counter() - t0) / args.steps)
        med = {p: statistics.median(t) for p, t in times.items()}
        results["models"][model_name] = {
            p: {"median_ms": 1e3 * med[p], "ratio_to_dense": med[p] / med["dense"]} for p in PARAMS
        }
        print(f"\n{model_name} (batch {args.batch}, median of {args.rounds} rounds)")
        print("| parametrization | step (ms) | vs dense |\n|---|---|---|")
        for p in PARAMS:
            print(f"| {p} | {1e3 * med[p]:.1f} | {med[p] / med['dense']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
