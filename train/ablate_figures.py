"""What the ablation's trained networks look like inside: Bulat et al.'s Figs. 2 and 3.

For one run per grid cell (its first seed) :func:`distributions` collects the real-valued
weight of every binary layer before it is binarized (the factorization's reconstruction, or
the dense latent weight) and every per-channel scale ``alpha``, and summarizes them: how much
of the weight lies where the straight-through estimator passes gradients (``|W| <= 1``), how
much sits so close to zero that one step can flip its sign, and how spread and how often
negative the scales are. :func:`plot_weights` and :func:`plot_scales` draw the histograms
(``ablation-weights.png``, ``ablation-scales.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["collect", "distributions", "plot_scales", "plot_weights", "table"]

NEAR_ZERO = 0.01  # |W| below this fraction of its channel's mean |W| counts as near zero


def collect(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every binary layer's real weight (flattened, divided by its channel's mean ``|W|``),
    the raw weight, and every per-channel scale of the run in ``run_dir``."""
    from .layers import binary_layers
    from .model_setup import load_run

    model, _, _ = load_run(run_dir)
    normed, raw, scales = [], [], []
    with torch.no_grad():
        for _, layer in binary_layers(model):
            w = layer.real_weight().detach().float()
            dims = tuple(range(1, w.dim()))
            mean_abs = w.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
            normed.append((w / mean_abs).flatten().numpy())
            raw.append(w.flatten().numpy())
            if layer.binarizer is not None:
                scales.append(layer.binarizer.scale(w).detach().flatten().numpy())
    empty = np.zeros(0, dtype=np.float32)
    return (np.concatenate(normed), np.concatenate(raw),
            np.concatenate(scales) if scales else empty)


def _summary(normed: np.ndarray, raw: np.ndarray, scales: np.ndarray) -> dict[str, float]:
    out = {"weights": int(raw.size), "in_ste_window": float(np.mean(np.abs(raw) <= 1.0)),
           "near_zero": float(np.mean(np.abs(normed) < NEAR_ZERO)),
           "abs_over_mean_std": float(np.std(np.abs(normed)))}
    if scales.size:
        out.update(alpha_mean=float(np.mean(scales)), alpha_std=float(np.std(scales)),
                   alpha_negative=float(np.mean(scales < 0)),
                   alpha_cv=float(np.std(scales) / max(abs(float(np.mean(scales))), 1e-12)))
    return out


def distributions(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Per cell of ``result``: the summary of its first seed's run (``run``), and the arrays
    to plot (``_arrays``, not saved)."""
    cells = {}
    for cell in result["cells"]:
        run = out / "runs" / cell["runs"][0]
        normed, raw, scales = collect(run)
        cells[f"{cell['param']}/{cell['alpha']}"] = {
            "run": cell["runs"][0], **_summary(normed, raw, scales),
            "_arrays": (normed, scales)}
    return cells


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_weights(cells: dict[str, Any], path: Path, title: str) -> None:
    """Histograms of the normalized real weights, one panel per alpha mode (Fig. 3's view)."""
    plt = _pyplot()
    alphas = list(dict.fromkeys(k.split("/")[1] for k in cells))
    fig, axes = plt.subplots(1, len(alphas), figsize=(5 * len(alphas), 3.6), dpi=120,
                             squeeze=False)
    bins = np.linspace(-4, 4, 161)
    for ax, alpha in zip(axes[0], alphas, strict=True):
        for key, cell in cells.items():
            if key.endswith("/" + alpha):
                ax.hist(np.clip(cell["_arrays"][0], -4, 4), bins=bins, density=True,
                        histtype="step", label=key.split("/")[0])
        ax.set_title(f"alpha {alpha}: W / mean|W| per channel, clipped to +-4", fontsize=10)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: real weights before binarization")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_scales(cells: dict[str, Any], path: Path, title: str) -> None:
    """Histograms of every cell's per-channel scales (Fig. 2's view)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for key, cell in cells.items():
        scales = cell["_arrays"][1]
        if scales.size:
            ax.hist(scales, bins=60, density=True, histtype="step", label=key)
    ax.set_title(f"{title}: per-channel scales alpha")
    ax.set_xlabel("alpha")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def table(cells: dict[str, Any]) -> str:
    """The summaries as a Markdown table."""
    lines = ["| cell | in the STE window (abs(W) <= 1) | near zero | alpha mean +- std | "
             "alpha < 0 |", "|---|---|---|---|---|"]
    for key, c in cells.items():
        alpha = (f"{c['alpha_mean']:.3g} +- {c['alpha_std']:.2g}" if "alpha_mean" in c else "-")
        neg = f"{100 * c['alpha_negative']:.1f}%" if "alpha_negative" in c else "-"
        lines.append(f"| {key} | {100 * c['in_ste_window']:.1f}% | "
                     f"{100 * c['near_zero']:.2f}% | {alpha} | {neg} |")
    return "\n".join(lines) + "\n"
