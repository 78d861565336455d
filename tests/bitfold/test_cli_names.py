"""One name per meaning across verbs: --family (the FPGA family; --device is the torch device),
--board for fold and generate as for build, --frames for how many frames; a folding file that
names a layer twice is refused before anything is written."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from bitfold.boards.flow import TOP_LUTS
from bitfold.boards.targets import get_board
from bitfold.cli import build_parser, main
from bitfold.compiler.folding import fold_for_budget
from bitfold.compiler.serialize import save_graph
from tests.boards.helpers import tiny_build, tiny_graph
from tests.boards.test_flow import big_graph

RENAMED = (r"--device is now --family \(the FPGA family; --device is the torch device in train "
           r"and run\); --device goes in the next release")


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_fpga_family_is_family_and_the_old_name_warns(tmp_path, capsys) -> None:
    build = tiny_build(tmp_path)
    assert main(["fold", str(build), "--max-luts", "2000", "--family", "ice40"]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads((build / "folding.json").read_text())["device"] == "ice40"
    assert main(["fold", str(build), "--max-luts", "2000", "--device", "ecp5"]) == 0
    assert re.fullmatch(rf"bitfold fold: warning: {RENAMED}\n", capsys.readouterr().err)
    assert json.loads((build / "folding.json").read_text())["device"] == "ecp5"
    assert build_parser().parse_args(["bench", "b", "--family", "ice40"]).family == "ice40"
    assert "--device" not in _help("fold") and "--family" in _help("fold")


def _help(verb: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[verb].format_help()


def test_fold_for_a_board_takes_its_family_clock_and_capacity(tmp_path, capsys) -> None:
    build = tiny_build(tmp_path / "a")
    assert main(["fold", str(build), "--board", "icebreaker"]) == 0
    got = json.loads((build / "folding.json").read_text())
    board = get_board("icebreaker")
    best = fold_for_budget(tiny_graph(), int(board.luts * 0.75) - TOP_LUTS, board.brams,
                           board.clock_mhz, board.family)
    assert (got["device"], got["clock_mhz"]) == ("ice40", 12.0)
    assert [(x["pe"], x["simd"]) for x in got["layers"]] == [(c.pe, c.simd) for c in best.layers]
    # generate --board writes the same folding, as bitfold run's generate stage does
    again = tiny_build(tmp_path / "b")
    assert main(["generate", str(again), "--board", "icebreaker"]) == 0
    assert json.loads((again / "folding.json").read_text())["layers"] == got["layers"]


def test_a_board_of_another_family_or_a_folding_that_cannot_fit_is_one_line(tmp_path,
                                                                             capsys) -> None:
    build = tiny_build(tmp_path)
    before = _files(build)
    assert main(["generate", str(build), "--board", "icebreaker", "--family", "ecp5"]) == 2
    assert capsys.readouterr().err == ("bitfold generate: error: --board icebreaker is an ice40 "
                                       "board, not ecp5; drop --family\n")
    assert _files(build) == before and not (build / "rtl").exists()
    big = tmp_path / "big"
    save_graph(big_graph(), big)
    assert main(["fold", str(big), "--board", "icebreaker", "--max-luts", "100000000",
                 "--max-brams", "1000"]) == 2  # the fastest folding, far beyond the board
    err = capsys.readouterr().err
    assert re.fullmatch(r"bitfold fold: error: design does not fit icebreaker: \d+ LUTs "
                        r"[^\n]+; write it with `bitfold fold BUILD --board icebreaker "
                        r"--max-luts \d+`\n", err), err
    assert not (big / "folding.json").exists()


def test_every_verb_says_frames_for_how_many_frames(capsys) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for verb, p in sub.choices.items():
        shown = {s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
        assert not shown & {"--limit", "-n", "--n", "--count"}, verb
    for verb, args in (("golden", ["b"]), ("import", ["m.onnx"]), ("export", ["r", "--out", "m"]),
                       ("infer", ["b", "--port", "p"])):
        assert parser.parse_args([verb, *args, "--frames", "7"]).frames == 7
        assert capsys.readouterr().err == ""
        assert parser.parse_args([verb, *args, "--limit", "5"]).frames == 5  # the old name
        assert capsys.readouterr().err == (f"bitfold {verb}: warning: --limit is now --frames "
                                           "(the same name in every verb); --limit goes in the "
                                           "next release\n")
    assert parser.parse_args(["infer", "b", "--port", "p"]).frames == 100


def test_a_folding_file_with_a_layer_twice_is_refused_before_anything_is_written(tmp_path,
                                                                                 capsys) -> None:
    build = tiny_build(tmp_path / "b")
    assert main(["generate", str(build), "--folding", str(build / "folding.json")]) == 0
    capsys.readouterr()
    before = _files(build)
    doc = json.loads((build / "folding.json").read_text())
    doc["layers"].append({**doc["layers"][0], "pe": 1, "simd": 1})
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(doc))
    line = (rf"{re.escape(str(dup))}: layer 'fc0' is given more than once; give each layer one "
            r"entry")
    for verb, extra in (("fold", []), ("generate", []), ("build", ["--board", "icebreaker",
                                                                   "--no-build"])):
        assert main([verb, str(build), "--folding", str(dup), *extra]) == 2
        assert re.fullmatch(rf"bitfold {verb}: error: {line}\n", capsys.readouterr().err)
        assert _files(build) == before  # rtl/, folding.json as they were; no boards/


def test_a_folding_file_has_its_own_clock_and_family(tmp_path, capsys) -> None:
    build = tiny_build(tmp_path)  # folded for ice40 at 12 MHz
    folding = build / "folding.json"
    assert main(["fold", str(build), "--folding", str(folding), "--clock-mhz", "40"]) == 2
    assert capsys.readouterr().err == ("bitfold fold: error: --clock-mhz goes with --target-fps "
                                       "or a budget; a folding file has its own clock\n")
    assert main(["fold", str(build), "--folding", str(folding), "--family", "ice40"]) == 0
    before = _files(build)
    for flag in (["--family", "ecp5"], ["--board", "ulx3s-85f"]):
        assert main(["fold", str(build), "--folding", str(folding), *flag]) == 2
        assert capsys.readouterr().err.endswith(
            f"bitfold fold: error: {folding} is folded for ice40, not ecp5; fold it again for "
            "ecp5 (--board or --family with a budget or --target-fps)\n")
        assert _files(build) == before
