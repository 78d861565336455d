"""``bitfold bench``: the accelerator's frames/s against CPU baselines for the same network.

Hardware: frames/s = clock / cycles per frame, with the clock the board's bitstream
runs at (``clock_mhz`` of ``BUILD/boards/NAME/report.json``; its PLL clock, with
nextpnr's Fmax beside it as ``fps_at_fmax``) or a stated one, and the
cycles per frame measured in RTL simulation (``BUILD/sim/report.json``) or, when
there is none, the analytic figure of ``BUILD/folding.json`` (said so in the
result). Latency is the simulated first-frame latency in cycles over that clock.

CPU, on this machine and all its cores, on the build's test frames, each at
batch 1 and at its best batch of :data:`BATCHES`:

* ``torch-float``: the same architecture with the run's real-valued (latent)
  weights and hard-tanh where the binary net takes the sign;
* ``torch-binary``: the trained binary network in eval mode with its binary
  weights materialized (``alpha * sign(W)`` as plain tensors, no factorization
  recomputed per call), as a torch user would deploy it;
* ``golden-packed``: the compiler's packed-bit executor on the integer graph,
  batches split over the cores in threads.

Writes ``BUILD/bench.json`` (``hardware`` and ``cpu`` sections), ``bench.md`` and
``bench.png``, replaced together (:func:`bitfold.artifacts.replaced_files`); the sweep of
foldings is :mod:`bitfold.sweep`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import ArtifactError, read_json, replaced_files, sha256_file, write_json
from bitfold.cpu_bench import BATCHES, cpu_baselines, float_twin, machine  # noqa: F401  (API)
from bitfold.sweep import SWEEP_SCHEMA, plot_sweep, sweep  # noqa: F401  (bitfold.bench's API)

__all__ = ["BATCHES", "BENCH_SCHEMA", "SWEEP_SCHEMA", "bench", "bench_table", "cpu_baselines",
           "hardware_figures", "hardware_rows", "sweep"]

BENCH_SCHEMA = 1
CPU_LABELS = {
    "torch-float": "torch float32 (same net, real weights)",
    "torch-binary": "torch binary (eval, materialized weights)",
    "golden-packed": "packed-bit golden executor",
}


def hardware_figures(build: str | Path, board: str | None = None,
                     clock_mhz: float | None = None) -> dict[str, Any]:
    """Frames/s and latency of the accelerator; see the module docstring for the sources."""
    build = Path(build)
    folding = read_json(build / "folding.json")
    analytic = folding["totals"]["cycles_per_frame"]
    cycles, cycles_src, latency = _cycles(build, analytic)

    def design(doc: dict[str, Any]) -> list[tuple]:
        return [(x["pe"], x["simd"], x.get("layout")) for x in doc["layers"]]

    ours = design(folding)

    def same_design(report: Path) -> bool:
        built = report.parent / "folding.json"
        return built.is_file() and design(read_json(built)) == ours

    from bitfold.boards.targets import BOARDS

    reports = sorted(p for p in (build / "boards").glob("*/report.json")
                     if p.parent.name in BOARDS)  # not NAME-selftest, NAME.failed
    if board is not None:
        reports = [p for p in reports if p.parent.name == board]
        if not reports and clock_mhz is None:
            raise ArtifactError(f"{build}: no board report for {board} (run `bitfold build "
                                f"{build} --board {board}`), or state --clock-mhz")
        if reports and clock_mhz is None and not same_design(reports[0]):
            raise ArtifactError(f"{reports[0].parent}: built at another folding than "
                                f"{build}/folding.json; rebuild it (`bitfold build {build} "
                                f"--board {board}`) or state --clock-mhz")
    reports = [p for p in reports if same_design(p)]
    fig: dict[str, Any] = {"cycles_per_frame": cycles, "cycles_source": cycles_src,
                           "analytic_cycles_per_frame": analytic, "latency_cycles": latency}
    if clock_mhz is not None:
        fig.update(clock_mhz=clock_mhz, clock_kind="stated", clock_source="stated (--clock-mhz)")
    elif reports:
        from bitfold.boards.flow import read_board_report

        rep = read_board_report(reports[0].parent)  # the bitstream it describes, or refused
        clock = rep.get("clock_mhz", rep["target_mhz"])  # the clock the bitstream runs at
        source = "PLL" if rep.get("pll") else "oscillator"
        fig.update(clock_mhz=clock, clock_kind="bitstream",
                   clock_source=f"the {rep['board']} bitstream's clock ({source}"
                   f"; nextpnr Fmax {rep['fmax_mhz']:g} MHz)", board=rep["board"],
                   board_clock_mhz=clock, fmax_mhz=rep["fmax_mhz"],
                   luts=rep["luts"], ffs=rep["ffs"], brams=rep["brams"],
                   timing_met=rep["timing_met"])
    else:
        fig.update(clock_mhz=folding["clock_mhz"], clock_kind="folding",
                   clock_source="folding.json's target clock (no board build)")
    fig["fps"] = fig["clock_mhz"] * 1e6 / cycles
    if "board_clock_mhz" in fig:
        fig["fps_board_clock"] = fig["board_clock_mhz"] * 1e6 / cycles
    if "fmax_mhz" in fig:
        fig["fps_at_fmax"] = fig["fmax_mhz"] * 1e6 / cycles
    fig["latency_us"] = None if latency is None else latency / fig["clock_mhz"]
    return fig


def bench(build: str | Path, board: str | None = None, clock_mhz: float | None = None,
          frames: int = 512, batches: tuple[int, ...] = BATCHES, min_s: float = 0.2,
          repeats: int = 3, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Hardware and CPU figures for ``build``; writes bench.json, bench.md and bench.png."""
    build = Path(build)
    hw = hardware_figures(build, board, clock_mhz)
    cpu = cpu_baselines(build, frames, batches, min_s, repeats, progress=progress)
    for best in cpu["best"].values():
        best["hardware_ratio"] = hw["fps"] / best["fps"]
    doc = {"schema": BENCH_SCHEMA, "build": str(build), "machine": machine(), "hardware": hw,
           "cpu": cpu}
    with replaced_files(build, "bench.json", "bench.md", "bench.png") as tmp:
        write_json(tmp["bench.json"], doc)
        tmp["bench.md"].write_text(bench_table(doc))
        plot_bench(doc, tmp["bench.png"])
    return doc


