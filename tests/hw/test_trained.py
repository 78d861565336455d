"""Trained networks (mlp-digits, cnn-digits, sfc) generated and simulated whole in amaranth.sim.

For three foldings each: 32 test-set frames bit-exact against the golden model
(class and every score) and the measured steady-state cycles per frame within
5% of the analytic model; one folding each again under random stalls. Uses
``build/MODEL-digits`` when present, else trains briefly and compiles.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitfold.compiler.folding import fold_for_fps
from bitfold.compiler.serialize import load_graph

from .test_network import check_network

ROOT = Path(__file__).resolve().parents[2]
FOLDINGS = {  # target frames/s at 100 MHz
    "mlp-digits": (2e6, 1e6, 2.5e5),
    "cnn-digits": (2e5, 1e5, 5e4),
    "sfc": (1e6, 4e5, 1e5),
}


def _digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    x = load_digits().images[-n:].astype(np.int64)  # 0..16: the IR's uint5 (8, 8, 1)
    return x[..., None]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """``builds(model)``: its build folder, trained (2 epochs) and compiled on first use."""
    cache: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model in cache:
            return cache[model]
        have = ROOT / "build" / f"{model}-digits"
        if (have / "graph.json").is_file():
            cache[model] = have
            return have
        tmp = tmp_path_factory.mktemp(model)
        cli = [sys.executable, "-m", "bitfold"]
        subprocess.run([*cli, "train", "--model", model, "--dataset", "digits", "--epochs", "2",
                        "--out", str(tmp / "run"), "--quiet"], check=True)
        subprocess.run([*cli, "compile", str(tmp / "run"), "--out", str(tmp / "build")],
                       check=True)
        cache[model] = tmp / "build"
        return cache[model]

    return get


CASES = [pytest.param(m, i, marks=[pytest.mark.slow] + ([pytest.mark.ci] if i == 0 else []),
                      id=f"{m}-{int(f)}fps")
         for m, fps in FOLDINGS.items() for i, f in enumerate(fps)]


@pytest.mark.parametrize("model,which", CASES)
def test_trained_network_is_bit_exact_and_meets_the_cycle_model(builds, model, which) -> None:
    graph = load_graph(builds(model))
    folding = fold_for_fps(graph, FOLDINGS[model][which])
    x = _digits(32)
    run = check_network(graph, folding, x)
    measured = run.steady_cycles_per_frame()
    print(f"{model} {[(c.pe, c.simd) for c in folding.layers]}: {measured:.1f} cycles/frame "
          f"measured, {folding.cycles_per_frame} analytic")
    assert measured == pytest.approx(folding.cycles_per_frame, rel=0.05)
    if which == 1:
        check_network(graph, folding, x[:16], p_idle=0.3, p_stall=0.3, seed=which)


@pytest.fixture(scope="module")
def sfc_mnist(tmp_path_factory, mnist_dir) -> Path:
    """The MNIST-trained ``sfc`` build: ``build/sfc-mnist`` when present, else 1 epoch + compile."""
    have = ROOT / "build" / "sfc-mnist"
    if (have / "graph.json").is_file():
        return have
    tmp = tmp_path_factory.mktemp("sfc-mnist")
    cli = [sys.executable, "-m", "bitfold"]
    subprocess.run([*cli, "train", "--model", "sfc", "--dataset", "mnist", "--data-dir",
                    str(mnist_dir), "--epochs", "1", "--batch-size", "256", "--out",
                    str(tmp / "run"), "--quiet"], check=True)
    subprocess.run([*cli, "compile", str(tmp / "run"), "--out", str(tmp / "build")], check=True)
    return tmp / "build"


@pytest.mark.slow
@pytest.mark.parametrize("fps", FOLDINGS["sfc"], ids=lambda f: f"{int(f)}fps")
def test_trained_sfc_on_mnist_is_bit_exact(sfc_mnist, mnist_dir, fps) -> None:
    """The real 784-input ``sfc`` on 64 MNIST test frames, at three foldings."""
    from bitfold.train.data import load_dataset

    graph = load_graph(sfc_mnist)
    folding = fold_for_fps(graph, fps)
    x = load_dataset("mnist", mnist_dir).x_test[:64].numpy().astype(np.int64).transpose(0, 2, 3, 1)
    run = check_network(graph, folding, x)
    assert run.steady_cycles_per_frame() == pytest.approx(folding.cycles_per_frame, rel=0.05)
