"""bitfold import: QONNX graphs lowered to the IR; golden == qonnx's execution; refusals."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.cli import main
from bitfold.compiler.packed import PackedExecutor
from bitfold.compiler.serialize import load_graph
from bitfold.interop.check import onnx_agreement
from bitfold.interop.encoding import InputScale, encode_pixels
from bitfold.interop.errors import InteropError, UnsupportedNodeError
from bitfold.interop.importer import import_model
from bitfold.interop.onnx_model import execute_frames, fold_weight_quantizers, load_model

from ..conftest import ROOT
from . import graphs

TFC = ROOT.parent / "shared" / "models" / "qonnx" / "TFC_1W1A.onnx"


def _import(path, scale="1/255"):
    model = load_model(path)
    return model, import_model(fold_weight_quantizers(model), "tiny", InputScale.parse(scale))


def _pixels(n: int, shape=(16,), seed: int = 1) -> np.ndarray:
    # a third of the pixels right at the input threshold's neighbours (127, 128)
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 256, size=(n, *shape))
    edge = rng.random(p.shape) < 0.3
    return np.where(edge, rng.integers(127, 129, size=p.shape), p).astype(np.uint8)


@pytest.mark.parametrize("hidden, extra", [("bipolar", ""), ("multithreshold", ""),
                                           ("bipolar", "gemm"), ("bipolar", "softmax-end")])
def test_tiny_graphs_agree_with_qonnx_on_every_frame(tmp_path, hidden, extra):
    path = graphs.mlp(tmp_path / "m.onnx", seed=3, hidden=hidden, extra=extra)
    model, net = _import(path)
    assert net.encoding["summary"] == "pixel >= 128"
    pixels = _pixels(3000)
    report = onnx_agreement(net.graph, model, net.encoding, net.score_tensor, pixels, None)
    assert report["frames"] == 3000
    assert report["onnx_disagreement_count"] == 0
    assert report["reference_check"]["identical"]


def test_finn_streamlined_graph_agrees_with_qonnx_on_every_binary_input(tmp_path):
    """MultiThreshold to {0, 1} and XnorPopcountMatMul, FINN's streamlined form; thresholds
    at integers and half-integers, so ties on the popcount are exercised."""
    model, net = _import(graphs.finn_mlp(tmp_path / "finn.onnx", seed=2))
    kinds = [n.kind for n in net.graph.nodes]
    assert kinds.count("BinaryDense") == 2 and kinds.count("Threshold") == 1
    x1 = ((np.arange(2 ** 16)[:, None] >> np.arange(16)) & 1).astype(np.uint8)
    pixels = np.where(x1 == 1, 200, 10).astype(np.uint8)
    report = onnx_agreement(net.graph, model, net.encoding, net.score_tensor, pixels, None, 0)
    assert report["frames"] == 2 ** 16 and report["onnx_disagreement_count"] == 0


def test_hidden_signs_equal_qonnx_on_every_binary_input(tmp_path):
    """All 2**16 binary inputs: every popcount 0..16 of every channel, ties included."""
    path = graphs.mlp(tmp_path / "m.onnx", seed=5)
    model, net = _import(path)
    x1 = ((np.arange(2 ** 16)[:, None] >> np.arange(16)) & 1).astype(np.uint8)
    golden = PackedExecutor(net.graph).run(x1)["a1"]
    pixels = np.where(x1 == 1, 200, 10).astype(np.uint8)
    ref = execute_frames(model, InputScale.parse("1/255").apply(pixels), "a1", batch=8192)
    assert np.array_equal(golden, (ref > 0).astype(np.uint8))
    assert net.graph.node("a1").kind == "Threshold"


@pytest.mark.parametrize("hidden, extra, pattern", [
    ("quant4", "", r"^node 'a1' \(Quant, scale=0\.25, zeropt=0, bitwidth=4, narrow=0, "
                   r"rounding_mode=ROUND, signed=1\): it quantizes activations to 4 bits; bitfold's layers "
                   r"take binary \(1-bit\) activations"),
    ("bipolar", "softmax-middle", r"^node 'sm' \(Softmax, axis=1\): a Softmax in the middle of the "
                                  r"network \(node 'a1' reads its result\); bitfold takes "
                                  r"Softmax/LogSoftmax/ArgMax/TopK only as the last nodes"),
    ("bipolar", "residual", r"^node 'r' \(Add\): it combines 2 computed tensors \(m_sq, bn1\): a "
                            r"residual connection or a branch join, which the IR has not yet; "
                            r"supported: BipolarQuant"),
    ("bipolar", "ternary", r"^node 'm1' \(MatMul\): its weights take 3 distinct values in some output "
                           r"channel; bitfold imports binary weights"),
])
def test_unsupported_graphs_are_refused_in_one_line(tmp_path, hidden, extra, pattern):
    path = graphs.mlp(tmp_path / "m.onnx", hidden=hidden, extra=extra)
    with pytest.raises(UnsupportedNodeError, match=pattern) as info:
        _import(path)
    assert "\n" not in str(info.value)


def test_cli_refusal_exits_2_and_writes_nothing(tmp_path, capsys):
    path = graphs.mlp(tmp_path / "m.onnx", hidden="quant4")
    build = tmp_path / "build"
    assert main(["import", str(path), "--out", str(build)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitfold import: error: node 'a1' (Quant") and err.count("\n") == 1
    assert not build.exists() and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_cli_refusal_keeps_a_previous_build(tmp_path, capsys):
    build = tmp_path / "build"
    assert main(["import", str(graphs.mlp(tmp_path / "ok.onnx")), "--out", str(build)]) == 0
    before = (build / "graph.json").read_bytes()
    assert main(["import", str(graphs.mlp(tmp_path / "bad.onnx", hidden="quant4")),
                 "--out", str(build)]) == 2
    assert (build / "graph.json").read_bytes() == before


def test_not_an_onnx_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00\x01 not protobuf at all")
    with pytest.raises(InteropError, match=r"^.*junk\.onnx: not an ONNX model"):
        load_model(bad)
    with pytest.raises(InteropError, match=r"no such file"):
        load_model(tmp_path / "missing.onnx")


def test_input_scale_parsing():
    assert InputScale.parse("1/255").apply(np.array([255, 0])).tolist() == [1.0, 0.0]
    assert InputScale.parse("1").apply(np.array([7])).tolist() == [7.0]
    with pytest.raises(InteropError, match=r"^--input-scale 'a/b': expected a number"):
        InputScale.parse("a/b")


@pytest.fixture(scope="module")
def tfc_build(tmp_path_factory, mnist_dir):
    if not TFC.is_file():
        pytest.skip(f"{TFC} not present")
    build = tmp_path_factory.mktemp("tfc") / "build"
    assert main(["import", str(TFC), "--out", str(build), "--dataset", "mnist",
                 "--data-dir", str(mnist_dir)]) == 0
    return build


def test_tfc_1w1a_golden_equals_qonnx_on_all_10000_mnist_frames(tfc_build):
    from bitfold.artifacts import read_json

    g = read_json(tfc_build / "golden.json")
    assert g["frames"] == 10000 and g["onnx_disagreement_count"] == 0
    assert g["accuracy"] == g["onnx_accuracy"] > 0.92
    prov = read_json(tfc_build / "compile.json")
    assert prov["input_encoding"]["summary"] == "pixel >= 128"
    graph = load_graph(tfc_build)
    assert [n.kind for n in graph.nodes].count("BinaryDense") == 4
    assert graph.types["input"].bipolar


def test_golden_verb_on_an_imported_build(tfc_build, mnist_dir, capsys):
    assert main(["golden", str(tfc_build), "--frames", "500"]) == 0
    out = capsys.readouterr().out
    assert "agreement 1.0000 (0 of 500 differ) on 500 mnist test frames" in out


def test_imported_test_set_is_encoded_for_the_ir(tfc_build, mnist_dir):
    from bitfold.interop.check import test_pixels
    from bitfold.sim.runner import dataset_frames

    frames, labels, name = dataset_frames(tfc_build, 5)
    pixels, y = test_pixels("mnist", str(mnist_dir))
    assert name == "mnist" and frames.shape == (5, 28, 28, 1)
    assert np.array_equal(frames[..., 0], (pixels[:5, 0] >= 128).astype(frames.dtype))
    assert np.array_equal(labels, y[:5])
    assert np.array_equal(encode_pixels({"lut": [0, 1, 1]}, np.array([2, 0])), [1, 0])


def test_run_import_folds_generates_simulates_and_benches(tmp_path, capsys):
    """bitfold run --import: the pipeline on an imported network with a test-only npz set."""
    from bitfold.artifacts import read_json
    from bitfold.sim.runner import available

    if not available("icarus"):
        pytest.skip("Icarus Verilog not installed")

    path = graphs.mlp(tmp_path / "tiny.onnx", seed=7)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "test.npz", x=_pixels(40, (4, 4), seed=2), y=np.arange(40) % 4)
    out = tmp_path / "run"
    assert main(["run", "--import", str(path), "--dataset", "npz", "--data-dir", str(data),
                 "--no-bitstream", "--frames", "20", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "qonnx vs golden  agreement 1.0000 (0 frames differ)" in text
    assert "bit-exact        yes: RTL == golden on 20 of 20 frames" in text
    sim = read_json(out / "build" / "sim" / "report.json")
    assert sim["frames"] == 20 and sim["mismatches"] == 0
    assert read_json(out / "build" / "golden.json")["frames"] == 40
    assert read_json(out / "build" / "bench.json")["hardware"]["fps"] > 0
    assert "Imported from tiny.onnx with bitfold import" in (out / "report.md").read_text()
