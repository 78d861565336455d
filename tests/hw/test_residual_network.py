"""Residual networks through the whole generated dataflow in amaranth.sim, bit-exact against
the golden model: random residual graphs at random foldings under random stalls, their
cycles per frame as the folding's model says, and what the generator refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.errors import FoldingError
from bitfold.compiler.folding import evaluate_folding, trade_off
from bitfold.compiler.ir import Add, AvgPool2d, Requantize, Threshold, Upsample2d
from bitfold.compiler.passes import fold
from bitfold.compiler.residual import residual_units
from bitfold.compiler.verify import build_graph
from bitfold.hw.plan import HardwareError, build_plan
from bitfold.hw.stages import RequantStage, ResidualStage, SignStage

from ..compiler.randgraphs import random_inputs, residual_graphs
from .helpers import random_folding
from .test_network import check_network


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(residual_graphs(max_blocks=3, hardware=True), st.integers(0, 2**16))
def test_random_residual_networks_are_bit_exact_under_stalls(graph, seed) -> None:
    graph = fold(graph)
    folding = random_folding(graph, np.random.default_rng(seed))
    plan = build_plan(graph, folding)
    kinds = [type(s) for s in plan.stages]
    assert RequantStage in kinds and SignStage in kinds
    assert kinds.count(ResidualStage) == len(residual_units(graph))
    check_network(graph, folding, random_inputs(graph, 4, seed), p_idle=0.3, p_stall=0.3,
                  seed=seed)


def _network(strided: bool):
    """A residual network with a plain and (``strided``) a pooled unit, lowered and folded; its
    maps at least 4 rows and columns everywhere (a sliding window over fewer rows than its
    line buffer holds waits between frames, in every network)."""
    from hypothesis import find

    def has(g) -> bool:
        g = fold(g)
        units = residual_units(g).values()
        h, w, _ = g.types[g.inputs[0]].shape
        side = 8 if strided else 4
        return len(units) >= 2 and any(u.pool is not None for u in units) == strided and \
            h >= side and w >= side

    return fold(find(residual_graphs(max_blocks=3, hardware=True), has))


@pytest.mark.parametrize("strided", [False, True])
def test_residual_network_runs_at_the_folding_cycle_model(strided) -> None:
    graph = _network(strided)
    folding = trade_off(graph)[0]  # the fastest: the stream's pixel a cycle sets the pace
    x = random_inputs(graph, 6, 3)
    run = check_network(graph, folding, x)
    per_frame = np.diff(run.out_cycles)
    assert per_frame[2:].tolist() == [folding.cycles_per_frame] * (len(x) - 3)


def test_an_upsampling_join_is_refused_in_one_line() -> None:
    graph = fold(_hourglass())
    with pytest.raises(FoldingError, match=r"^graph 'hg': Upsample2d 'up' has no hardware yet "
                                           r"\(.*\); `bitfold golden` runs it$"):
        evaluate_folding(graph, {})


def _hourglass():
    from bitfold.compiler.encodings import Binary
    from bitfold.compiler.ir import AffineArgMax, AffineSign, Input, Layer, Window

    rng = np.random.default_rng(0)
    conv = Binary(rng.integers(0, 2, (2, 3, 3, 2)).astype(np.uint8))
    nodes = [Input("x", (4, 4, 2), 1, signed=True),
             Layer("stem", "x", conv, Window(3, 1, 1, -1)),
             Requantize("r0", "stem", np.ones(2, np.int64), np.zeros(2, np.int64), 0, 6),
             AvgPool2d("down", "r0", 2, 2), Upsample2d("up", "down", 2),
             Add("r1", "up", "r0", 6), AffineSign("a", "r1", np.ones(2), np.zeros(2)),
             Layer("fc", "a", Binary(rng.integers(0, 2, (3, 32)).astype(np.uint8))),
             AffineArgMax("out", "fc", np.ones(3), np.zeros(3))]
    return build_graph("hg", nodes, ["out"])


def test_a_unit_whose_stream_feeds_more_is_refused_by_the_plan() -> None:
    graph = _network(False)
    unit = next(iter(residual_units(graph).values()))
    extra = Threshold("extra", unit.stream, np.zeros(graph.types[unit.stream].shape[-1],
                                                     np.int64))
    nodes = list(graph.nodes)
    nodes.insert(nodes.index(unit.sign), extra)
    bad = build_graph(graph.name, nodes, list(graph.outputs))
    with pytest.raises(HardwareError, match=rf"Add {unit.add.name!r} reads the stream "
                                            rf"{unit.stream!r}, which also feeds \['extra'\]"):
        build_plan(bad, random_folding(graph, np.random.default_rng(0)))


def test_the_plan_sizes_each_skip_fifo_from_its_unit() -> None:
    from bitfold.compiler.residual import SKIP_SLACK, skip_fifo_min

    graph = _network(True)
    plan = build_plan(graph, random_folding(graph, np.random.default_rng(1)))
    units = {u.add.name: u for u in residual_units(graph).values()}
    for stage in plan.stages:
        if isinstance(stage, ResidualStage):
            u = units[stage.node]
            h, w, _ = graph.types[u.stream].shape
            g = u.window
            assert stage.skip_depth == skip_fifo_min(h, w, g.kernel, g.stride, g.pad) + SKIP_SLACK
            assert stage.out_elems == stage.mvu.pe


def test_generate_verb_builds_a_residual_network_and_fold_refuses_an_hourglass(tmp_path) -> None:
    import json
    import subprocess
    import sys

    from bitfold.compiler.serialize import save_graph

    graph = _network(True)
    save_graph(graph, tmp_path / "res")
    out = subprocess.run([sys.executable, "-m", "bitfold", "generate", str(tmp_path / "res"),
                          "--max-luts", "100000"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    man = json.loads((tmp_path / "res" / "rtl" / "manifest.json").read_text())
    kinds = [s["kind"] for s in man["stages"]]
    assert kinds.count("residual") == len(residual_units(graph)) and "requant" in kinds
    assert all(s["skip_depth"] > 16 for s in man["stages"] if s["kind"] == "residual")
    save_graph(fold(_hourglass()), tmp_path / "hg")
    out = subprocess.run([sys.executable, "-m", "bitfold", "fold", str(tmp_path / "hg"),
                          "--max-luts", "100000"], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Upsample2d 'up' has no hardware yet" in out.stderr
    assert not (tmp_path / "hg" / "folding.json").exists()


def test_a_board_without_the_joins_multipliers_is_refused_before_place_and_route() -> None:
    from dataclasses import replace

    from bitfold.boards.flow import BoardFitError, check_fits
    from bitfold.boards.targets import get_board

    graph = _network(False)
    folding = random_folding(graph, np.random.default_rng(2))
    lanes = sum(c.pe for c in folding.layers if c.name in {n.inputs[0] for n in graph.nodes
                                                         if isinstance(n, Requantize)})
    board = get_board("ulx3s-85f")
    assert check_fits(graph, folding, replace(board, dsps=lanes)).layers == folding.layers
    with pytest.raises(BoardFitError, match=rf"^design does not fit ulx3s-85f: its residual "
                                            rf"joins need {lanes} multipliers .* > the "
                                            rf"LFE5U-85F's {lanes - 1} DSP blocks; refused"):
        check_fits(graph, folding, replace(board, dsps=lanes - 1))
