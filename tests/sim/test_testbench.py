"""The cocotb testbench on small generated designs: bit-exact, cycle counts, stalls, mutations.

Every result is compared with the golden model; measured cycles per frame must
agree with ``amaranth.sim`` (same frames, same design) and with the analytic
model within 5%; a flipped weight bit must fail with the mismatch report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitfold.artifacts import ArtifactError
from bitfold.compiler.serialize import load_graph
from bitfold.hw.generate import check_rtl, read_manifest
from bitfold.hw.plan import build_plan
from bitfold.hw.simulate import simulate_network
from bitfold.sim.mutate import flip_weight_bit
from bitfold.sim.runner import SimulationError, simulate

from .conftest import need

SIMULATORS = ["icarus", pytest.param("verilator", marks=pytest.mark.slow)]


def _frames(build, n: int, seed: int = 1) -> np.ndarray:
    graph = load_graph(build)
    t = graph.types[graph.inputs[0]]
    return np.random.default_rng(seed).integers(0, 1 << t.bits, (n, *t.shape))


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_small_mlp_is_bit_exact_and_meets_the_cycle_models(mlp_build, simulator, tmp_path) -> None:
    need(simulator)
    build, folding = mlp_build
    x = _frames(build, 24)
    report = simulate(build, x, simulator=simulator, sim_dir=tmp_path / "sim")
    assert report["frames"] == 24 and report["mismatches"] == 0, report.get("first_mismatch")
    assert not report["timed_out"]
    amaranth = simulate_network(build_plan(load_graph(build), folding), x)
    assert report["cycles_per_frame"] == amaranth.steady_cycles_per_frame()
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)
    assert report["analytic_cycles_per_frame"] == folding.cycles_per_frame
    assert report["latency_cycles"] > 0 and report["simulator"] == simulator
    assert json.loads((tmp_path / "sim" / "report.json").read_text()) == report


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_small_mlp_is_bit_exact_under_random_stalls(mlp_build, simulator, tmp_path) -> None:
    need(simulator)
    build, _ = mlp_build
    report = simulate(build, _frames(build, 16, 2), simulator=simulator, stalls=True, seed=3,
                      sim_dir=tmp_path / "sim")
    assert report["frames"] == 16 and report["mismatches"] == 0, report.get("first_mismatch")
    assert report["stalls"] == {"p_idle": 0.3, "p_stall": 0.3, "seed": 3}


def test_small_cnn_is_bit_exact_with_and_without_stalls(cnn_build, tmp_path) -> None:
    need("icarus")
    build, folding = cnn_build
    x = _frames(build, 8)
    report = simulate(build, x, simulator="icarus", sim_dir=tmp_path / "sim")
    assert report["frames"] == 8 and report["mismatches"] == 0, report.get("first_mismatch")
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)
    report = simulate(build, x[:4], simulator="icarus", stalls=True, seed=5, sim_dir=tmp_path / "sim")
    assert report["frames"] == 4 and report["mismatches"] == 0, report.get("first_mismatch")


def test_a_flipped_weight_bit_fails_with_the_mismatch_report(mlp_build, tmp_path) -> None:
    need("icarus")
    build, _ = mlp_build
    x = _frames(build, 16, 7)
    mutated = flip_weight_bit(build / "rtl", tmp_path / "rtl", "mvu_fc1", address=0, bit=3)
    core = read_manifest(mutated)["core"] + ".v"
    assert (mutated / core).read_text() != (build / "rtl" / core).read_text()
    assert check_rtl(mutated, build)["sha256"][core] != read_manifest(build / "rtl")["sha256"][core]
    report = simulate(build, x, simulator="icarus", rtl=mutated, sim_dir=tmp_path / "sim")
    assert report["frames"] == 16 and report["mismatches"] > 0
    first = report["first_mismatch"]
    assert first["expected"] != first["got"]
    assert first["hint"].startswith(f"per-layer golden values: bitfold golden {build} --dump ")
    # the unmutated design passes the same frames
    assert simulate(build, x, simulator="icarus", sim_dir=tmp_path / "ok")["mismatches"] == 0


def test_mutation_and_simulate_refuse_what_they_cannot_do(mlp_build, tmp_path) -> None:
    build, _ = mlp_build
    with pytest.raises(ValueError, match=r"^no MVU stage 'mvu_nope'; the design has mvu_fc0, mvu_fc1$"):
        flip_weight_bit(build / "rtl", tmp_path / "m", "mvu_nope")
    with pytest.raises(SimulationError, match=r"^unknown simulator 'ghdl'; choose one of icarus, "):
        simulate(build, _frames(build, 2), simulator="ghdl")
    with pytest.raises(SimulationError, match=r"^frames must be \(N, 8, 8, 1\) with N >= 1"):
        simulate(build, np.zeros((2, 64), int), sim_dir=tmp_path / "sim")
    with pytest.raises(SimulationError, match=r".*: no manifest.json; run `bitfold generate "):
        simulate(tmp_path, _frames(build, 2), sim_dir=tmp_path / "s")
    old = tmp_path / "old"
    (old / "rtl").mkdir(parents=True)
    (old / "rtl" / "manifest.json").write_text('{"schema": 1}')
    with pytest.raises(ArtifactError, match=r"^\S+/manifest.json: manifest schema 1, this bitfold "
                                            r"reads 3 \(from an older bitfold\); rerun "
                                            rf"`bitfold generate {old}`$"):
        simulate(old, _frames(build, 2), sim_dir=tmp_path / "s")
