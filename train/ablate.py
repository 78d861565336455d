"""The paper's ablation grid: parametrization x alpha mode over several seeds.

Bulat et al. Tables 1 and 2 compare the dense (XNOR-Net) baseline with
layer-wise SVD, layer-wise Tucker and holistic Tucker, each with analytic and
learned scales. :func:`ablate` trains every cell for every seed (each run in
its own folder, reused when already complete) and writes a mean +- std table
(``ablation.md``, ``ablation.json``) and a plot (``ablation.png``), and for each cell's
first seed the distributions of its real weights and scales
(:mod:`~bitfold.train.ablate_figures`: ``ablation-weights.png``, ``ablation-scales.png``,
the summaries in the table and the JSON), and whether each cell had settled (the range of
its test accuracy over the last epochs and of its training accuracy at the end). Each run
records the machine that trained it (``RUN/machine.json``), and the table names it.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bitfold.artifacts import ArtifactError, atomic_write, read_json, write_json

from .trainer import SCHEMA, TrainConfig, changed_fields, train

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_PARAMS", "ablate"]

DEFAULT_PARAMS = ("dense", "svd", "tucker", "holistic-tucker")
DEFAULT_ALPHAS = ("analytic", "learned")


def _trained_on(run_dir: Path) -> str:
    try:
        return str(read_json(run_dir / "machine.json", SCHEMA)["machine"])
    except (ArtifactError, KeyError):
        return "not recorded"


def _run_once(config: TrainConfig, run_dir: Path, progress: bool) -> dict[str, Any]:
    config = config.resolved()  # each cell its own recipe: the rate of its parametrization
    try:
        metrics = read_json(run_dir / "metrics.json", SCHEMA)
        cfg = read_json(run_dir / "config.json", SCHEMA)
        cfg.pop("schema")
        if not changed_fields(cfg, config.to_dict()) and metrics["epochs"] == config.epochs:
            return metrics
    except (ArtifactError, KeyError):
        pass
    resume = (run_dir / "checkpoint.pt").is_file()
    try:
        metrics = train(config, run_dir, resume=resume, progress=progress)
    except ValueError:
        if not resume:
            raise
        metrics = train(config, run_dir, resume=False, progress=progress)
    return metrics


def ablate(base: TrainConfig, out: str | Path, seeds: int = 3,
           params: Sequence[str] = DEFAULT_PARAMS, alphas: Sequence[str] = DEFAULT_ALPHAS,
           progress: bool = True, figures: bool = True) -> dict[str, Any]:
    """Train the grid ``params x alphas x seeds`` from ``base`` and write the table and plot
    (and with ``figures`` the weight and scale distributions)."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, not {seeds!r}")
    out = Path(out)
    cells = []
    for param in params:
        for alpha in alphas:
            accs, walls, runs, histories = [], [], [], []
            for seed in range(seeds):
                config = dataclasses.replace(base, param=param, alpha=alpha, seed=base.seed + seed)
                run_dir = out / "runs" / f"{param}-{alpha}-s{config.seed}"
                if progress:
                    print(f"[ablate] {param} / {alpha} / seed {config.seed} -> {run_dir}", flush=True)
                metrics = _run_once(config, run_dir, progress)
                accs.append(metrics["test_accuracy"])
                walls.append(metrics["wall_s"])
                runs.append(run_dir.name)
                histories.append(metrics["history"])
            cells.append({
                "param": param, "alpha": alpha, "accuracies": accs,
                "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "mean_wall_s": statistics.fmean(walls), "runs": runs,
                "machines": sorted({_trained_on(out / "runs" / r) for r in runs}),
                **_convergence(histories),
            })
    result = {"schema": SCHEMA, "model": base.model, "dataset": base.dataset,
              "epochs": base.resolved().epochs,
              "seeds": seeds, "cells": cells}
    text = _table(result)
    if figures:
        from .ablate_figures import distributions, plot_scales, plot_weights, table

        dists = distributions(result, out)
        title = f"{result['model']} on {result['dataset']}"
        atomic_write(out / "ablation-weights.png", lambda tmp: plot_weights(dists, tmp, title))
        atomic_write(out / "ablation-scales.png", lambda tmp: plot_scales(dists, tmp, title))
        result["distributions"] = {k: {n: v for n, v in c.items() if n != "_arrays"}
                                   for k, c in dists.items()}
        text += ("\nReal weights and scales of each cell's first seed (ablation-weights.png, "
                 "ablation-scales.png):\n\n" + table(dists))
    write_json(out / "ablation.json", result)
    atomic_write(out / "ablation.md", lambda tmp: tmp.write_text(text))
    atomic_write(out / "ablation.png", lambda tmp: _plot(result, tmp))
    return result


