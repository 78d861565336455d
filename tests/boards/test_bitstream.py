"""Real bitstreams with the YoWASP toolchain (slow; one small build runs in CI)."""

from __future__ import annotations

import json
import subprocess

import pytest

from bitfold.boards.flow import build_board
from bitfold.boards.targets import get_board

from .helpers import tiny_build

FIELDS = {"board", "device", "luts", "ffs", "brams", "fmax_mhz", "target_mhz", "bitstream",
          "build_s"}


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
    assert report["target_mhz"] == 12.0
    assert report["timing_met"] == (report["fmax_mhz"] >= 12.0)
    assert (out / report["bitstream"]).stat().st_size > 0
    assert (out / "build.sh").is_file()


@pytest.mark.slow
def test_same_inputs_and_seed_give_the_same_bitstream(tmp_path) -> None:
    first = build_board(tiny_build(tmp_path / "a"), get_board("icebreaker"), seed=3,
                        progress=False)
    # the second build runs the generated build.sh by hand, as a user would
    b = tiny_build(tmp_path / "b")
    build_board(b, get_board("icebreaker"), seed=3, do_build=False)
    subprocess.run(["sh", str(b / "boards" / "icebreaker" / "build.sh")], check=True,
                   capture_output=True)
    import hashlib

    digest = hashlib.sha256((b / "boards" / "icebreaker" / "top.bin").read_bytes()).hexdigest()
    assert digest == first["bitstream_sha256"]
