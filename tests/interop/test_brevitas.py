"""Brevitas -> QONNX -> bitfold: tiny 1W1A networks trained for a few steps, exported with
Brevitas's QONNX exporter, imported; golden == Brevitas's own eval output on every test frame."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
qnn = pytest.importorskip("brevitas.nn")

from brevitas.core.scaling import ScalingImplType  # noqa: E402
from brevitas.export import export_qonnx  # noqa: E402
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst  # noqa: E402
from brevitas.quant.scaled_int import Uint8ActPerTensorFloat  # noqa: E402
from torch import nn  # noqa: E402

from bitfold.cli import main  # noqa: E402
from bitfold.compiler.packed import PackedExecutor  # noqa: E402
from bitfold.interop.encoding import InputScale, encode_pixels  # noqa: E402
from bitfold.interop.importer import import_model  # noqa: E402
from bitfold.interop.onnx_model import fold_weight_quantizers, load_model  # noqa: E402
from bitfold.train.data import load_dataset  # noqa: E402


class BinaryWeight(SignedBinaryWeightPerTensorConst):
    scaling_const = 1.0  # weights +-1, as BNN-PYNQ's networks


class BinaryAct(SignedBinaryActPerTensorConst):
    scaling_const = 1.0


class Pixel5(Uint8ActPerTensorFloat):
    """Unsigned 5-bit input with scale 1: the digits' pixels 0..16 as they are."""

    bit_width = 5
    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 31.0
    max_val = 31.0


class MLP(nn.Module):
    """Binarized pixels (x / 16 >= 0.5) -> 64 -> 32 -> 10, TFC's structure in small."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=BinaryAct)
        self.fc1 = qnn.QuantLinear(64, 32, bias=False, weight_quant=BinaryWeight)
        self.bn1 = nn.BatchNorm1d(32)
        self.act1 = qnn.QuantIdentity(act_quant=BinaryAct)
        self.fc2 = qnn.QuantLinear(32, 10, bias=False, weight_quant=BinaryWeight)
        self.bn2 = nn.BatchNorm1d(10)

    def forward(self, x):
        x = self.inp(2.0 * x.reshape(x.shape[0], -1) - 1.0)
        return self.bn2(self.fc2(self.act1(self.bn1(self.fc1(x)))))


class ConvNet(nn.Module):
    """5-bit pixels -> conv 3x3 (8) -> pool -> conv 3x3 (16) -> dense 10 (with a bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Pixel5)
        self.c1 = qnn.QuantConv2d(1, 8, 3, bias=False, weight_quant=BinaryWeight)
        self.bn1 = nn.BatchNorm2d(8)
        self.a1 = qnn.QuantIdentity(act_quant=BinaryAct)
        self.pool = nn.MaxPool2d(2)
        self.c2 = qnn.QuantConv2d(8, 16, 3, bias=False, weight_quant=BinaryWeight)
        self.bn2 = nn.BatchNorm2d(16)
        self.a2 = qnn.QuantIdentity(act_quant=BinaryAct)
        self.fc = qnn.QuantLinear(16, 10, bias=True, weight_quant=BinaryWeight)

    def forward(self, x):
        x = self.pool(self.a1(self.bn1(self.c1(self.inp(x)))))
        return self.fc(torch.flatten(self.a2(self.bn2(self.c2(x))), 1))


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 40) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def _round_trip(tmp_path, model: nn.Module, scale: str):
    data = load_dataset("digits")
    s = InputScale.parse(scale)
    x_train = torch.from_numpy(s.apply(data.x_train.numpy()))
    _train(model, x_train, data.y_train)
    pixels = data.x_test.numpy()
    with torch.no_grad():
        brevitas_classes = model(torch.from_numpy(s.apply(pixels))).argmax(1).numpy()
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, 1, 8, 8), str(path))
    net = import_model(fold_weight_quantizers(load_model(path)), "net", s, input_bits=5)
    x = encode_pixels(net.encoding, pixels).transpose(0, 2, 3, 1)
    golden = PackedExecutor(net.graph).run(x, keep=[net.graph.outputs[0]])[net.graph.outputs[0]]
    return path, net, golden, brevitas_classes, data.y_test.numpy()


def test_brevitas_1w1a_mlp_round_trip_equals_brevitas_on_every_frame(tmp_path):
    path, net, golden, ref, labels = _round_trip(tmp_path, MLP(), "1/16")
    assert net.encoding["summary"] == "pixel >= 8" and net.graph.types["input"].bipolar
    assert len(golden) == 360
    assert np.array_equal(golden, ref)
    assert (golden == labels).mean() > 0.5  # it learned something in 40 steps
    build = tmp_path / "build"
    assert main(["import", str(path), "--out", str(build), "--dataset", "digits",
                 "--input-scale", "1/16", "--input-bits", "5"]) == 0
    from bitfold.artifacts import read_json

    g = read_json(build / "golden.json")
    assert g["frames"] == 360 and g["onnx_disagreement_count"] == 0


def test_brevitas_1w1a_conv_net_round_trip_equals_brevitas_on_every_frame(tmp_path):
    _, net, golden, ref, labels = _round_trip(tmp_path, ConvNet(), "1")
    kinds = [n.kind for n in net.graph.nodes]
    assert kinds.count("BinaryConv2d") == 2 and "MaxPool2d" in kinds
    assert net.graph.types["input"].bits == 5 and not net.graph.types["input"].signed
    assert np.array_equal(golden, ref)
    assert (golden == labels).mean() > 0.5
