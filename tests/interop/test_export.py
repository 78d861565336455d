"""bitfold export: IR -> QONNX whose qonnx execution equals the golden model, and back."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.cli import main
from bitfold.compiler.encodings import Binary, Sparse
from bitfold.compiler.ir import (
    AffineArgMax,
    AffineSign,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    Window,
)
from bitfold.compiler.packed import PackedExecutor
from bitfold.compiler.passes import fold
from bitfold.compiler.serialize import save_graph
from bitfold.compiler.verify import build_graph
from bitfold.interop.encoding import InputScale
from bitfold.interop.errors import InteropError
from bitfold.interop.export import export_graph
from bitfold.interop.export_check import check_export
from bitfold.interop.importer import import_model
from bitfold.interop.onnx_model import fold_weight_quantizers, load_model


def _affine(rng, c: int, center: float, spread: float):
    slope = rng.choice([-1.0, 1.0], c) * rng.uniform(0.5, 2, c)
    return slope, -slope * (center + rng.normal(0, spread, c))


def conv_graph(seed: int = 0, bits: int = 4, pad_value: int = 1) -> Graph:
    """4-bit 6x6x2 input -> conv 3x3 pad 1 -> sign -> pool -> conv pad 1 (+1) -> sign -> dense."""
    rng = np.random.default_rng(seed)
    w1 = rng.integers(0, 2, (4, 3, 3, 2))
    w2 = rng.integers(0, 2, (5, 3, 3, 4))
    w3 = rng.integers(0, 2, (3, 3 * 3 * 5))
    nodes = [Input("input", (6, 6, 2), bits, False),
             Layer("c1", "input", Binary(w1), Window(kernel=3, stride=1, pad=1, pad_value=0)),
             AffineSign("s1", "c1", *_affine(rng, 4, 0.0, 20.0)),
             MaxPool2d("p1", "s1", 2, 2),
             Layer("c2", "p1", Binary(w2), Window(kernel=3, stride=1, pad=1, pad_value=pad_value)),
             AffineSign("s2", "c2", *_affine(rng, 5, 18.0, 4.0)),
             Layer("d3", "s2", Binary(w3)),
             AffineArgMax("cls", "d3", rng.uniform(0.1, 1, 3), rng.normal(0, 1, 3))]
    return fold(build_graph("convnet", nodes, ["cls"]))


def test_export_equals_golden_exactly_on_random_frames():
    graph = conv_graph()
    model = export_graph(graph)
    frames = np.random.default_rng(1).integers(0, 16, (400, 6, 6, 2))
    assert check_export(graph, model, frames) == (400, 400, 400)
    ops = {n.op_type for n in model.graph.node}
    assert {"BipolarQuant", "Quant", "Conv", "MatMul", "Pad", "MaxPool"} <= ops


def test_export_then_import_gives_the_same_classes(tmp_path):
    graph = conv_graph(seed=2, pad_value=-1)
    path = tmp_path / "convnet.onnx"
    export_graph(graph).save(str(path))
    back = import_model(fold_weight_quantizers(load_model(path)), "back", InputScale.parse("1"),
                        input_bits=4)
    frames = np.random.default_rng(3).integers(0, 16, (500, 6, 6, 2))
    ex_a, ex_b = PackedExecutor(graph), PackedExecutor(back.graph)
    a = ex_a.run(frames, keep=["cls"])["cls"]
    b = ex_b.run(frames, keep=[back.graph.outputs[0]])[back.graph.outputs[0]]
    assert np.array_equal(a, b)
    for name in ("s1", "s2"):  # thresholds come back exactly (negated rows included)
        assert np.array_equal(graph.node(name).thresholds, back.graph.node(name).thresholds)


def test_export_refuses_kinds_qonnx_cannot_hold():
    rng = np.random.default_rng(0)
    nodes = [Input("input", (8,), 1, True),
             Layer("d", "input", Sparse(rng.integers(0, 2, (3, 8)), rng.integers(0, 2, 3))),
             AffineArgMax("cls", "d", np.ones(3), np.zeros(3))]
    with pytest.raises(InteropError, match=r"^node 'd' is a SparseDense; bitfold export writes"):
        export_graph(fold(build_graph("sparse", nodes, ["cls"])))


def test_export_cli_checks_every_frame_of_a_build(tmp_path, capsys):
    build = tmp_path / "build"
    save_graph(conv_graph(seed=4), build)
    x = np.random.default_rng(5).integers(0, 16, (50, 2, 6, 6)).astype(np.uint8)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        np.savez(data / f"{split}.npz", x=x, y=np.arange(50) % 3)
    out = tmp_path / "m.onnx"
    assert main(["export", str(build), "--out", str(out), "--dataset", "npz",
                 "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "qonnx execute_onnx == golden on 50 of 50 npz test frames (classes), 50 of 50" in text
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "neither a run (checkpoint.pt) nor a build" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
