"""The report of a ``bitfold run``: ``OUT/report.md`` with its plots, and the printed summary.

Everything here is read back from the stages' artifacts (the run's metrics,
golden.json, the simulation and board reports, folding.json, bench.json,
sweep.json and run.json), so the report says what the artifacts say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitfold.artifacts import atomic_write, read_json

__all__ = ["collect", "summary_lines", "write_report"]


def _maybe(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


def collect(out: str | Path) -> dict[str, Any]:
    """Every artifact of the run folder ``out`` the report uses (``None`` where missing)."""
    out = Path(out)
    build = out / "build"
    run = _maybe(out / "run.json") or {}
    board = run.get("board")
    board_report = None
    if board and run.get("bitstream", True) and (build / "boards" / board / "report.json").is_file():
        from bitfold.boards.flow import read_board_report

        board_report = read_board_report(build / "boards" / board)  # checked against its bitstream
    return {
        "out": out, "run": run,
        "config": _maybe(out / "train" / "config.json"),
        "metrics": _maybe(out / "train" / "metrics.json"),
        "compile": _maybe(build / "compile.json"),
        "golden": _maybe(build / "golden.json"),
        "folding": _maybe(build / "folding.json"),
        "sim": _maybe(build / "sim" / "report.json"),
        "board": board_report,
        "bench": _maybe(build / "bench.json"),
        "sweep": _maybe(build / "sweep.json"),
    }


def _quantizer(cfg: dict[str, Any]) -> str:
    """`` / sparse 0.5`` and the like for a run that is not plain binary (else empty)."""
    q = cfg.get("quantizer") or "binary"
    if q == "sparse":
        group = cfg.get("sparse_group")
        nm = f" ({round((1 - cfg['sparsity']) * group)}:{group})" if group else ""
        first = ", first layer too" if cfg.get("sparse_first") else ""
        return f" / sparse {cfg.get('sparsity')}{nm}{first}"
    if q == "composite":
        low = f", low-rank {cfg['low_rank']}" if cfg.get("low_rank") else ""
        return f" / composite K={cfg.get('bases')}{low}"
    if q == "domain":
        return " / domain {a, b}"
    if q == "float":
        return " / float baseline (real weights)"
    return ""


def _input(a: dict[str, Any]) -> str:
    """`` / input pixel >= T`` for a run trained on binarized input (else empty)."""
    encoding = (a.get("compile") or {}).get("input_encoding")
    if encoding is None or a.get("config") is None:  # multi-bit, or imported (named elsewhere)
        return ""
    return f" / input {encoding['summary']}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _rtl_accuracy(a: dict[str, Any]) -> float | None:
    """The accuracy of the classes the RTL produced in simulation (None before there were any)."""
    return (a["sim"] or {}).get("rtl_accuracy")


def _facts(a: dict[str, Any]) -> dict[str, str]:
    """The headline figures as (label, text) pairs, shared by the summary and the report."""
    g, sim, fold, brd, bench = a["golden"], a["sim"], a["folding"], a["board"], a["bench"]
    facts: dict[str, str] = {}
    if g:
        rtl = _rtl_accuracy(a)
        frames = sim["frames"] if sim else None
        ref, key = ("qonnx", "onnx_accuracy") if "onnx_accuracy" in g else ("torch", "torch_accuracy")
        facts["accuracy"] = (f"{ref} {_pct(g.get(key))}, golden {_pct(g['accuracy'])}"
                             f", RTL {_pct(rtl)}"
                             + (f" ({frames} RTL frames)" if frames else "")
                             + f" on the {g['dataset']} test set ({g['frames']} frames)")
        if g.get("onnx_agreement") is not None:
            facts["qonnx vs golden"] = (f"agreement {g['onnx_agreement']:.4f} "
                                        f"({g.get('onnx_disagreement_count', 0)} frames differ)")
        if g.get("agreement") is not None:
            facts["torch vs golden"] = (f"agreement {g['agreement']:.4f} "
                                        f"({g.get('disagreement_count', 0)} frames differ)")
    if sim:
        exact = sim["mismatches"] == 0 and not sim.get("timed_out")
        facts["bit-exact"] = (f"{'yes' if exact else 'NO'}: RTL == golden on "
                              f"{sim['frames'] - sim['mismatches']} of {sim['frames']} frames "
                              f"({sim['simulator']}, {sim['wall_s']:.0f} s)")
        cpf = sim.get("cycles_per_frame")
        facts["cycles/frame"] = (f"{'n/a' if cpf is None else f'{cpf:g}'} measured, "
                                 f"{sim['analytic_cycles_per_frame']} analytic; first-frame "
                                 f"latency {sim['latency_cycles']} cycles")
    if brd:
        clock = brd.get("clock_mhz", brd["target_mhz"])
        source = (f"PLL from the {brd['oscillator_mhz']:g} MHz oscillator" if brd.get("pll")
                  else "the board oscillator")
        facts["Fmax"] = (f"{brd['fmax_mhz']:g} MHz on {brd['board']} ({brd['device']}); clock "
                         f"{clock:g} MHz ({source}), timing "
                         f"{'met' if brd['timing_met'] else 'NOT met'}")
        util = brd.get("utilization", {})
        lut_cap = next((v["available"] for k, v in util.items()
                        if k in ("ICESTORM_LC", "TRELLIS_COMB")), None)
        facts["resources"] = (f"{brd['luts']} LUTs" + (f" of {lut_cap}" if lut_cap else "")
                              + f", {brd['ffs']} FFs, {brd['brams']} block RAMs (nextpnr); "
                              f"estimate {brd['estimate']['luts']} LUTs, "
                              f"{brd['estimate']['brams']} BRAMs")
    elif fold:
        t = fold["totals"]
        facts["resources"] = (f"estimate {t.get('luts')} LUTs, {t.get('brams')} block RAMs "
                              f"(no bitstream built)")
    if bench:
        facts.update(_bench_facts(bench))
    return facts


def _bench_facts(bench: dict[str, Any]) -> dict[str, str]:
    """The ``hardware`` and ``CPU`` lines of :func:`_facts`, from bench.json."""
    hw, cpu = bench["hardware"], bench["cpu"]
    line = f"{hw['fps']:,.0f} frames/s at {hw['clock_mhz']:g} MHz"
    if hw.get("fps_at_fmax"):
        line += f" ({hw['fps_at_fmax']:,.0f} at Fmax {hw['fmax_mhz']:g} MHz)"
    parts = []
    for name, label in (("torch-float", "torch float"), ("torch-binary", "torch binary"),
                        ("golden-packed", "packed golden")):
        best = cpu["best"].get(name)
        if best:
            one = next(r for r in cpu["rows"] if r["name"] == name and r["batch"] == 1)
            text = f"{label} {one['fps']:,.0f} (batch 1)"
            if best["batch"] != 1:
                text += f" / {best['fps']:,.0f} (batch {best['batch']})"
            parts.append(text)
    return {"hardware": line, "CPU": "; ".join(parts) + f" frames/s, {cpu['threads']} threads"}


def _imported(a: dict[str, Any]) -> dict[str, Any]:
    """The header fields of a run on an imported network (no training config)."""
    prov = a["compile"] or {}
    if prov.get("source") != "onnx":
        return {}
    return {"model": Path(prov["onnx"]).name, "dataset": prov.get("dataset"),
            "param": "imported QONNX", "alpha": "from the model"}


def _took(run: dict[str, Any], reused: int, stages: int) -> str:
    """How long the run took: this one's seconds, or, when it reused every stage, those of the
    run that made them (a re-run that ran nothing must not report its own second or so)."""
    if "rerun_s" not in run:
        return (f"{run.get('wall_s', 0):.0f} s"
                + (f" ({reused} of {stages} stages reused)" if reused else ""))
    made = ("time not recorded" if run.get("wall_s") is None
            else f"{run['wall_s']:.0f} s")
    return f"{made} when its stages ran (this re-run reused all {stages}, {run['rerun_s']:.1f} s)"


def summary_lines(out: str | Path) -> list[str]:
    """The short summary ``bitfold run`` prints at the end."""
    a = collect(out)
    cfg = a["config"] or _imported(a)
    stages = a["run"].get("stages", {})
    reused = sum(s["reused"] for s in stages.values())
    head = (f"bitfold run: {cfg.get('model', '?')} on {cfg.get('dataset', '?')}, "
            f"{cfg.get('param', '?')} / alpha {cfg.get('alpha', '?')}{_quantizer(cfg)}{_input(a)}, "
            + _took(a["run"], reused, len(stages)))
    facts = _facts(a)
    width = max(len(k) for k in facts) if facts else 0
    return [head] + [f"  {k:<{width}}  {v}" for k, v in facts.items()]


def _plot_training(metrics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = metrics["history"]
    ep = [e["epoch"] for e in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(ep, [e["train_loss"] for e in h], marker="o", ms=3, color="tab:blue")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.grid(alpha=0.3)
    name = metrics.get("metric", "acc")
    if "train_accuracy" in h[0]:
        ax2.plot(ep, [100 * e["train_accuracy"] for e in h], marker="o", ms=3, label="train")
    ax2.plot(ep, [100 * e["test_accuracy"] for e in h], marker="o", ms=3, label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(f"{'accuracy' if name == 'acc' else name} (%)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Training: final test {100 * metrics['test_accuracy']:.2f}% after "
                 f"{metrics['epochs']} epochs ({metrics['wall_s']:.0f} s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def _plot_layers(folding: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = folding["layers"] + folding.get("stages", [])
    names = [x["name"] for x in layers]
    cycles = [x["cycles"] for x in layers]
    worst = max(cycles)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    x = np.arange(len(names))
    axes[0].bar(x, cycles, color=["tab:red" if c == worst else "tab:blue" for c in cycles])
    axes[0].set_ylabel("cycles per frame")
    axes[0].set_title("cycles (red: the bottleneck)", fontsize=9)
    for ax, what, title in ((axes[1], "luts", "LUTs (estimate)"),
                            (axes[2], "brams", "block RAMs (estimate)")):
        ax.bar(x, [v.get(what, 0) for v in layers], color="tab:green")
        ax.set_title(title, fontsize=9)
    labels = [f"{n}\n" + (f"{v['pe']}x{v['simd']}" if "pe" in v else "argmax")
              for n, v in zip(names, layers, strict=True)]
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=7, rotation=30 if len(names) > 5 else 0)
        ax.grid(alpha=0.3, axis="y")
    t = folding["totals"]
    fig.suptitle(f"Per layer (name, PE x SIMD): {t['cycles_per_frame']} cycles/frame at the "
                 f"bottleneck; resources from the {folding['device']} cost model", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def _whole_run(run: dict[str, Any]) -> str:
    """How long the run took, from run.json (a re-run that reused every stage says so)."""
    if "rerun_s" not in run:
        return f"whole run {run.get('wall_s', 0):.0f} s (load average {run.get('load_average')})"
    if run.get("wall_s") is None:
        return (f"every stage reused from an earlier run whose whole time was not recorded "
                f"(this re-run {run['rerun_s']:.1f} s; each stage's time when it ran is below)")
    return (f"whole run {run['wall_s']:.0f} s (load average {run.get('load_average')}) when "
            f"its stages ran; this re-run reused every stage ({run['rerun_s']:.1f} s)")


def write_report(out: str | Path) -> Path:
    """Write ``OUT/report.md`` and its PNG plots from the run's artifacts."""
    from bitfold.bench import bench_table, plot_bench
    from bitfold.sweep import plot_sweep

    out = Path(out)
    a = collect(out)
    cfg, metrics, fold, run = a["config"] or _imported(a), a["metrics"], a["folding"], a["run"]
    lines = [f"# bitfold run: {cfg.get('model')} on {cfg.get('dataset')}", ""]
    about = (f"Imported from {cfg['model']} with bitfold import (no training)" if a["config"] is None
             and cfg else f"{cfg.get('param')} parametrization, alpha {cfg.get('alpha')}"
             f"{_quantizer(cfg)}{_input(a)}, {cfg.get('epochs')} epochs, seed {cfg.get('seed')}")
    lines += [f"{about}; {_whole_run(run)}.", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _facts(a).items()]
    if metrics:
        atomic_write(out / "training.png", lambda tmp: _plot_training(metrics, tmp))
        lines += ["", "## Training", "", "![training curves](training.png)"]
    if fold:
        atomic_write(out / "layers.png", lambda tmp: _plot_layers(fold, tmp))
        lines += ["", "## Layers and folding", "",
                  "| layer | PE | SIMD | cycles/frame | weight memory | LUTs (est.) | BRAMs (est.) |",
                  "|---|---|---|---|---|---|---|"]
        for x in fold["layers"]:
            lines.append(f"| {x['name']} | {x['pe']} | {x['simd']} | {x['cycles']} | "
                         f"{x['weight_memory']} | {x['luts']} | {x['brams']} |")
        for x in fold.get("stages", []):
            lines.append(f"| {x['name']} ({x['kind']}) | | | {x['cycles']} | | {x['luts']} | "
                         f"{x['brams']} |")
        lines += ["", "![per-layer cycles and resources](layers.png)"]
    if a["bench"]:
        atomic_write(out / "throughput.png", lambda tmp: plot_bench(a["bench"], tmp))
        lines += ["", "## Throughput: the accelerator against the CPU", "",
                  bench_table(a["bench"]).rstrip(), "", "![throughput](throughput.png)"]
    if a["sweep"]:
        atomic_write(out / "foldings.png", lambda tmp: plot_sweep(a["sweep"], tmp))
        front = [d for d in a["sweep"]["designs"] if d["pareto"]]
        lines += ["", "## Other foldings", "",
                  f"{len(a['sweep']['designs'])} foldings (the cheapest at each cycle budget), "
                  f"{len(front)} on the Pareto front, costed with the "
                  f"{a['sweep']['device']} model at {a['sweep']['clock_mhz']:g} MHz. Pick one "
                  "with `bitfold fold BUILD --target-fps F` or `--max-luts N`.", "",
                  "![throughput against resources](foldings.png)"]
    if run.get("stages"):
        lines += ["", "## Stages", "", "Each stage runs alone with the command shown; "
                  "`bitfold run` reuses a stage whose inputs are unchanged.", "",
                  "| stage | seconds | command |", "|---|---|---|"]
        for name, s in run["stages"].items():
            took = f"{s['seconds']:.1f}" + (" (reused)" if s["reused"] else "")
            lines.append(f"| {name} | {took} | `{s['command']}` |")
        if "bitstream" in run["stages"]:
            lines += ["", "The bitstream stage runs in a child process alongside simulate."]
    text = "\n".join(lines) + "\n"
    return atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
