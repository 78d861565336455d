"""The board tops on their PLL: elaboration (no FPGA tools), the UART divisor, the clock search."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import bitfold.boards.flow as flow
from bitfold.boards.flow import BAUD, board_clock, board_top, build_board
from bitfold.boards.pll import choose_clock, pll_config
from bitfold.boards.targets import BOARDS, get_board
from bitfold.cli import main

from .helpers import tiny_build, tiny_folding, tiny_graph

DATA = Path(__file__).parent / "data"


def _ice40_bits(value: int, width: int) -> str:
    return f"{width}'{value:0{width}b}"


@pytest.mark.parametrize("name,clock_mhz", [("icebreaker", None), ("icebreaker", 36.0),
                                            ("ulx3s-85f", 60.0), ("orangecrab-25f", None)])
def test_rtlil_has_the_pll_with_its_dividers_and_the_constraint(tmp_path, name, clock_mhz) -> None:
    board = BOARDS[name]
    build = tiny_build(tmp_path, board.clock_mhz, board.family)
    report = build_board(build, board, do_build=False, clock_mhz=clock_mhz)
    out = build / "boards" / name
    clock = board_clock(board, clock_mhz)
    cfg = clock.pll
    assert report["clock_mhz"] == clock.mhz == cfg.output_mhz
    assert cfg == pll_config(board.family, board.clock_mhz, clock_mhz or clock.mhz)
    il = (out / "top.il").read_text()
    cell = re.search(rf"cell \\{cfg.primitive} \\pll\n(.*?)\n  end", il, re.S).group(1)
    params = dict(re.findall(r"parameter \\(\w+) (\S+)", cell))
    if board.family == "ice40":
        assert params["FEEDBACK_PATH"] == '"SIMPLE"'
        for key, width in (("DIVR", 4), ("DIVF", 7), ("DIVQ", 3), ("FILTER_RANGE", 3)):
            assert params[key] == _ice40_bits(cfg.params[key], width)
        assert "connect \\PACKAGEPIN \\clk12_0__io [0]" in cell  # the oscillator pin, raw
        constraints = (out / "top.pcf").read_text()
        mhz = float(re.search(r"^set_frequency clock\.clk (\S+)$", constraints, re.M).group(1))
        assert mhz == pytest.approx(cfg.output_mhz)
    else:
        for key in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "CLKOP_FPHASE"):
            assert int(params[key]) == cfg.params[key]
        assert params["FEEDBK_PATH"] == '"CLKOP"'
        constraints = (out / "top.lpf").read_text()
        hz = float(re.search(r'^FREQUENCY NET "clock\.clk" (\S+) HZ;$', constraints, re.M).group(1))
        assert hz == pytest.approx(cfg.output_mhz * 1e6)
    assert json.loads((out / "clock.json").read_text()) == {"schema": 1, **clock.to_json()}
    assert json.loads((out / "bridge.json").read_text())["clock_mhz"] == clock.mhz


def test_a_clock_the_oscillator_gives_needs_no_pll(tmp_path) -> None:
    build = tiny_build(tmp_path)
    build_board(build, get_board("icebreaker"), do_build=False, clock_mhz=12.0)
    out = build / "boards" / "icebreaker"
    assert "SB_PLL40" not in (out / "top.il").read_text()
    assert "set_frequency clk12_0__io 12" in (out / "top.pcf").read_text()
    assert json.loads((out / "clock.json").read_text())["pll"] is None


@pytest.mark.parametrize("selftest", [False, True])
def test_uart_divisor_comes_from_the_pll_clock(selftest) -> None:
    from bitfold.compiler.golden import run_reference

    graph, board = tiny_graph(), get_board("icebreaker")
    x = np.zeros((1, 4, 4, 1), dtype=np.int64)
    frames = (x, run_reference(graph, x)["class"]) if selftest else None
    for mhz in (48.0, 36.0, 16.5):
        clock = choose_clock("ice40", 12.0, mhz)
        top, _ = board_top(graph, tiny_folding(graph), board, frames, clock)
        assert top.pll == clock.pll
        assert top.inner.divisor == round(clock.mhz * 1e6 / BAUD)
        assert abs(clock.mhz * 1e6 / top.inner.divisor / BAUD - 1) < 0.01


def test_an_impossible_clock_is_one_cli_line(tmp_path, capsys) -> None:
    build = tiny_build(tmp_path)
    assert main(["build", str(build), "--board", "icebreaker", "--clock-mhz", "5",
                 "--no-build"]) == 2
    err = capsys.readouterr().err
    assert re.match(r"^bitfold build: error: icebreaker: no clock at or below 5 MHz: the board "
                    r"has its 12 MHz oscillator and the ice40 PLL's 16\.125 to 270 MHz; ask for at "
                    r"least 12 MHz\n$", err)
    assert not (build / "boards").exists()


def _fake_tools(monkeypatch, fmax_at) -> list[float]:
    """Replace the toolchain: each build's Fmax is ``fmax_at(clock_mhz)``; returns the clocks."""
    doc = json.loads((DATA / "nextpnr_ice40.json").read_text())
    clocks: list[float] = []

    def run_build(out: Path, board, progress: bool = True, shown=None) -> float:
        mhz = json.loads((out / "clock.json").read_text())["clock_mhz"]
        clocks.append(mhz)
        doc["fmax"] = {"clk": {"achieved": fmax_at(mhz), "constraint": mhz}}
        (out / "report_nextpnr.json").write_text(json.dumps(doc))
        (out / f"top.{board.bitstream_ext}").write_bytes(b"bits at %g" % mhz)
        return 10.0

    monkeypatch.setattr(flow, "run_build", run_build)
    return clocks


