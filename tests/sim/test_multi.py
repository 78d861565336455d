"""Many generated designs in one Verilator build (``bitfold.sim.multi``) against the golden model.

The batch top and its module-name check without a simulator; the pause patterns
the testbench draws; then one Verilator build holding random networks of every
kind (chosen from drawn graphs to cover the most layer kinds and layouts) and
three broken designs side by side: a flipped weight bit, a design that sends one
frame more than is expected of it, and one that is expected one frame more than
it is sent. Each must be told apart in its own record, the random ones exact.
The slow test runs the differential benchmark itself on 80 networks.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from bitfold.sim.frames import Vectors, expected_outputs
from bitfold.sim.multi import Design, batch_top, module_names, simulate_many
from bitfold.sim.mutate import flip_weight_bit
from bitfold.sim.runner import SimulationError

from .conftest import make_build, need, small_mlp
from .randnets import covering, draw_graphs, prepare, verdict

MLP_FOLDING = {"fc0": (4, 16), "fc1": (2, 8)}


def _mlp_design(tmp_path, name: str, frames: int = 10, seed: int = 1, **stalls) -> Design:
    """small_mlp named ``name`` generated into ``tmp_path/name``, with golden vectors."""
    from dataclasses import replace

    graph = replace(small_mlp(), name=name)
    build, _ = make_build(tmp_path / name.replace(" ", "_"), graph, MLP_FOLDING)
    x = np.random.default_rng(seed).integers(0, 32, (frames, 8, 8, 1))
    vectors = Vectors(x.reshape(frames, -1), *expected_outputs(graph, x))
    return Design(name, build / "rtl", vectors, seed=seed, **stalls)


def test_batch_top_prefixes_each_designs_ports_and_instantiates_its_wrapper(tmp_path) -> None:
    a, b = _mlp_design(tmp_path, "net a"), _mlp_design(tmp_path, "net b")
    text = batch_top([a, b])
    assert text.count("\nmodule bitfold_batch (") == 1 and module_names(text) == ["bitfold_batch"]
    w_in, w_out = (a.manifest["ports"][p]["width"] for p in ("s_axis_tdata", "m_axis_tdata"))
    for k in (0, 1):
        assert f"input  wire [{w_in - 1}:0] n{k}_s_axis_tdata" in text
        assert f"output wire [{w_out - 1}:0] n{k}_m_axis_tdata" in text
        assert f"output wire n{k}_s_axis_tready" in text and f"input  wire n{k}_m_axis_tready" in text
        assert f".m_axis_tlast(n{k}_m_axis_tlast)" in text
    assert "bitfold_net_a u0 (" in text and "bitfold_net_b u1 (" in text
    core = (a.rtl / f"{a.manifest['core']}.v").read_text()
    names = module_names(core)
    assert "bitfold_net_a_core" in names and "bitfold_net_a_core.mvu_fc0" in names
    assert all(n.startswith("bitfold_net_a_core") for n in names)  # a core's modules carry its name


def test_two_designs_of_one_graph_name_are_refused(tmp_path) -> None:
    a = _mlp_design(tmp_path / "1", "same net")
    b = _mlp_design(tmp_path / "2", "same net")
    with pytest.raises(SimulationError, match=r"^modules defined more than once in the batch: "
                                              r"bitfold_same_net, bitfold_same_net_core.*; give "
                                              r"the graphs distinct names$"):
        batch_top([a, b])


@pytest.mark.parametrize("p,burst", [(0.3, 1.0), (0.5, 4.0), (0.8, 16.0), (0.1, 16.0)])
def test_pause_patterns_pause_the_stated_fraction_in_runs_of_the_stated_length(p, burst) -> None:
    from itertools import groupby, islice

    from bitfold.sim.multi_testbench import pause_pattern

    draws = list(islice(pause_pattern(p, burst, random.Random(7)), 400_000))
    assert np.mean(draws) == pytest.approx(p, abs=0.01)
    runs = [len(list(g)) for paused, g in groupby(draws) if paused]
    # independent cycles: geometric runs of mean 1 / (1 - p)
    assert np.mean(runs) == pytest.approx(burst if burst > 1 else 1 / (1 - p), rel=0.08)
    assert not any(islice(pause_pattern(0.0, 4.0, random.Random(1)), 1000))


def test_random_networks_and_broken_designs_in_one_verilator_build(tmp_path, monkeypatch) -> None:
    """Random networks (those of 60 drawn that cover the most features, at most 8) with random
    stalls, plus a flipped weight bit, an extra frame and a lost frame, in one Verilator build."""
    need("verilator")
    monkeypatch.setenv("BITFOLD_VERILATOR_OPT", "-O0")  # a few thousand cycles: build fast
    graphs = draw_graphs(60, seed=16)
    nets = [prepare(*graphs[i], i, 12, tmp_path / f"rd{i}") for i in covering(graphs, 8)]
    assert [n.error for n in nets] == [None] * len(nets)
    covered = set().union(*(n.features for n in nets))
    # seed 16 covers every feature benchmarks/rtl_differential counts in 7 networks (when
    # tests/compiler/randgraphs draws differently, another seed may be needed for all)
    assert {"SparseDense", "CompositeDense", "DomainDense", "input bipolar",
            "input multi-bit", "device ice40", "device ecp5"} <= covered, covered
    assert any(f.endswith("Conv2d") for f in covered), covered

    mutant = _mlp_design(tmp_path, "mutant mlp", frames=16, seed=7)
    mutated = flip_weight_bit(mutant.rtl, tmp_path / "mutant_rtl", "mvu_fc1", address=0, bit=3)
    mutant = Design(mutant.name, mutated, mutant.vectors, p_idle=0.3, p_stall=0.3, seed=2)
    extra = _mlp_design(tmp_path, "extra mlp", p_stall=0.5, stall_burst=4.0)
    v = extra.vectors  # every frame is sent, one result fewer is expected
    extra.vectors = Vectors(v.frames, v.classes[:-1], v.scores[:-1])
    lost = _mlp_design(tmp_path, "lost mlp", p_idle=0.5, idle_burst=4.0)
    v = lost.vectors  # one frame fewer is sent than results are expected
    lost.vectors = Vectors(v.frames[:-1], v.classes, v.scores)

    res = simulate_many([n.design for n in nets] + [mutant, extra, lost], tmp_path / "sim")
    recs = {r["name"]: r for r in res["designs"]}
    for n in nets:
        r = recs[n.name]
        assert verdict(r) == "exact", (n.name, n.features, r["first_mismatch"])
        assert r["frames"] == 12 and r["classes"] == n.design.vectors.classes.tolist()
    assert verdict(recs["mutant mlp"]) == "mismatch"
    assert recs["mutant mlp"]["frames"] == 16 and not recs["mutant mlp"]["timed_out"]
    first = recs["mutant mlp"]["first_mismatch"]
    assert first["expected"] != first["got"]
    classes = len(extra.vectors.scores[0])
    assert verdict(recs["extra mlp"]) == "extra"
    assert recs["extra mlp"]["frames"] == 9 and recs["extra mlp"]["extra_beats"] == classes
    assert verdict(recs["lost mlp"]) == "lost"
    assert recs["lost mlp"]["frames"] == 9 and recs["lost mlp"]["timed_out"]
    assert recs["lost mlp"]["stuck"]  # stopped when nothing moved, not at its cycle limit
    assert recs["lost mlp"]["cycles"] < Design.max_cycles(lost)
    assert recs["lost mlp"]["beats_sent"] == recs["lost mlp"]["beats_total"]
    assert not any(r["stuck"] for name, r in recs.items() if name != "lost mlp")
    assert res["build_s"] > 0 and res["simulator"] == "verilator"


@pytest.mark.slow
def test_the_differential_benchmark_finds_eighty_random_networks_exact(tmp_path, monkeypatch) -> None:
    need("verilator")
    monkeypatch.setenv("BITFOLD_VERILATOR_OPT", "-O0")
    from benchmarks.rtl_differential import run

    summary = run(80, seed=3, batch=40, frames=16, out=tmp_path, log=lambda *_: None)
    assert summary["networks"] == 80 and summary["exact"] == 80, summary["failed"]
    assert summary["frames"] == 80 * 16 and summary["batches"] == 2
    assert (tmp_path / "networks.jsonl").read_text().count("\n") == 80


@pytest.mark.slow
def test_a_stream_soak_loses_adds_and_changes_no_frame(tmp_path) -> None:
    need("verilator")
    from benchmarks.rtl_soak import soak

    graph = small_mlp()
    summary = soak(graph, frames=5000, cycles=10, out=tmp_path, seed=4, p_idle=0.4,
                   p_stall=0.4, idle_burst=8.0, stall_burst=8.0, log=lambda *_: None)
    assert summary["frames_received"] == summary["frames_expected"] == 5000
    assert (summary["lost"], summary["extra_beats"], summary["mismatches"]) == (0, 0, 0)
    assert summary["classes_equal_golden"] == 5000 and not summary["stuck"]
    assert summary["packed_vs_reference_differ"] == 0
    assert summary["cycles_per_frame_measured"] > summary["cycles_per_frame_analytic"]
