"""``bitfold bench --sweep``: every folding on the trade-off curve, costed, and its plot.

Writes ``BUILD/sweep.json`` and ``sweep.png``, replaced together
(:func:`bitfold.artifacts.replaced_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import replaced_files, write_json

__all__ = ["SWEEP_SCHEMA", "plot_sweep", "sweep"]

SWEEP_SCHEMA = 1


def sweep(build: str | Path, device: str = "ecp5", clock_mhz: float = 100.0,
          allow_padding: bool = False) -> dict[str, Any]:
    """Cost every folding on the trade-off curve; write sweep.json and sweep.png.

    One design per reachable cycles-per-frame budget, the cheapest there
    (``compiler.folding.trade_off``), so every point is a design ``bitfold
    generate --folding`` would build. LUTs and block RAMs are the compiler's
    resource model: it counts the datapath only (BENCHMARKS.md compares it with
    nextpnr). A design is on the Pareto front when no other is at least as fast
    with no more LUTs and no more block RAMs, and better in one of them.
    """
    from bitfold.compiler.folding import evaluate_folding, folding_choice, read_folding, trade_off
    from bitfold.compiler.serialize import load_graph

    build = Path(build)
    graph = load_graph(build)
    foldings = trade_off(graph, clock_mhz, device, allow_padding)
    rows = [{"folding": [[c.pe, c.simd] for c in f.layers], "cycles_per_frame": f.cycles_per_frame,
             "fps": f.fps, "luts": f.total("luts"), "brams": f.total("brams"),
             "ffs": f.total("ffs")} for f in foldings]
    for d in rows:
        d["pareto"] = not any(
            o["fps"] >= d["fps"] and o["luts"] <= d["luts"] and o["brams"] <= d["brams"]
            and (o["fps"], o["luts"], o["brams"]) != (d["fps"], d["luts"], d["brams"])
            for o in rows)
    rows.sort(key=lambda d: d["fps"])
    doc = {"schema": SWEEP_SCHEMA, "graph": graph.name, "device": device,
           "clock_mhz": clock_mhz, "resource_model": "compiler cost model (estimate)",
           "layers": [c.name for c in foldings[0].layers], "designs": rows}
    if (build / "folding.json").is_file():
        own = read_folding(build / "folding.json", graph)
        costed = evaluate_folding(graph, folding_choice(own), clock_mhz, device,
                                  own.allow_padding)
        doc["current"] = {"folding": [[c.pe, c.simd] for c in costed.layers],
                          "fps": costed.fps, "luts": costed.total("luts"),
                          "brams": costed.total("brams")}
    with replaced_files(build, "sweep.json", "sweep.png") as tmp:
        write_json(tmp["sweep.json"], doc)
        plot_sweep(doc, tmp["sweep.png"])
    return doc


def plot_sweep(doc: dict[str, Any], path: Path) -> None:
    """Frames/s against LUTs and against block RAMs; colour is the other resource, red rings
    mark the Pareto front and a star the build's own folding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["designs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, what, other, label in ((axes[0], "luts", "brams", "LUTs (estimate)"),
                                   (axes[1], "brams", "luts", "block RAMs (estimate)")):
        x = np.array([r[what] for r in rows], float)
        y = np.array([r["fps"] for r in rows])
        front = np.array([r["pareto"] for r in rows])
        dots = ax.scatter(x, y, c=[r[other] for r in rows], cmap="viridis", s=28, zorder=3)
        ax.scatter(x[front], y[front], s=90, facecolors="none", edgecolors="tab:red",
                   linewidths=1.2, zorder=2, label="Pareto front (fps, LUTs, BRAMs)")
        own = doc.get("current")
        if own:
            ax.scatter([own[what]], [own["fps"]], marker="*", s=260, color="tab:orange",
                       edgecolors="black", zorder=4, label="this build's folding")
        fig.colorbar(dots, ax=ax, label=other.replace("luts", "LUTs").replace("brams",
                                                                               "block RAMs"))
        ax.set_xlabel(label)
        ax.set_ylabel(f"frames/s at {doc['clock_mhz']:g} MHz")
        ax.set_yscale("log")
        if what == "luts":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{doc['graph']}: throughput against resources, {len(rows)} foldings "
                 f"(cheapest at each cycle budget; {doc['device']} cost model)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