def test_a_missed_first_target_rebuilds_below_fmax(tmp_path, monkeypatch) -> None:
    clocks = _fake_tools(monkeypatch, lambda mhz: 20.0)
    report = build_board(tiny_build(tmp_path), get_board("icebreaker"), progress=False)
    # 48 MHz first; then the fastest PLL clock at or below 95% of 20 MHz: 12 * 50 / 2**5
    assert clocks == [48.0, 18.75]
    assert report["clock_mhz"] == report["target_mhz"] == 18.75 and report["fmax_mhz"] == 20.0
    assert report["timing_met"] is True and report["oscillator_mhz"] == 12.0
    assert report["pll"]["params"] == {"DIVR": 0, "DIVF": 49, "DIVQ": 5, "FILTER_RANGE": 1}
    assert report["attempts"] == [{"clock_mhz": 48.0, "fmax_mhz": 20.0, "timing_met": False},
                                  {"clock_mhz": 18.75, "fmax_mhz": 20.0, "timing_met": True}]
    assert report["build_s"] == 20.0
    out = tmp_path / "boards" / "icebreaker"
    assert json.loads((out / "report.json").read_text()) == report
    assert json.loads((out / "bridge.json").read_text())["clock_mhz"] == 18.75


def test_a_met_first_target_and_a_stated_clock_build_once(tmp_path, monkeypatch) -> None:
    clocks = _fake_tools(monkeypatch, lambda mhz: 20.0)
    met = build_board(tiny_build(tmp_path / "a"), get_board("ulx3s-85f"), progress=False,
                      clock_mhz=19.0)
    assert clocks == [18.75] and met["timing_met"] and len(met["attempts"]) == 1
    stated = build_board(tiny_build(tmp_path / "b"), get_board("icebreaker"), progress=False,
                         clock_mhz=36.0)
    assert clocks[1:] == [36.0] and stated["timing_met"] is False  # stated: no second guess


def test_a_second_miss_is_reported_and_warned(tmp_path, monkeypatch, capsys) -> None:
    clocks = _fake_tools(monkeypatch, lambda mhz: 0.9 * mhz)  # never meets its clock
    build = tiny_build(tmp_path)
    assert main(["build", str(build), "--board", "icebreaker", "--quiet"]) == 3
    assert clocks == [48.0, choose_clock("ice40", 12.0, 0.9 * 48 * 0.95).mhz]
    report = json.loads((build / "boards" / "icebreaker" / "report.json").read_text())
    assert report["timing_met"] is False and len(report["attempts"]) == 2
    out, err = capsys.readouterr()
    assert f"clock {clocks[1]:g} MHz (PLL from the 12 MHz oscillator)" in out
    assert re.match(r"^bitfold build: warning: timing NOT met on icebreaker: Fmax [\d.]+ MHz < "
                    r"the clock [\d.]+ MHz; [^\n]*\n$", err)


def test_a_design_slower_than_every_pll_clock_falls_back_to_the_oscillator(tmp_path,
                                                                           monkeypatch) -> None:
    clocks = _fake_tools(monkeypatch, lambda mhz: 13.0)
    report = build_board(tiny_build(tmp_path), get_board("icebreaker"), progress=False)
    assert clocks == [48.0, 12.0]
    assert report["pll"] is None and report["clock_source"] == "oscillator"
    assert report["timing_met"] is True
