"""A ternary network through its Verilog in Icarus: every class and score equals the golden
model's, the cycles per frame amaranth.sim's and the analytic model's."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.compiler.serialize import load_graph
from bitfold.hw.plan import build_plan
from bitfold.hw.simulate import simulate_network
from bitfold.sim.runner import simulate

from ..hw.test_ternary import ternary_cnn
from .conftest import make_build, need


@pytest.mark.slow
@pytest.mark.parametrize("choice", [{"c0": (2, 3), "c1": (3, 4), "fc": (5, 8)},
                                    {"c0": (2, 3, "serial"), "c1": (3, 8), "fc": (5, 12)}])
def test_ternary_cnn_is_bit_exact_in_icarus(choice, tmp_path) -> None:
    need("icarus")
    build, folding = make_build(tmp_path / "build", ternary_cnn(), choice)
    graph = load_graph(build)
    x = np.random.default_rng(11).integers(0, 8, (32, *graph.types[graph.inputs[0]].shape))
    report = simulate(build, x, simulator="icarus", sim_dir=tmp_path / "sim")
    assert not report["timed_out"]
    assert report["frames"] == 32 and report["mismatches"] == 0, report.get("first_mismatch")
    amaranth = simulate_network(build_plan(graph, folding), x[:8])
    assert report["cycles_per_frame"] == pytest.approx(amaranth.steady_cycles_per_frame(), rel=0.01)
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)