TAIL = 10  # the last epochs whose test accuracy says whether a run has settled


def _convergence(histories: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Whether a cell's runs had settled: the range of their test accuracy over the last
    :data:`TAIL` epochs and of their training accuracy at the last epoch."""
    tail = [r["test_accuracy"] for h in histories for r in h[-TAIL:]]
    train = [h[-1]["train_accuracy"] for h in histories]
    return {"tail_epochs": min(TAIL, *(len(h) for h in histories)),
            "tail_test_range": [min(tail), max(tail)], "final_train_range": [min(train), max(train)]}


def _table(result: dict[str, Any]) -> str:
    alphas = list(dict.fromkeys(c["alpha"] for c in result["cells"]))
    params = list(dict.fromkeys(c["param"] for c in result["cells"]))
    by = {(c["param"], c["alpha"]): c for c in result["cells"]}
    lines = [
        f"Ablation: `{result['model']}` on `{result['dataset']}`, {result['epochs']} epochs, "
        f"{result['seeds']} seeds; test accuracy (%) mean +- std.",
        "",
        "| parametrization | " + " | ".join(f"alpha {a}" for a in alphas) + " |",
        "|---|" + "---|" * len(alphas),
    ]
    for p in params:
        row = [f"{100 * by[p, a]['mean']:.2f} +- {100 * by[p, a]['std']:.2f}" for a in alphas]
        lines.append(f"| {p} | " + " | ".join(row) + " |")
    tail = min(c["tail_epochs"] for c in result["cells"])
    lines += ["", f"Whether the runs had settled (each cell's seeds): test accuracy (%) over "
              f"the last {tail} epochs, training accuracy (%) at the last:", "",
              f"| cell | test, last {tail} epochs | train, last epoch |", "|---|---|---|"]
    for c in result["cells"]:
        (t0, t1), (r0, r1) = c["tail_test_range"], c["final_train_range"]
        lines.append(f"| {c['param']}/{c['alpha']} | {100 * t0:.2f}-{100 * t1:.2f} "
                     f"| {100 * r0:.2f}-{100 * r1:.2f} |")
    machines = sorted({m for c in result["cells"] for m in c.get("machines", [])})
    if machines:
        lines += ["", "Trained on: " + "; ".join(machines) + "."]
    return "\n".join(lines) + "\n"


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = list(dict.fromkeys(c["alpha"] for c in result["cells"]))
    params = list(dict.fromkeys(c["param"] for c in result["cells"]))
    by = {(c["param"], c["alpha"]): c for c in result["cells"]}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    width = 0.8 / len(alphas)
    for i, a in enumerate(alphas):
        xs = [j + (i - (len(alphas) - 1) / 2) * width for j in range(len(params))]
        ax.bar(xs, [100 * by[p, a]["mean"] for p in params], width,
               yerr=[100 * by[p, a]["std"] for p in params], capsize=3, label=f"alpha {a}")
    lows = [100 * min(c["accuracies"]) for c in result["cells"]]
    highs = [100 * max(c["accuracies"]) for c in result["cells"]]
    span = max(highs) - min(lows)
    ax.set_ylim(max(0.0, min(lows) - max(1.0, span)), min(100.0, max(highs) + max(0.5, span / 2)))
    ax.set_xticks(range(len(params)), params)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{result['model']} on {result['dataset']}: {result['seeds']} seeds, "
                 f"{result['epochs']} epochs")
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
