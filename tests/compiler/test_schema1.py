"""Build folders of schema 1 (a node kind per encoding and geometry) still load.

``tests/compiler/data/schema1/`` was written by ``save_graph`` at schema 1 (commit b53fc88),
every layer kind of that schema in it, with the reference interpreter's outputs on a few
frames beside it (``expected.json``; the folder's README.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bitfold.compiler.encodings import Binary, Composite, Domain, Sparse
from bitfold.compiler.geometry import DENSE, Window
from bitfold.compiler.golden import run_reference
from bitfold.compiler.ir import Layer
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold
from bitfold.compiler.schema1 import upgrade_schema1
from bitfold.compiler.serialize import load_graph, save_graph

DATA = Path(__file__).parent / "data" / "schema1"


def _expected(name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    doc = json.loads((DATA / name / "expected.json").read_text())
    return np.array(doc["x"]), {k: np.array(v) for k, v in doc["values"].items()}


def test_the_fixture_is_schema_1() -> None:
    for name in ("folded", "lowered"):
        doc = json.loads((DATA / name / "graph.json").read_text())
        assert doc["schema"] == 1 and "Layer" not in {n["op"] for n in doc["nodes"]}


def test_every_schema_1_layer_kind_reads_as_a_layer() -> None:
    g = load_graph(DATA / "folded")
    layers = [n for n in g.nodes if isinstance(n, Layer)]
    assert [n.kind for n in layers] == [
        "BinaryConv2d", "SparseConv2d", "CompositeConv2d", "DomainConv2d",
        "BinaryDense", "SparseDense", "CompositeDense", "DomainDense"]
    assert [type(n.encoding) for n in layers] == [Binary, Sparse, Composite, Domain] * 2
    assert all(n.geometry == DENSE for n in layers[4:])
    assert layers[0].geometry == Window(3, 1, 1, 5) and layers[2].geometry == Window(2, 1, 1, 1)
    # a convolution's (C_out, k, k, C_in) weights are the encoding's (C_out, k k C_in) matrix
    assert layers[0].encoding.weight.shape == (4, 18)
    assert layers[2].encoding.weight.shape == (2, 4, 12)  # K planes


@pytest.mark.parametrize("name", ["folded", "lowered"])
def test_schema_1_graphs_compute_what_they_computed(name) -> None:
    g = load_graph(DATA / name)
    x, want = _expected(name)
    got = run_reference(g, x)
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    if name == "folded":
        packed = run_packed(g, x)
        for k, v in want.items():
            np.testing.assert_array_equal(packed[k], v, err_msg=k)
    else:  # folding keeps the hidden layer's bits exactly
        folded = run_reference(fold(g), x)
        np.testing.assert_array_equal(folded["a0"], want["a0"])


def test_schema_1_rewritten_as_schema_2_round_trips(tmp_path) -> None:
    g = load_graph(DATA / "folded")
    save_graph(g, tmp_path / "a")
    doc = json.loads((tmp_path / "a" / "graph.json").read_text())
    assert doc["schema"] == 2 and {n["op"] for n in doc["nodes"]} == {
        "Input", "Layer", "Threshold", "MaxPool2d", "ScoreAffine", "ArgMax"}
    again = load_graph(tmp_path / "a")
    assert again == g
    save_graph(again, tmp_path / "b")
    for f in ("graph.json", "tensors.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_upgrade_leaves_the_document_alone(tmp_path) -> None:
    shutil.copytree(DATA / "folded", tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "graph.json").read_text())
    before = json.dumps(doc, sort_keys=True)
    up = upgrade_schema1(doc)
    assert json.dumps(doc, sort_keys=True) == before
    conv = next(n for n in up["nodes"] if n["name"] == "c1")
    assert conv == {"op": "Layer", "name": "c1", "input": "c0_t",
                    "geometry": {"kind": "window", "kernel": 2, "stride": 1, "pad": 0,
                                 "pad_value": -1},
                    "encoding": {"kind": "sparse", "mask": "c1.mask",
                                 "polarity": "c1.polarity"}}