def _cycles(build: Path, analytic: int) -> tuple[int, str, int | None]:
    """``(cycles per frame, where from, first-frame latency)``: measured when ``build``'s
    simulation report is bit-exact and of this folding and rtl/, else the analytic figure."""
    sim_path = build / "sim" / "report.json"
    sim = read_json(sim_path) if sim_path.is_file() else None
    if sim is not None and sim.get("analytic_cycles_per_frame") != analytic:
        sim = None  # simulated at another folding: not this design's figure
    manifest = build / "rtl" / "manifest.json"
    if sim is not None and "rtl_manifest_sha256" in sim and (
            not manifest.is_file() or sha256_file(manifest) != sim["rtl_manifest_sha256"]):
        sim = None  # measured on another rtl/ (generated again since, or a --rtl copy)
    if sim is not None and sim.get("cycles_per_frame") and not sim.get("mismatches"):
        return sim["cycles_per_frame"], f"measured ({sim['simulator']})", sim.get("latency_cycles")
    return analytic, "analytic (no bit-exact simulation report)", None


def _clock_label(hw: dict[str, Any]) -> str:
    """What the accelerator's frames/s are at: the bitstream's clock, a stated one or the
    folding's target (a bench.json from before ``clock_kind`` reads as its source says)."""
    kind = hw.get("clock_kind") or ("bitstream" if "board" in hw else
                                    "stated" if hw["clock_source"].startswith("stated") else
                                    "folding")
    mhz = f"{hw['clock_mhz']:g} MHz"
    if kind == "bitstream":
        return f"{hw['board']} bitstream at its {mhz} clock"
    if kind == "stated":
        return f"at the stated {mhz} (--clock-mhz)"
    return f"at folding.json's {mhz} target clock; no bitstream built"


