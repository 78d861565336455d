"""Whole generated networks in amaranth.sim, bit-exact against the golden model.

Random small networks (hypothesis) at random foldings with random stalls; the
Verilog of one IR and folding is byte-identical across runs; the generate
verb writes ``BUILD/rtl/`` and refuses what it cannot build with one clear line.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitfold.compiler.encodings import Binary
from bitfold.compiler.folding import evaluate_folding, fold_for_budget, fold_for_fps
from bitfold.compiler.golden import run_reference
from bitfold.compiler.ir import Graph, Input, Layer, ScoreAffine
from bitfold.compiler.serialize import save_graph
from bitfold.compiler.verify import build_graph
from bitfold.hw.generate import generate
from bitfold.hw.plan import HardwareError, build_plan
from bitfold.hw.simulate import simulate_network

from ..compiler.randgraphs import SCHEMES, lowered_graphs, random_inputs
from .helpers import folded, random_folding, small_cnn, sparse_cnn


def scores_node(graph: Graph) -> str:
    return next(n.name for n in graph.nodes if isinstance(n, ScoreAffine))


def check_network(graph: Graph, folding, x: np.ndarray, **stalls) -> object:
    """Simulate ``x`` through the generated network; assert class and scores equal golden."""
    ref = run_reference(graph, x)
    run = simulate_network(build_plan(graph, folding), x, **stalls)
    np.testing.assert_array_equal(run.classes, ref[graph.outputs[0]])
    np.testing.assert_array_equal(run.scores, ref[scores_node(graph)])
    classes = run.scores.shape[1]
    assert run.last.tolist() == [[k == classes - 1 for k in range(classes)]] * len(x)
    return run


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lowered_graphs(max_layers=2), st.integers(0, 2**16))
def test_random_networks_are_bit_exact_under_stalls(graph, seed) -> None:
    graph = folded(graph)
    rng = np.random.default_rng(seed)
    folding = random_folding(graph, rng)
    x = random_inputs(graph, 5, seed)
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=seed)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lowered_graphs(max_layers=2, schemes=SCHEMES), st.integers(0, 2**16))
def test_random_sparse_composite_low_rank_networks_are_bit_exact(graph, seed) -> None:
    graph = folded(graph)
    rng = np.random.default_rng(seed)
    folding = random_folding(graph, rng)
    x = random_inputs(graph, 5, seed)
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=seed)


def small_mlp(name: str = "tiny net/1") -> Graph:
    """A small hand-made network (odd characters in names reach Verilog only sanitized)."""
    from bitfold.compiler.ir import ArgMax, Threshold

    rng = np.random.default_rng(0)
    nodes = [Input("input", (4, 4, 1), 4),
             Layer("fc0", "input", Binary(rng.integers(0, 2, (8, 16)))),
             Threshold("reg", "fc0", rng.integers(-10, 10, 8)),
             Layer("fc1", "reg", Binary(rng.integers(0, 2, (3, 8)))),
             ScoreAffine("scores", "fc1", np.array([2, -1, 1]), np.array([0, 5, -3])),
             ArgMax("class", "scores")]
    return build_graph(name, nodes, ["class"])


def test_small_network_meets_the_cycle_model() -> None:
    graph = small_mlp()
    for choice in ({"fc0": (2, 4), "fc1": (1, 2)}, {"fc0": (8, 16), "fc1": (3, 8)}):
        folding = evaluate_folding(graph, choice)
        x = np.random.default_rng(1).integers(0, 16, (12, 4, 4, 1))
        run = check_network(graph, folding, x)
        assert run.steady_cycles_per_frame() == pytest.approx(folding.cycles_per_frame, rel=0.05)


def test_score_bound_network_streams_its_results_at_the_score_units_rate() -> None:
    # fully parallel layers: the score unit (one class a cycle) is the bottleneck, and its
    # result beats (one per class) keep up with it
    graph = small_mlp()
    folding = evaluate_folding(graph, {"fc0": (8, 16), "fc1": (3, 8)})
    assert folding.cycles_per_frame == 3 and folding.bottleneck == "scores"
    run = check_network(graph, folding, np.random.default_rng(2).integers(0, 16, (12, 4, 4, 1)))
    assert run.steady_cycles_per_frame() == 3


def test_two_deep_fifos_become_skid_buffers_and_stay_bit_exact() -> None:
    from dataclasses import replace

    from bitfold.hw.streams import SkidBuffer
    from bitfold.hw.top import Dataflow

    graph = small_cnn()
    folding = evaluate_folding(graph, {"c0": (2, 6), "c1": (3, 4), "fc": (5, 8)})
    plan = build_plan(graph, folding)
    plan = replace(plan, stages=tuple(replace(s, fifo_depth=2) for s in plan.stages))
    x = np.random.default_rng(5).integers(0, 8, (6, 6, 6, 2))
    ref = run_reference(graph, x)
    for stalls in ({}, {"p_idle": 0.3, "p_stall": 0.3, "seed": 3}):
        run = simulate_network(plan, x, **stalls)
        np.testing.assert_array_equal(run.classes, ref[graph.outputs[0]])
        np.testing.assert_array_equal(run.scores, ref[scores_node(graph)])
    m = Dataflow(plan).elaborate(None)
    edges = [s.name for s in plan.stages[1:]]
    assert all(isinstance(m.submodules[f"{e}_fifo"], SkidBuffer) for e in edges)


def test_a_plan_too_fast_for_its_result_beats_is_refused() -> None:
    from dataclasses import replace

    from bitfold.hw.top import Dataflow

    plan = build_plan(small_mlp(), evaluate_folding(small_mlp(), {"fc0": (8, 16), "fc1": (3, 8)}))
    with pytest.raises(HardwareError, match=r"^plan 'tiny net/1': 2 cycles per frame cannot "
                                            r"stream its 3 result beats"):
        Dataflow(replace(plan, cycles_per_frame=2))


def test_same_ir_and_folding_give_byte_identical_verilog(tmp_path) -> None:
    graph = small_mlp()
    folding = evaluate_folding(graph, {"fc0": (4, 8), "fc1": (3, 2)})
    trees = []
    for d in ("a", "b"):
        generate(tmp_path / d, graph, folding)
        files = sorted(p.relative_to(tmp_path / d / "rtl") for p in (tmp_path / d / "rtl").rglob("*")
                       if p.is_file())
        trees.append({f: (tmp_path / d / "rtl" / f).read_bytes() for f in files})
    assert trees[0].keys() == trees[1].keys()
    for f in trees[0]:
        assert trees[0][f] == trees[1][f], f
    verilog = [t for f, t in trees[0].items() if f.name.endswith("_core.v")]
    assert len(verilog) == 1 and b"module bitfold_tiny_net_1_core" in verilog[0]
    assert b"tiny net" not in verilog[0]  # the unsanitized name never reaches Verilog


def test_generate_verb_writes_rtl_and_manifest(tmp_path) -> None:
    graph = small_mlp("tiny")
    save_graph(graph, tmp_path)
    cli = [sys.executable, "-m", "bitfold", "generate", str(tmp_path)]
    out = subprocess.run([*cli, "--target-fps", "2e6", "--clock-mhz", "50"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    man = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert man["schema"] == 3 and man["top"] == "bitfold_tiny"
    assert set(man["ports"]) == {"s_axis_tdata", "s_axis_tvalid", "s_axis_tready",
                                 "m_axis_tdata", "m_axis_tlast", "m_axis_tvalid", "m_axis_tready"}
    # the narrow output: one beat per class, score then running class index, tlast
    assert man["output"]["beats_per_frame"] == 3
    assert man["ports"]["m_axis_tdata"]["width"] == man["output"]["score"]["bits"] + 2
    assert man["output"]["class"] == {"lsb": man["output"]["score"]["bits"], "bits": 2}
    assert man["input"]["elements_per_beat"] * man["input"]["beats_per_frame"] == 16
    assert man["expected_cycles_per_frame"] <= 25
    for f in man["files"]:
        assert (tmp_path / "rtl" / f).is_file()
    assert (tmp_path / "folding.json").is_file()
    wrapper = (tmp_path / "rtl" / "bitfold_tiny.v").read_text()
    assert "s_axis_tdata" in wrapper and "m_axis_tready" in wrapper
    # a folding file works too; giving both or neither is refused in one line
    out = subprocess.run([*cli, "--folding", str(tmp_path / "folding.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("bitfold generate: error: give exactly one of --target-fps")
    # a LUT budget picks the fastest folding whose estimate fits, as bitfold fold does
    out = subprocess.run([*cli, "--max-luts", "400", "--family", "ice40"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    chosen = json.loads((tmp_path / "folding.json").read_text())
    best = fold_for_budget(graph, 400, None, 100.0, "ice40")
    assert [(x["pe"], x["simd"]) for x in chosen["layers"]] == [(c.pe, c.simd)
                                                                for c in best.layers]
    assert chosen["totals"]["luts"] <= 400


@pytest.mark.parametrize("choice", [
    {"c0": (1, 1), "c1": (2, 8), "fc": (1, 24)},
    {"c0": (4, 18), "c1": (6, 16), "fc": (5, 96)},
    {"c0": (2, 6), "c1": (3, 4), "fc": (5, 8)},
])
def test_small_cnn_is_bit_exact_under_stalls_and_meets_the_cycle_model(choice) -> None:
    graph = small_cnn()
    folding = evaluate_folding(graph, choice)
    x = np.random.default_rng(4).integers(0, 8, (10, 6, 6, 2))
    run = check_network(graph, folding, x)
    assert run.steady_cycles_per_frame() == pytest.approx(folding.cycles_per_frame, rel=0.05)
    check_network(graph, folding, x[:4], p_idle=0.3, p_stall=0.3, seed=2)


def test_padded_foldings_are_refused() -> None:
    graph = small_mlp()
    folding = evaluate_folding(graph, {"fc0": (3, 16), "fc1": (3, 8)}, allow_padding=True)
    with pytest.raises(HardwareError, match=r"^padded foldings"):
        build_plan(graph, folding)


def test_fold_for_fps_folding_builds() -> None:
    graph = small_mlp()
    plan = build_plan(graph, fold_for_fps(graph, 1e6))
    assert plan.stages[0].kind == "mvu" and plan.stages[-1].kind == "score"


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lowered_graphs(max_layers=2, schemes=("sparse", "binary")), st.integers(0, 2**16))
def test_random_sparse_networks_in_the_index_layout_are_bit_exact(graph, seed) -> None:
    graph = folded(graph)
    rng = np.random.default_rng(seed)
    folding = random_folding(graph, rng, index=0.8)
    x = random_inputs(graph, 5, seed)
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=seed)


@pytest.mark.parametrize("sparsity,choice", [
    (0.5, {"c0": (2, 3, "index"), "c1": (3, 4, "index"), "fc": (5, 8, "index")}),
    (0.5, {"c0": (4, 9, "index"), "c1": (6, 8, "mask"), "fc": (1, 48, "index")}),
    (0.75, {"c0": (1, 1, "index"), "c1": (2, 2, "index"), "fc": (5, 2, "index")}),
    (0.75, {"c0": (4, 6, "mask"), "c1": (6, 2, "index"), "fc": (5, 24, "index")}),
])
def test_sparse_cnn_in_the_index_layout_meets_the_cycle_model(sparsity, choice) -> None:
    graph = sparse_cnn(sparsity)
    folding = evaluate_folding(graph, choice)
    for c in folding.layers:  # cycles follow the kept inputs, not the fan-in
        if c.layout == "index":
            assert c.sf * c.simd == c.mw - round(sparsity * c.mw)
    x = np.random.default_rng(4).integers(0, 8, (10, 6, 6, 2))
    run = check_network(graph, folding, x)
    assert run.steady_cycles_per_frame() == pytest.approx(folding.cycles_per_frame, rel=0.05)
    check_network(graph, folding, x[:4], p_idle=0.3, p_stall=0.3, seed=2)


@pytest.mark.parametrize("sparsity,group,choice", [
    (0.5, 2, {"c0": (2, 3, "group"), "c1": (3, 4, "group"), "fc": (5, 8, "group")}),
    (0.75, 4, {"c0": (4, 9, "mask"), "c1": (2, 2, "group"), "fc": (1, 24, "group")}),
    (0.75, 4, {"c0": (1, 1, "index"), "c1": (6, 1, "group"), "fc": (5, 1, "group")}),
])
def test_structured_sparse_cnn_in_the_group_layout_is_bit_exact_at_the_cycle_model(
        sparsity, group, choice) -> None:
    graph = sparse_cnn(sparsity, group=group)
    folding = evaluate_folding(graph, choice)
    for c in folding.layers:  # SIMD groups of G a cycle: the zeros take no cycles
        if c.layout == "group":
            assert c.sf * c.simd * group == c.mw
            assert c.weight_bits == c.mh * c.mw // 2  # half a bit a weight at 1:2 and 1:4
    x = np.random.default_rng(4).integers(0, 8, (10, 6, 6, 2))
    run = check_network(graph, folding, x)
    assert run.steady_cycles_per_frame() == pytest.approx(folding.cycles_per_frame, rel=0.05)
    check_network(graph, folding, x[:4], p_idle=0.3, p_stall=0.3, seed=2)


@pytest.mark.parametrize("seed", range(4))
def test_random_structured_sparse_networks_in_every_layout_are_bit_exact(seed) -> None:
    rng = np.random.default_rng(seed)
    sparsity, group = [(0.5, 2), (0.75, 4)][seed % 2]
    graph = sparse_cnn(sparsity, f"grouped {seed}", group=group)
    folding = random_folding(graph, rng, index=0.2, group=0.9)
    x = rng.integers(0, 8, (5, 6, 6, 2))
    check_network(graph, folding, x, p_idle=0.3, p_stall=0.3, seed=seed)
