"""System-simulation fixtures: small generated designs and simulator availability."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

from bitfold.compiler.encodings import Binary
from bitfold.compiler.folding import evaluate_folding  # noqa: E402
from bitfold.compiler.ir import (
    # noqa: E402,
    ArgMax,
    Graph,
    Input,
    Layer,
    ScoreAffine,
    Threshold,
)
from bitfold.compiler.serialize import save_graph  # noqa: E402
from bitfold.compiler.verify import build_graph  # noqa: E402
from bitfold.sim.runner import available  # noqa: E402

from ..hw.helpers import small_cnn  # noqa: E402


def pytest_configure(config) -> None:
    config.addinivalue_line("filterwarnings", "ignore:.*created but never used")


def need(simulator: str) -> None:
    """Skip unless ``simulator`` is installed (``make setup`` installs both)."""
    if not available(simulator):
        pytest.skip(f"{simulator} is not installed (make setup)")


def small_mlp() -> Graph:
    """A small dense network on digits-shaped input ((8, 8, 1), 5-bit pixels)."""
    rng = np.random.default_rng(0)
    nodes = [Input("input", (8, 8, 1), 5),
             Layer("fc0", "input", Binary(rng.integers(0, 2, (16, 64)))),
             Threshold("t0", "fc0", rng.integers(-20, 20, 16)),
             Layer("fc1", "t0", Binary(rng.integers(0, 2, (10, 16)))),
             ScoreAffine("scores", "fc1", rng.integers(1, 4, 10), rng.integers(-9, 9, 10)),
             ArgMax("class", "scores")]
    return build_graph("small mlp", nodes, ["class"])


def make_build(path: Path, graph: Graph, choice: dict) -> tuple[Path, object]:
    """``path`` as a build folder: graph.json, tensors.npz and rtl/ at folding ``choice``."""
    from bitfold.hw.generate import generate

    folding = evaluate_folding(graph, choice)
    save_graph(graph, path)
    generate(path, graph, folding)
    return path, folding


@pytest.fixture(scope="session")
def mlp_build(tmp_path_factory) -> tuple[Path, object]:
    return make_build(tmp_path_factory.mktemp("mlp"), small_mlp(), {"fc0": (4, 16), "fc1": (2, 8)})


@pytest.fixture(scope="session")
def cnn_build(tmp_path_factory) -> tuple[Path, object]:
    return make_build(tmp_path_factory.mktemp("cnn"), small_cnn("small cnn"),
                      {"c0": (2, 6), "c1": (3, 4), "fc": (5, 8)})
