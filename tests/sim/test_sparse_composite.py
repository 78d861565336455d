"""Sparse (mask, index, group layouts), composite (parallel, serial) and domain networks in cocotb.

Small generated networks through their Verilog in Icarus: every class and score
equals the golden model's, and the measured cycles per frame equal
amaranth.sim's and the analytic model's.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.compiler.serialize import load_graph
from bitfold.hw.plan import build_plan
from bitfold.hw.simulate import simulate_network
from bitfold.sim.runner import simulate

from ..hw.helpers import composite_mlp, domain_cnn, sparse_cnn
from .conftest import make_build, need

CASES = {
    "sparse50-index": (lambda: sparse_cnn(0.5, "sparse50"),
                       {"c0": (2, 3, "index"), "c1": (3, 4, "index"), "fc": (5, 8, "index")}),
    "sparse75-mixed": (lambda: sparse_cnn(0.75, "sparse75"),
                       {"c0": (4, 6, "mask"), "c1": (6, 2, "index"), "fc": (5, 24, "index")}),
    "sparse50-1:2-group": (lambda: sparse_cnn(0.5, "sparse50 1:2", group=2),
                           {"c0": (2, 3, "group"), "c1": (3, 4, "group"), "fc": (5, 8, "group")}),
    "sparse75-1:4-group": (lambda: sparse_cnn(0.75, "sparse75 1:4", group=4),
                           {"c0": (4, 6, "mask"), "c1": (2, 1, "group"), "fc": (5, 2, "group")}),
    "composite": (composite_mlp, {"fc0": (4, 16), "fc1": (2, 8)}),
    "composite-serial": (composite_mlp, {"fc0": (4, 16, "serial"), "fc1": (2, 8, "serial")}),
    "domain": (domain_cnn, {"c0": (2, 3), "c1": (3, 4), "fc": (5, 8)}),
}


def _run(case: str, tmp_path, frames: int) -> None:
    need("icarus")
    make, choice = CASES[case]
    build, folding = make_build(tmp_path / "build", make(), choice)
    graph = load_graph(build)
    shape = graph.types[graph.inputs[0]].shape
    x = np.random.default_rng(11).integers(0, 1 << graph.types[graph.inputs[0]].bits,
                                           (frames, *shape))
    report = simulate(build, x, simulator="icarus", sim_dir=tmp_path / "sim")
    assert not report["timed_out"]
    assert report["frames"] == frames and report["mismatches"] == 0, report.get("first_mismatch")
    amaranth = simulate_network(build_plan(graph, folding), x[:8])
    assert report["cycles_per_frame"] == pytest.approx(amaranth.steady_cycles_per_frame(), rel=0.01)
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_sparse_and_composite_networks_are_bit_exact_in_icarus(case, tmp_path) -> None:
    _run(case, tmp_path, 48)


@pytest.mark.slow
@pytest.mark.ci
def test_sparse_index_layout_is_bit_exact_in_icarus(tmp_path) -> None:
    _run("sparse50-index", tmp_path, 24)


def test_composite_serial_layout_is_bit_exact_in_icarus(tmp_path) -> None:
    _run("composite-serial", tmp_path, 16)


def test_sparse_group_layout_is_bit_exact_in_icarus(tmp_path) -> None:
    _run("sparse75-1:4-group", tmp_path, 16)


def test_domain_layers_are_bit_exact_in_icarus(tmp_path) -> None:
    _run("domain", tmp_path, 16)
