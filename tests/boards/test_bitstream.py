"""Real bitstreams with the YoWASP toolchain (slow; one small build runs in CI)."""

from __future__ import annotations

import json
import subprocess

import pytest

from bitfold.boards.flow import FMAX_MARGIN, build_board
from bitfold.boards.pll import FIRST_TARGET_MHZ
from bitfold.boards.targets import get_board

from .helpers import tiny_build

FIELDS = {"board", "device", "luts", "ffs", "brams", "fmax_mhz", "target_mhz", "bitstream",
          "build_s", "clock_mhz", "oscillator_mhz", "pll", "timing_met", "attempts"}


@pytest.mark.slow
@pytest.mark.ci
def test_tiny_network_bitstream_on_icebreaker(tmp_path) -> None:
    build = tiny_build(tmp_path)
    report = build_board(build, get_board("icebreaker"), seed=1, progress=False)
    out = build / "boards" / "icebreaker"
    assert FIELDS <= set(report)
    assert json.loads((out / "report.json").read_text()) == report
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K"
    assert 0 < report["luts"] <= 5280 and report["ffs"] > 0 and report["fmax_mhz"] > 0
    # the flow's clock: the first target, or once more below nextpnr's Fmax if that missed
    first, *rest = report["attempts"]
    assert first["clock_mhz"] == FIRST_TARGET_MHZ["ice40"] and len(rest) <= 1
    assert (first["timing_met"] is True) == (not rest)
    if rest:
        assert rest[0]["clock_mhz"] <= first["fmax_mhz"] * (1 - FMAX_MARGIN)
    clock = report["clock_mhz"]
    assert report["target_mhz"] == clock == report["attempts"][-1]["clock_mhz"]
    assert report["oscillator_mhz"] == 12.0
    if report["pll"] is not None:
        assert report["pll"]["primitive"] == "SB_PLL40_PAD" and report["pll"]["output_mhz"] == clock
        doc = json.loads((out / "report_nextpnr.json").read_text())
        assert min(f["constraint"] for f in doc["fmax"].values()) == pytest.approx(clock, rel=1e-4)
    assert report["timing_met"] == (report["fmax_mhz"] >= clock)
    assert (out / report["bitstream"]).stat().st_size > 0
    assert (out / "build.sh").is_file()


@pytest.mark.slow
def test_same_inputs_and_seed_give_the_same_bitstream(tmp_path) -> None:
    first = build_board(tiny_build(tmp_path / "a"), get_board("icebreaker"), seed=3,
                        progress=False)
    # the second build runs the generated build.sh by hand, as a user would
    b = tiny_build(tmp_path / "b")
    build_board(b, get_board("icebreaker"), seed=3, do_build=False, clock_mhz=first["clock_mhz"])
    subprocess.run(["sh", str(b / "boards" / "icebreaker" / "build.sh")], check=True,
                   capture_output=True)
    import hashlib

    digest = hashlib.sha256((b / "boards" / "icebreaker" / "top.bin").read_bytes()).hexdigest()
    assert digest == first["bitstream_sha256"]
