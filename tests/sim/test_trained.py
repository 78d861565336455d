"""Trained networks through their generated RTL in cocotb, bit-exact against the golden model.

mlp-digits (both simulators, with and without random stalls), cnn-digits (the
convolution path) on every digits test frame, sfc on all 10,000 MNIST test frames
(accuracy from RTL equals the golden model's); measured cycles per frame equal
amaranth.sim's and lie within 5% of the analytic model. Uses ``build/MODEL-DATASET``
when present, else trains briefly and compiles (digits only). Slow; CI runs one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitfold.compiler.folding import evaluate_folding, fold_for_fps
from bitfold.compiler.serialize import load_graph, save_graph
from bitfold.hw.generate import generate
from bitfold.hw.plan import build_plan
from bitfold.hw.simulate import simulate_network
from bitfold.sim.runner import simulate

from .conftest import need

ROOT = Path(__file__).resolve().parents[2]
FPS = {"mlp-digits": 1e6, "cnn-digits": 2e5}  # at 100 MHz
# sfc at `bitfold fold --max-luts 12000` (448 cycles/frame, about 11,700 LUTs): its Verilator
# build takes about a minute, where the 1e6-fps folding (61,000 LUTs) takes several
FOLDINGS = {"sfc": {"fc0": (4, 112), "fc1": (1, 256), "fc2": (1, 256), "fc3": (1, 8)}}


def _frames(dataset: str, n: int | None, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    from bitfold.train.data import load_dataset
    from bitfold.train.to_ir import nchw_to_ir

    data = load_dataset(dataset, data_dir)
    n = len(data.x_test) if n is None else n
    return nchw_to_ir(data.x_test[:n].numpy()), data.y_test[:n].numpy()


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    """``designs(model, dataset)``: a build folder with rtl/, generated once per module."""
    cache: dict[tuple[str, str], tuple[Path, object]] = {}

    def get(model: str, dataset: str = "digits") -> tuple[Path, object]:
        if (model, dataset) in cache:
            return cache[model, dataset]
        have = ROOT / "build" / f"{model}-{dataset}"
        tmp = tmp_path_factory.mktemp(model)
        if (have / "graph.json").is_file():
            graph = load_graph(have)
        elif dataset == "digits":
            cli = [sys.executable, "-m", "bitfold"]
            subprocess.run([*cli, "train", "--model", model, "--dataset", "digits", "--epochs",
                            "2", "--out", str(tmp / "run"), "--quiet"], check=True)
            subprocess.run([*cli, "compile", str(tmp / "run"), "--out", str(tmp / "c")],
                           check=True)
            graph = load_graph(tmp / "c")
        else:
            pytest.skip(f"{have} not present (train and compile {model} on {dataset} first)")
        save_graph(graph, tmp)
        folding = (evaluate_folding(graph, FOLDINGS[model]) if model in FOLDINGS
                   else fold_for_fps(graph, FPS[model]))
        generate(tmp, graph, folding)
        cache[model, dataset] = (tmp, folding)
        return cache[model, dataset]

    return get


def _check(report: dict, n: int) -> None:
    assert not report["timed_out"]
    assert report["frames"] == n and report["mismatches"] == 0, report.get("first_mismatch")


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("stalls", [False, True], ids=["no-stalls", "stalls"])
def test_mlp_digits_every_test_frame_is_bit_exact(designs, simulator, stalls, tmp_path) -> None:
    need(simulator)
    build, folding = designs("mlp-digits")
    x, _ = _frames("digits", None)
    report = simulate(build, x, simulator=simulator, stalls=stalls, seed=1, sim_dir=tmp_path / "sim")
    _check(report, len(x))
    if not stalls:
        assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)


@pytest.mark.slow
@pytest.mark.ci
def test_mlp_digits_on_icarus_matches_golden_and_amaranth_cycles(designs, tmp_path) -> None:
    need("icarus")
    build, folding = designs("mlp-digits")
    x, _ = _frames("digits", 48)
    report = simulate(build, x, simulator="icarus", sim_dir=tmp_path / "sim")
    _check(report, len(x))
    amaranth = simulate_network(build_plan(load_graph(build), folding), x[:16])
    assert report["cycles_per_frame"] == amaranth.steady_cycles_per_frame()
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)


@pytest.mark.slow
def test_cnn_digits_every_test_frame_is_bit_exact(designs, tmp_path) -> None:
    need("verilator")
    build, folding = designs("cnn-digits")
    x, _ = _frames("digits", None)
    report = simulate(build, x, simulator="verilator", sim_dir=tmp_path / "sim")
    _check(report, len(x))
    amaranth = simulate_network(build_plan(load_graph(build), folding), x[:6])
    assert report["cycles_per_frame"] == pytest.approx(amaranth.steady_cycles_per_frame(), rel=0.01)
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)
    report = simulate(build, x[:24], simulator="verilator", stalls=True, seed=2, sim_dir=tmp_path / "sim")
    _check(report, 24)


@pytest.mark.slow
def test_sfc_mnist_whole_test_set_bit_exact_with_golden_accuracy(designs, mnist_dir,
                                                                 tmp_path) -> None:
    need("verilator")
    from bitfold.sim.frames import expected_outputs

    build, folding = designs("sfc", "mnist")
    x, labels = _frames("mnist", None, mnist_dir)
    assert len(x) == 10_000
    classes, scores = expected_outputs(load_graph(build), x)
    report = simulate(build, x, simulator="verilator", sim_dir=tmp_path / "sim",
                      expected=(classes, scores))
    _check(report, len(x))  # every class equals golden, so the accuracies are equal
    golden_acc = float((classes == labels).mean())
    print(f"sfc mnist: {len(x)} frames bit-exact, accuracy {golden_acc:.4f} (RTL = golden), "
          f"{report['cycles_per_frame']} cycles/frame (analytic {folding.cycles_per_frame}), "
          f"build {report['build_s']:.0f} s, simulation {report['sim_s']:.0f} s")
    assert report["cycles_per_frame"] == pytest.approx(folding.cycles_per_frame, rel=0.05)