def hardware_rows(hw: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(label, frames/s, latency in µs) of the accelerator: at the clock its frames/s are
    quoted at, and, beside it and named so, at nextpnr's Fmax when a bitstream was built."""
    rows = [(f"FPGA accelerator ({_clock_label(hw)})", hw["fps"], hw["latency_us"])]
    if hw.get("fps_at_fmax") and hw.get("clock_kind", "bitstream") == "bitstream":
        latency = (None if hw.get("latency_cycles") is None
                   else hw["latency_cycles"] / hw["fmax_mhz"])
        rows.append((f"FPGA accelerator at nextpnr's Fmax {hw['fmax_mhz']:g} MHz (not the "
                     "clock the bitstream runs at)", hw["fps_at_fmax"], latency))
    return rows


def bench_table(doc: dict[str, Any]) -> str:
    """Markdown: hardware against every CPU baseline at batch 1 and at its best batch."""
    hw, cpu, m = doc["hardware"], doc["cpu"], doc["machine"]
    lines = [
        f"Hardware: {hw['cycles_per_frame']:g} cycles/frame ({hw['cycles_source']}) at "
        f"{hw['clock_mhz']:g} MHz ({hw['clock_source']}).",
        f"CPU: {m['cpu']}, {cpu['threads']} threads, load {m['load_average']}; "
        f"{cpu['frames']} {cpu['dataset']} test frames.",
        "",
        "| engine | batch | frames/s | latency | hardware / this |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {label} | 1 (streaming) | {fps:,.0f} | {_latency(us)} | {hw['fps'] / fps:.2f} |"
              for label, fps, us in hardware_rows(hw)]
    for name in CPU_LABELS:
        rows = [r for r in cpu["rows"] if r["name"] == name]
        if not rows:
            continue
        best = cpu["best"][name]
        shown = [rows[0]] + ([best] if best["batch"] != rows[0]["batch"] else [])
        for r in shown:
            tag = "" if r is rows[0] else " (best)"
            lines.append(f"| {CPU_LABELS[name]} | {r['batch']}{tag} | {r['fps']:,.0f} | "
                         f"{_latency(r['latency_ms'] * 1e3)} | {hw['fps'] / r['fps']:.2f} |")
    return "\n".join(lines) + "\n"


def _latency(us: float | None) -> str:
    if us is None:
        return "n/a"
    return f"{us:.1f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def plot_bench(doc: dict[str, Any], path: Path) -> None:
    """Horizontal bars of frames/s (log scale): the accelerator and each CPU baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hw, cpu = doc["hardware"], doc["cpu"]
    labels, fps, colors = [f"FPGA ({_clock_label(hw)})"], [hw["fps"]], ["tab:red"]
    for name, label in CPU_LABELS.items():
        rows = [r for r in cpu["rows"] if r["name"] == name]
        if not rows:
            continue
        best = cpu["best"][name]
        shown = [(rows[0], "tab:gray")]
        if best["batch"] != rows[0]["batch"]:
            shown.append((best, "tab:blue"))
        for r, shade in shown:
            labels.append(f"{label}\nbatch {r['batch']}")
            fps.append(r["fps"])
            colors.append(shade)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(labels) + 1.6))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, fps, color=colors)
    for yi, f in zip(y, fps, strict=True):
        ax.text(f, yi, f" {f:,.0f}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(fps) * 8)
    ax.set_xlabel("frames per second (log scale)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:red", label="FPGA accelerator (streaming)"),
                       Patch(color="tab:gray", label="CPU, batch 1"),
                       Patch(color="tab:blue", label="CPU, best batch")],
              fontsize=8, loc="upper right")
    fig.suptitle(f"Throughput: the accelerator against the CPU\n{doc['machine']['cpu']}, "
                 f"{cpu['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
