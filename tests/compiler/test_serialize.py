"""graph.json + tensors.npz: byte-identical round trips and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from bitfold.compiler.encodings import Binary
from bitfold.compiler.errors import IRError, IRFormatError
from bitfold.compiler.ir import Input, Layer, Threshold
from bitfold.compiler.passes import fold
from bitfold.compiler.serialize import load_graph, read_npz, save_graph
from bitfold.compiler.verify import build_graph

from .randgraphs import SCHEMES, lowered_graphs


def _files(build: Path) -> tuple[bytes, bytes]:
    return (build / "graph.json").read_bytes(), (build / "tensors.npz").read_bytes()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(graph=lowered_graphs(schemes=SCHEMES))
def test_round_trip_is_byte_identical(tmp_path_factory, graph) -> None:
    for g in (graph, fold(graph)):
        a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
        save_graph(g, a)
        loaded = load_graph(a)
        assert loaded == g
        save_graph(loaded, b)
        assert _files(a) == _files(b)


def _saved(tmp_path: Path) -> Path:
    g = build_graph("net", [Input("x", (3, 3, 1), 8),
                            Layer("fc", "x", Binary(np.eye(4, 9, dtype=np.uint8))),
                            Threshold("t", "fc", [0, -5, 100, 2])], ["t"])
    save_graph(fold(g), tmp_path)
    return tmp_path


def _edit(build: Path, change) -> None:
    doc = json.loads((build / "graph.json").read_text())
    change(doc)
    (build / "graph.json").write_text(json.dumps(doc))


def test_no_build_paths_and_a_schema_in_graph_json(tmp_path) -> None:
    build = _saved(tmp_path / "some" / "where")
    text = (build / "graph.json").read_text()
    assert str(tmp_path) not in text and "where" not in text
    assert json.loads(text)["schema"] == 2


def test_weights_are_packed_bits_and_thresholds_integers(tmp_path) -> None:
    arrays = read_npz(_saved(tmp_path) / "tensors.npz")
    assert arrays["fc.weight"].dtype == np.uint8 and arrays["fc.weight"].shape == (4, 2)
    assert np.unpackbits(arrays["fc.weight"], axis=1, count=9, bitorder="little").tolist() == \
        np.eye(4, 9).tolist()
    assert arrays["t.thresholds"].dtype == np.int64


def test_wrong_schema_version(tmp_path) -> None:
    build = _saved(tmp_path)
    _edit(build, lambda d: d.update(schema=99))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: schema version 99, this bitfold "
                                            r"reads 1 and 2; re-run `bitfold compile`$"):
        load_graph(build)


def test_truncated_npz(tmp_path) -> None:
    build = _saved(tmp_path)
    raw = (build / "tensors.npz").read_bytes()
    (build / "tensors.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IRFormatError, match=r"^\S+tensors\.npz: not a readable npz, truncated or "
                                            r"corrupt \(.*\); re-run `bitfold compile`$"):
        load_graph(build)


def test_npz_from_another_compile(tmp_path) -> None:
    build = _saved(tmp_path / "a")
    other = build_graph("net", [Input("x", (2,), 1, True), Layer("fc", "x", Binary([[1, 1]]))],
                        ["fc"])
    save_graph(other, tmp_path / "b")
    (build / "tensors.npz").write_bytes((tmp_path / "b" / "tensors.npz").read_bytes())
    with pytest.raises(IRFormatError, match=r"^\S+tensors\.npz: does not match \S+graph\.json "
                                            r"\(checksum differs"):
        load_graph(build)


def test_shape_mismatch(tmp_path) -> None:
    build = _saved(tmp_path)
    _edit(build, lambda d: d["arrays"]["fc.weight"].update(shape=[4, 17]))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: node 1 \('fc'\): encoding: weight "
                                            r"'fc\.weight': tensors\.npz holds uint8 \(4, 2\), "
                                            r"graph\.json declares bits \[4, 17\]"):
        load_graph(build)


def test_unknown_node_kind(tmp_path) -> None:
    build = _saved(tmp_path)
    _edit(build, lambda d: d["nodes"][2].update(op="Softmax"))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: node 2 \('t'\): unknown kind "
                                            r"'Softmax'; this bitfold reads Input, Layer, "):
        load_graph(build)


def test_unknown_field(tmp_path) -> None:
    build = _saved(tmp_path)
    _edit(build, lambda d: d["nodes"][1].update(bias="fc.bias"))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: node 1 \('fc'\): Layer needs "
                                            r"fields \['name', 'input', 'encoding', 'geometry'\]; "
                                            r"missing \[\], unknown \['bias'\]$"):
        load_graph(build)


def test_unknown_encoding_field_and_kind(tmp_path) -> None:
    build = _saved(tmp_path)
    _edit(build, lambda d: d["nodes"][1]["encoding"].update(mask="fc.weight"))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: node 1 \('fc'\): encoding: binary "
                                            r"needs fields \['weight'\]; missing \[\], "
                                            r"unknown \['mask'\]$"):
        load_graph(build)
    build = _saved(tmp_path / "kind")
    _edit(build, lambda d: d["nodes"][1]["encoding"].update(kind="quaternary"))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: node 1 \('fc'\): encoding: unknown "
                                            r"weight encoding .*; this bitfold reads binary, "):
        load_graph(build)
    build = _saved(tmp_path / "geometry")
    _edit(build, lambda d: d["nodes"][1].update(geometry={"kind": "dense", "kernel": 3}))
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: node 1 \('fc'\): geometry: .* "
                                            r'must be \{"kind": "dense"\} or'):
        load_graph(build)


def test_edited_graph_that_is_invalid_ir(tmp_path) -> None:
    build = _saved(tmp_path)
    _edit(build, lambda d: d["tensors"]["fc"].update(bits=40))
    with pytest.raises(IRError, match=r"^\S+graph\.json: graph 'net': tensor 'fc' is declared "
                                      r"int40\[4\]"):
        load_graph(build)


def test_missing_and_broken_files(tmp_path) -> None:
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: not found; run `bitfold compile "):
        load_graph(tmp_path)
    build = _saved(tmp_path)
    (build / "graph.json").write_text("{")
    with pytest.raises(IRFormatError, match=r"^\S+graph\.json: not valid JSON"):
        load_graph(build)


def test_npz_with_a_pickle_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(IRFormatError, match=r"^\S+evil\.npz: not a readable npz"):
        read_npz(path)
