"""Folding legality, the cycle model, the optimizers and folding.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitfold.compiler.cost import DEVICES, adder_tree_luts, layer_cost, memory_map, mvu_layers
from bitfold.compiler.encodings import Binary
from bitfold.compiler.errors import FoldingError
from bitfold.compiler.folding import (
    evaluate_folding,
    fill_block_ram,
    fold_for_budget,
    fold_for_fps,
    folding_table,
    legal_values,
    read_folding,
    trade_off,
    write_folding,
)
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    ScoreAffine,
    Threshold,
    Window,
)
from bitfold.compiler.verify import build_graph


def cnn() -> Graph:
    rng = np.random.default_rng(0)
    return build_graph("cnn", [
        Input("x", (8, 8, 1), 5),
        Layer("conv0", "x", Binary(rng.integers(0, 2, (16, 3, 3, 1))), Window(3, 1, 1, 0)),
        Threshold("t0", "conv0", np.zeros(16, np.int64)),
        MaxPool2d("pool0", "t0", 2, 2),
        Layer("conv1", "pool0", Binary(rng.integers(0, 2, (32, 3, 3, 16))), Window(3, 1, 0, -1)),
        Threshold("t1", "conv1", np.full(32, 70)),
        Layer("fc0", "t1", Binary(rng.integers(0, 2, (10, 128)))),
        ScoreAffine("scores", "fc0", np.arange(1, 11), np.zeros(10, np.int64)),
        ArgMax("class", "scores"),
    ], ["class"])


def test_layers_seen_by_the_cost_model() -> None:
    layers = {layer.name: layer for layer in mvu_layers(cnn())}
    assert (layers["conv0"].mh, layers["conv0"].mw, layers["conv0"].pixels) == (16, 9, 64)
    assert layers["conv0"].input_bits == 5
    assert (layers["conv1"].mh, layers["conv1"].mw, layers["conv1"].pixels) == (32, 144, 4)
    assert (layers["fc0"].mh, layers["fc0"].mw, layers["fc0"].pixels) == (10, 128, 1)


def test_cycles_are_nf_times_sf_times_pixels() -> None:
    f = evaluate_folding(cnn(), {"conv0": (4, 3), "conv1": (8, 16), "fc0": (5, 32)})
    cycles = {c.name: (c.nf, c.sf, c.cycles) for c in f.layers}
    assert cycles == {"conv0": (4, 3, 4 * 3 * 64), "conv1": (4, 9, 4 * 9 * 4),
                      "fc0": (2, 4, 8)}
    assert f.cycles_per_frame == 768 and f.bottleneck == "conv0"
    assert f.fps == pytest.approx(100e6 / 768)
    # the max pool takes one input pixel per cycle: 64, the score unit one class per cycle
    assert {s.name: s.cycles for s in f.stages} == {"pool0": 64, "scores": 10}


def test_padding_rounds_folds_up() -> None:
    f = evaluate_folding(cnn(), {"conv0": (5, 2), "conv1": (32, 144), "fc0": (3, 100)},
                         allow_padding=True)
    conv0, _, fc0 = f.layers
    assert (conv0.nf, conv0.sf) == (4, 5) and (fc0.nf, fc0.sf) == (4, 2)


def test_illegal_folding_names_the_layer_and_the_legal_values() -> None:
    with pytest.raises(FoldingError, match=r"^layer 'conv1': pe=5 is illegal; pe must divide the "
                                           r"32 output channels; legal values: 1, 2, 4, 8, 16, "
                                           r"32$"):
        evaluate_folding(cnn(), {"conv0": (1, 1), "conv1": (5, 16), "fc0": (1, 1)})
    with pytest.raises(FoldingError, match=r"^layer 'fc0': simd=200 is illegal; simd must be "
                                           r"1\.\.128; legal values: "):
        evaluate_folding(cnn(), {"conv0": (1, 1), "conv1": (1, 1), "fc0": (1, 200)},
                         allow_padding=True)
    with pytest.raises(FoldingError, match=r"^folding must give pe and simd for exactly the "
                                           r"layers \['conv0', 'conv1', 'fc0'\]; missing "
                                           r"\['fc0'\], unknown \['fc9'\]$"):
        evaluate_folding(cnn(), {"conv0": (1, 1), "conv1": (1, 1), "fc9": (1, 1)})


def test_legal_values() -> None:
    assert legal_values(12, False) == [1, 2, 3, 4, 6, 12]
    assert legal_values(10, True) == [1, 2, 3, 4, 5, 10]  # the smallest PE for each fold count


@pytest.mark.parametrize("target", [1e3, 2e4, 1e5, 4e5, 1.5e6])
def test_fps_folding_meets_the_target_with_the_cheapest_layers(target) -> None:
    g = cnn()
    f = fold_for_fps(g, target, clock_mhz=100)
    budget = int(100e6 // target)
    assert f.cycles_per_frame <= budget and f.fps >= target
    model = DEVICES["ecp5"]
    for layer, chosen in zip(mvu_layers(g), f.layers, strict=True):
        costs = [layer_cost(layer, pe, simd, model)
                 for pe in legal_values(layer.mh, False) for simd in legal_values(layer.mw, False)]
        cheapest = min(c.luts for c in costs if c.cycles <= budget)
        assert chosen.luts == cheapest, layer.name


def test_unreachable_fps_says_what_is_possible() -> None:
    with pytest.raises(FoldingError, match=r"^1e\+07 fps at 100 MHz allows 10 cycles per frame, "
                                           r"but stage 'pool0' needs 64; at most 1\.5625e\+06 fps"):
        fold_for_fps(cnn(), 1e7, clock_mhz=100)


def test_budget_folding_is_the_fastest_that_fits() -> None:
    g = cnn()
    fast = fold_for_fps(g, 1.5e6)
    front = trade_off(g)  # the cheapest folding at every reachable cycle budget
    least = min(f.total("luts") for f in front)  # the whole core, however folded
    for luts in (least, least * 3 // 2, least * 3, fast.total("luts")):
        f = fold_for_budget(g, max_luts=luts)
        assert f.total("luts") <= luts
        # no faster folding fits: not the cheapest at any smaller budget (the budgets where
        # fold_for_fps can change its answer), nor fold_for_fps one cycle below
        assert all(x.total("luts") > luts for x in front if x.cycles_per_frame < f.cycles_per_frame)
        below = _try_fps(g, 100e6 / (f.cycles_per_frame - 1)) if f.cycles_per_frame > 1 else None
        assert below is None or below.total("luts") > luts
    with pytest.raises(FoldingError, match=r"^no folding fits 10 LUTs; the most folded one "
                                           r"needs \d+ LUTs and \d+ block RAMs$"):
        fold_for_budget(g, max_luts=10)


def _try_fps(g, fps):
    try:
        return fold_for_fps(g, fps)
    except FoldingError:
        return None


def test_adder_tree() -> None:
    assert adder_tree_luts(1, 1) == 0
    assert adder_tree_luts(2, 1) == 2  # one 2-bit result
    assert adder_tree_luts(4, 1) == 2 * 2 + 3


def test_folding_json_round_trip_and_hand_written(tmp_path) -> None:
    g = cnn()
    f = fold_for_fps(g, 1e5)
    path = write_folding(tmp_path, f)
    doc = json.loads(path.read_text())
    assert doc["schema"] == 1 and doc["totals"]["cycles_per_frame"] == f.cycles_per_frame
    again = read_folding(path, g)
    assert [(c.name, c.pe, c.simd) for c in again.layers] == [(c.name, c.pe, c.simd)
                                                              for c in f.layers]
    hand = tmp_path / "mine.json"
    hand.write_text(json.dumps({"schema": 1, "clock_mhz": 50, "layers": [
        {"name": "conv0", "pe": 16, "simd": 9}, {"name": "conv1", "pe": 32, "simd": 16},
        {"name": "fc0", "pe": 10, "simd": 8}]}))
    mine = read_folding(hand, g)
    assert mine.clock_mhz == 50 and mine.cycles_per_frame == 64
    assert "cycles/frame (bottleneck conv0)" in folding_table(mine)
    hand.write_text(json.dumps({"schema": 1, "layers": [
        {"name": "conv0", "pe": 3, "simd": 9}, {"name": "conv1", "pe": 32, "simd": 16},
        {"name": "fc0", "pe": 10, "simd": 8}]}))
    with pytest.raises(FoldingError, match=r"^\S+mine\.json: layer 'conv0': pe=3 is illegal"):
        read_folding(hand, g)
    hand.write_text(json.dumps({"schema": 1, "layers": {"conv0": 1}}))
    with pytest.raises(FoldingError, match=r'^\S+mine\.json: "layers" must be a list of'):
        read_folding(hand, g)
    hand.write_text(json.dumps({"schema": 2, "layers": []}))
    with pytest.raises(FoldingError, match=r"^\S+mine\.json: schema version 2, this bitfold "
                                           r"reads 1"):
        read_folding(hand, g)


@pytest.mark.parametrize("family,depth,width,rom,kind,brams", [
    # what YoWASP Yosys' memory_libmap chose for these memories (synth_ice40 / synth_ecp5)
    ("ice40", 128, 8, True, "logic", 0),   # a ROM bit costs 1/16: 64, a block 64 + 2
    ("ice40", 72, 16, True, "bram", 1),
    ("ice40", 16, 4, False, "logic", 0),   # 64 RAM bits against 64 + 14
    ("ice40", 16, 40, False, "bram", 3),   # 256 x 16 blocks
    ("ecp5", 256, 8, True, "logic", 0),
    ("ecp5", 256, 9, True, "bram", 1),
    ("ecp5", 16, 40, False, "lutram", 0),  # ten 16 x 4 distributed-RAM cells
    ("ecp5", 128, 40, False, "bram", 2),
])
def test_memories_go_where_yosys_puts_them(family, depth, width, rom, kind, brams) -> None:
    mm = memory_map(depth, width, DEVICES[family], rom)
    assert (mm.kind, mm.brams) == (kind, brams)
    assert memory_map(depth, width, DEVICES[family], rom, block=True).kind == "bram"


def test_the_estimate_counts_what_joins_the_stages() -> None:
    g = cnn()
    f = evaluate_folding(g, {"conv0": (16, 9), "conv1": (32, 16), "fc0": (10, 8)})
    kinds = {s.kind for s in f.streams}
    assert "skid" in kinds and all(s.luts >= 0 and s.cycles == 0 for s in f.streams)
    parts = (*f.layers, *f.stages, *f.streams)
    assert f.total("luts") == sum(s.luts for s in parts) > sum(c.luts for c in f.layers)
    assert f.to_json()["totals"]["ffs"] == sum(s.ffs for s in parts)


def wide_mlp() -> Graph:
    """A layer whose weights Yosys builds from LUTs (32 words of 1,024 bits), then a deep one."""
    rng = np.random.default_rng(3)
    return build_graph("wide", [
        Input("x", (256,), 1),
        Layer("fc0", "x", Binary(rng.integers(0, 2, (128, 256)))),
        Threshold("t0", "fc0", np.full(128, 128)),
        Layer("fc1", "t0", Binary(rng.integers(0, 2, (10, 128)))),
        ScoreAffine("scores", "fc1", np.arange(1, 11), np.zeros(10, np.int64)),
        ArgMax("class", "scores"),
    ], ["class"])


def test_spare_block_ram_holds_weights_yosys_would_build_from_luts(tmp_path) -> None:
    g = wide_mlp()
    free = evaluate_folding(g, {"fc0": (16, 64), "fc1": (1, 128)})
    assert free.layers[0].weight_memory == "bram" and free.layers[0].brams == 0  # LUT ROM
    used = free.total("brams")
    for spare in (0, 7, 10, 1000):
        filled = fill_block_ram(g, free, used + spare)
        fc0 = filled.layers[0]
        assert filled.total("brams") <= used + spare
        if spare < 1:  # a block holds 36 bits a word: no PE of 64 fits
            assert filled == free
            continue
        assert 0 < fc0.block_pes <= 16 and fc0.luts < free.layers[0].luts
        assert fc0.block_pes == 16 or filled.total("brams") + 2 > used + spare  # no PE more fits
    assert filled.layers[0].block_pes == 16 and "bram (forced)" in folding_table(filled)
    # the choice goes through folding.json and is checked there
    again = read_folding(write_folding(tmp_path, fill_block_ram(g, free, used + 10)), g)
    assert again.layers[0].block_pes == fill_block_ram(g, free, used + 10).layers[0].block_pes
    unlimited = fold_for_fps(g, 1e6 / 32, 1.0)
    assert fold_for_fps(g, 1e6 / 32, 1.0, max_brams=1000) == fill_block_ram(g, unlimited, 1000)
    with pytest.raises(FoldingError, match=r"more than 0; give a lower --target-fps"):
        fold_for_fps(cnn(), 1e5, max_brams=0)


@pytest.mark.parametrize("entry,message", [
    ({"name": "fc0", "pe": 16, "simd": 64, "block_pes": 17}, r"block_pes=17 is illegal"),
    ({"name": "fc0", "pe": 16, "simd": 64, "block_pes": True}, r"block_pes=True is illegal"),
    ({"name": "fc0", "pe": 128, "simd": 256, "block_pes": 1}, r"block_pes=1 is illegal"),
])
def test_block_pes_is_checked(tmp_path, entry, message) -> None:
    hand = tmp_path / "f.json"
    hand.write_text(json.dumps({"schema": 1, "layers": [entry, {"name": "fc1", "pe": 1,
                                                               "simd": 128}]}))
    with pytest.raises(FoldingError, match=r"^\S+f\.json: layer 'fc0': " + message):
        read_folding(hand, wide_mlp())


def test_a_layer_given_twice_is_refused(tmp_path) -> None:
    hand = tmp_path / "f.json"
    hand.write_text(json.dumps({"schema": 1, "layers": [
        {"name": "fc0", "pe": 16, "simd": 64}, {"name": "fc1", "pe": 1, "simd": 128},
        {"name": "fc0", "pe": 1, "simd": 1}]}))
    with pytest.raises(FoldingError, match=r"^\S+f\.json: layer 'fc0' is given more than once"):
        read_folding(hand, wide_mlp())
