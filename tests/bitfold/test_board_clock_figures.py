"""Bench and the run report use the clock the bitstream runs at, with Fmax beside it."""

from __future__ import annotations

import hashlib
import shutil

from bitfold.artifacts import read_json, write_json
from bitfold.bench import hardware_figures
from bitfold.report import _facts
from tests.boards.helpers import tiny_build

BITS = b"a bitstream"
BOARD = {"schema": 1, "board": "icebreaker", "device": "iCE40UP5K", "luts": 900, "ffs": 300,
         "bitstream": "top.bin", "bitstream_sha256": hashlib.sha256(BITS).hexdigest(),
         "brams": 1, "fmax_mhz": 40.2, "clock_mhz": 38.25, "target_mhz": 38.25,
         "oscillator_mhz": 12.0, "clock_source": "pll", "timing_met": True,
         "pll": {"primitive": "SB_PLL40_PAD", "output_mhz": 38.25},
         "estimate": {"luts": 400, "brams": 1}, "utilization": {}}


def _built(tmp_path, report: dict):
    build = tiny_build(tmp_path)
    out = build / "boards" / "icebreaker"
    out.mkdir(parents=True)
    shutil.copy(build / "folding.json", out / "folding.json")
    write_json(out / "report.json", report)
    (out / "top.bin").write_bytes(BITS)
    return build


def test_frames_per_second_are_at_the_bitstream_clock(tmp_path) -> None:
    build = _built(tmp_path, BOARD)
    cycles = read_json(build / "folding.json")["totals"]["cycles_per_frame"]
    hw = hardware_figures(build)
    assert hw["clock_mhz"] == 38.25 and hw["fmax_mhz"] == 40.2
    assert hw["fps"] == 38.25e6 / cycles and hw["fps_at_fmax"] == 40.2e6 / cycles
    assert hw["clock_source"] == "the icebreaker bitstream's clock (PLL; nextpnr Fmax 40.2 MHz)"


def test_a_report_from_before_the_pll_still_reads(tmp_path) -> None:
    old = {k: v for k, v in BOARD.items()
           if k not in ("clock_mhz", "oscillator_mhz", "clock_source", "pll")}
    hw = hardware_figures(_built(tmp_path, {**old, "target_mhz": 12.0}))
    assert hw["clock_mhz"] == 12.0 and "(oscillator;" in hw["clock_source"]


def test_the_run_report_names_the_clock_and_fmax(tmp_path) -> None:
    hw = hardware_figures(_built(tmp_path, BOARD))
    facts = _facts({"golden": None, "sim": None, "folding": None, "board": BOARD,
                    "bench": {"hardware": hw, "cpu": {"best": {}, "rows": [], "threads": 2}}})
    assert facts["Fmax"] == ("40.2 MHz on icebreaker (iCE40UP5K); clock 38.25 MHz (PLL from the "
                             "12 MHz oscillator), timing met")
    assert facts["hardware"] == (f"{hw['fps']:,.0f} frames/s at 38.25 MHz "
                                 f"({hw['fps_at_fmax']:,.0f} at Fmax 40.2 MHz)")


def _table(hw: dict) -> str:
    from bitfold.bench import bench_table

    return bench_table({"hardware": hw, "machine": {"cpu": "a CPU", "load_average": 0.5},
                        "cpu": {"rows": [], "best": {}, "threads": 2, "frames": 8,
                                "dataset": "digits"}})


def test_bench_md_quotes_the_bitstream_clock_with_fmax_beside_it_named(tmp_path) -> None:
    hw = hardware_figures(_built(tmp_path, BOARD))
    rows = [ln for ln in _table(hw).splitlines() if ln.startswith("| FPGA")]
    assert rows == [
        f"| FPGA accelerator (icebreaker bitstream at its 38.25 MHz clock) | 1 (streaming) | "
        f"{hw['fps']:,.0f} | n/a | 1.00 |",
        f"| FPGA accelerator at nextpnr's Fmax 40.2 MHz (not the clock the bitstream runs at) | "
        f"1 (streaming) | {hw['fps_at_fmax']:,.0f} | n/a | {38.25 / 40.2:.2f} |"]


def test_bench_md_never_calls_a_clock_stated_that_was_not(tmp_path) -> None:
    build = tiny_build(tmp_path)
    unbuilt = _table(hardware_figures(build))
    assert "stated" not in unbuilt
    assert "| FPGA accelerator (at folding.json's 12 MHz target clock; no bitstream built) |" \
        in unbuilt
    stated = _table(hardware_figures(build, clock_mhz=30.0))
    assert "| FPGA accelerator (at the stated 30 MHz (--clock-mhz)) | 1 (streaming) | " in stated
    assert "Fmax" not in stated
