"""Training step time of each weight parametrization against ``dense``.

One forward + backward + Adam step on a fixed batch, for each parametrization
in turn (round robin, so every ratio comes from the same minutes of this noisy
machine), ``--rounds`` times; the median per parametrization is reported with
its ratio to ``dense`` measured in the same run (and the ratio of the fastest
rounds, which other jobs disturb least), and the load average before and after.

    .venv/bin/python benchmarks/train_step.py [--models sfc,cnn-digits] [--rounds 15]
        [--params dense,svd,tucker,holistic-tucker,cp,holistic-tucker@0.5] [--baseline REV]
        [--reconstruction]

A parametrization is measured at ``bitfold train``'s default rank for it;
``NAME@R`` measures it at ``--rank R`` (``@1`` is full rank), and a ``+bf16`` suffix
(``holistic-tucker+bf16``, ``svd@0.5+bf16``) with ``--factor-dtype bfloat16``. ``--baseline REV``
also times the trainer's layers as they were at git revision ``REV`` (``train/``
read with ``git show`` and imported as a package of its own), in the same rounds,
with its own ``dense`` as the reference of its ratios: before and after a change,
side by side in one run. ``--reconstruction`` adds, for this code, each factorization's
reconstruction alone (every weight rebuilt from its factors, forward and backward, no
layer, batch or optimizer) against a dense step timed in the same rounds: the part of the
overhead that no change outside the reconstruction can remove.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import bitfold  # noqa: F401  (MKL_CBWR before torch)
from bitfold.train.layers import parametrize_model
from bitfold.train.models import build_model
from bitfold.train.trainer import TrainConfig

PARAMS = ("dense", "svd", "tucker", "holistic-tucker", "cp")
SHAPES = {"mlp-digits": (1, 8, 8), "cnn-digits": (1, 8, 8), "tfc": (1, 28, 28),
          "sfc": (1, 28, 28), "lfc": (1, 28, 28), "cnv": (3, 32, 32)}
ROOT = Path(__file__).resolve().parents[1]

Builders = tuple[Callable[..., torch.nn.Module], Callable[..., torch.nn.Module]]


def parse_entry(entry: str) -> tuple[str, float | None]:
    """``NAME`` (the trainer's default rank for it) or ``NAME@R``, either with an optional
    ``+bf16`` -> (param, rank)."""
    param, _, rank = entry.removesuffix("+bf16").partition("@")
    if param not in PARAMS:
        raise SystemExit(f"unknown parametrization {param!r}; choose from {', '.join(PARAMS)}")
    if rank:
        return param, float(rank)
    return param, TrainConfig(param=param).rank


def baseline_builders(rev: str) -> Builders:
    """``build_model`` and ``parametrize_model`` of ``train/`` at git revision ``rev``."""
    def git(*args: str) -> bytes:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], check=True,
                                  capture_output=True).stdout
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"--baseline {rev}: {exc.stderr.decode().strip()}") from None

    tmp = Path(tempfile.mkdtemp(prefix="train_step_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    name = "bitfold_train_baseline"
    (tmp / name).mkdir()
    for file in git("ls-tree", "--name-only", f"{rev}:train").decode().split():
        if file.endswith(".py"):
            (tmp / name / file).write_bytes(git("show", f"{rev}:train/{file}"))
    sys.path.insert(0, str(tmp))
    models = importlib.import_module(f"{name}.models")  # its modules import each other relatively
    layers = importlib.import_module(f"{name}.layers")
    return models.build_model, layers.parametrize_model


def _dtype(entry: str) -> dict[str, str]:
    """``parametrize_model``'s keyword for ``entry``'s ``+bf16`` (none without it, so that
    ``--baseline`` revisions without the option run the rest)."""
    return {"factor_dtype": "bfloat16"} if entry.endswith("+bf16") else {}


def _label(entry: str, param: str) -> str:
    return param + (" (bfloat16)" if _dtype(entry) else "")


def make_step(model_name: str, param: str, rank: float | None, batch: int,
              builders: Builders = (build_model, parametrize_model), **dtype: str):
    build, parametrize = builders
    torch.manual_seed(0)
    model = build(model_name, SHAPES[model_name], 10)
    parametrize(model, param, "learned", rank, **dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, *SHAPES[model_name])
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_reconstruction(model_name: str, param: str, rank: float | None,
                        builders: Builders = (build_model, parametrize_model), **dtype: str):
    """The reconstruction alone: every binary layer's real weight rebuilt from its factors,
    forward and backward (a fixed random gradient), without the layers, batch or optimizer."""
    build, parametrize = builders
    torch.manual_seed(0)
    model = build(model_name, SHAPES[model_name], 10)
    parametrize(model, param, "learned", rank, **dtype)
    layers = [m for m in model.modules() if hasattr(m, "real_weight")]
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(m.real_weight().shape, generator=g) for m in layers]

    def step() -> None:
        torch.autograd.backward([m.real_weight() for m in layers], grads)
        model.zero_grad(set_to_none=True)

    return step


def _reconstruction_table(model_name: str, entries: list[str], configs: dict, args,
                          dense_ms: float) -> dict[str, dict[str, float]]:
    """``--reconstruction``: each factorized entry's reconstruction alone, timed in rounds
    of its own with the dense step beside it, against that dense step."""
    factored = [e for e in entries if configs[e][0] != "dense"]
    steps = {("step", "dense"): make_step(model_name, "dense", None, args.batch)}
    steps.update({("recon", e): make_reconstruction(model_name, *configs[e], **_dtype(e))
                  for e in factored})
    times = _timed(steps, args.rounds, args.steps)
    dense = statistics.median(times["step", "dense"])
    print(f"\n{model_name}: the reconstruction alone (forward + backward of every weight from "
          f"its factors), median of {args.rounds} rounds, dense step {1e3 * dense:.1f} ms here "
          f"({dense_ms:.1f} ms above)")
    print("| parametrization | rank | reconstruction (ms) | x dense step | fastest rounds |\n"
          "|---|---|---|---|---|")
    out = {}
    for e in factored:
        med, fast = statistics.median(times["recon", e]), min(times["recon", e])
        out[e] = {"median_ms": 1e3 * med, "ratio_to_dense_step": med / dense,
                  "min_ratio_to_dense_step": fast / min(times["step", "dense"])}
        print(f"| {_label(e, configs[e][0])} | {_rank(*configs[e])} | {1e3 * med:.1f} | {med / dense:.2f}x | "
              f"{out[e]['min_ratio_to_dense_step']:.2f}x |")
    return out


def _rank(param: str, rank: float | None) -> str:
    return "-" if param == "dense" else "full" if rank is None else f"{rank:g}"


def _timed(steps: dict[tuple[str, str], Callable[[], None]], rounds: int,
           per_round: int) -> dict[tuple[str, str], list[float]]:
    """Seconds per step of each of ``steps``, once per round, the steps taking turns in
    every round (after one warm-up step each)."""
    for step in steps.values():  # warm up
        step()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for k, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                step()
            times[k].append((time.perf_counter() - t0) / per_round)
    return times


def _print_table(entries: list[str], configs: dict, baseline: str | None, med: dict,
                 ratio: dict, fast: dict) -> None:
    head = "| parametrization | rank | step (ms) | vs dense | fastest rounds |"
    if baseline:
        head += f" at {baseline} (ms) | vs dense | fastest rounds |"
    print(head + "\n|" + "---|" * head.count(" |"))
    for e in entries:
        row = (f"| {_label(e, configs[e][0])} | {_rank(*configs[e])} | {1e3 * med['current', e]:.1f} | "
               f"{ratio['current', e]:.2f}x | {fast['current', e]:.2f}x |")
        if baseline:
            row += (f" {1e3 * med[baseline, e]:.1f} | {ratio[baseline, e]:.2f}x | "
                    f"{fast[baseline, e]:.2f}x |")
        print(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="sfc,cnn-digits")
    ap.add_argument("--params", default=",".join(PARAMS),
                    help="comma-separated; NAME@R for rank R (default: the trainer's ranks)")
    ap.add_argument("--baseline", metavar="REV",
                    help="also time train/ as it was at git revision REV, in the same rounds")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5, help="steps timed together per round")
    ap.add_argument("--reconstruction", action="store_true",
                    help="also time each factorization's reconstruction alone (this code only)")
    ap.add_argument("--out", default="runs/bench/train_step.json")
    args = ap.parse_args()

    entries = args.params.split(",")
    if "dense" not in entries:
        entries.insert(0, "dense")
    configs = {e: parse_entry(e) for e in entries}
    sides: dict[str, Builders] = {"current": (build_model, parametrize_model)}
    if args.baseline:
        sides[args.baseline] = baseline_builders(args.baseline)
    load_before = os.getloadavg()
    results: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
                                f"{torch.__version__}", "batch": args.batch,
                     "baseline": args.baseline, "load_before": load_before, "models": {}}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; "
          f"{torch.get_num_threads()} threads")
    for model_name in args.models.split(","):
        runs = [(side, e) for side in sides for e in entries]
        steps = {(side, e): make_step(model_name, *configs[e], args.batch, sides[side],
                                      **_dtype(e))
                 for side, e in runs}
        times = _timed(steps, args.rounds, args.steps)
        med = {k: statistics.median(t) for k, t in times.items()}
        ratio = {(side, e): med[side, e] / med[side, "dense"] for side, e in runs}
        fast = {(side, e): min(times[side, e]) / min(times[side, "dense"]) for side, e in runs}
        results["models"][model_name] = {
            side: {e: {"param": configs[e][0], "rank": configs[e][1], **_dtype(e),
                       "median_ms": 1e3 * med[side, e], "ratio_to_dense": ratio[side, e],
                       "min_ms": 1e3 * min(times[side, e]), "min_ratio_to_dense": fast[side, e]}
                   for e in entries} for side in sides
        }
        print(f"\n{model_name} (batch {args.batch}, median of {args.rounds} rounds)")
        _print_table(entries, configs, args.baseline, med, ratio, fast)
        if args.reconstruction:
            results["models"][model_name]["reconstruction"] = _reconstruction_table(
                model_name, entries, configs, args, 1e3 * med["current", "dense"])
    results["load_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in results['load_after'])}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
