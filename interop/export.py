"""bitfold IR -> QONNX (``bitfold export``): a model whose qonnx execution equals the golden model.

The exported graph reads the IR input's values as float32 in ONNX's ``(1, C, H, W)``
order (a bipolar input as -1/+1, a multi-bit one as the integers 0 .. 2**bits - 1)
and states its quantization the QONNX way:

* the input passes a ``BipolarQuant`` or an unsigned ``Quant`` of scale 1;
* each binary layer is a ``MatMul`` / ``Conv`` with ``BipolarQuant`` weights of
  scale 1 (``Pad`` with the IR's pad value first), so its float32 output is the
  exact integer ``2 popcount - F`` (bipolar input) or the signed sum (multi-bit);
* each ``Threshold`` ``acc >= T`` is an ``Add`` of ``-(2 T - F)`` (``-T``) and a
  ``BipolarQuant``, exact in float32 (the integers stay far below 2**24);
* max pooling is ``MaxPool`` on the -1/+1 map (OR);
* the class scores are the golden model's integers: ``Cast`` to int64, the
  popcount ``(dot + F) / 2``, then ``Mul`` and ``Add`` of the ``ScoreAffine``
  integers; the graph output is those int64 scores (their argmax, ties to the
  lowest index, is the class).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bitfold.compiler.encodings import Binary
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    ScoreAffine,
    Threshold,
)

from .errors import InteropError

__all__ = ["export_graph", "onnx_input", "onnx_shape"]

QONNX = "qonnx.custom_op.general"


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[Any] = []
        self.constants: dict[str, np.ndarray] = {}
        self.tensor: dict[str, str] = {}  # IR tensor -> ONNX tensor
        self.fan_in: dict[str, tuple[int, bool]] = {}  # MVU -> (F, bipolar input)

    def const(self, name: str, value: np.ndarray) -> str:
        self.constants[name] = value
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        domain = QONNX if op in ("BipolarQuant", "Quant") else ""
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain,
                                           **attrs))
        return output

    def bipolar_weight(self, name: str, w: np.ndarray) -> str:
        raw = self.const(f"{name}_w", np.where(w == 1, 1.0, -1.0).astype(np.float32))
        one = self.const(f"{name}_wscale", np.array(1.0, np.float32))
        return self.node("BipolarQuant", [raw, one], f"{name}_wq")

    def vector(self, name: str, ir_input: str) -> str:
        """The ONNX tensor of an IR tensor read as a dense layer's vector (IR order)."""
        src = self.tensor[ir_input]
        if len(self.graph.types[ir_input].shape) != 3:
            return src
        nhwc = self.node("Transpose", [src], f"{name}_nhwc", perm=[0, 2, 3, 1])
        shape = self.const(f"{name}_shape", np.array([1, -1], np.int64))
        return self.node("Reshape", [nhwc, shape], f"{name}_flat")

    def channel_shape(self, name: str) -> tuple[int, ...]:
        t = self.graph.types[name]
        return (1, t.shape[-1], 1, 1) if len(t.shape) == 3 else (1, t.shape[-1])

    # ----------------------------------------------------------------- one method per kind

    def input(self, n: Input) -> None:
        t = self.graph.types[n.name]
        if t.bipolar:
            one = self.const("input_scale", np.array(1.0, np.float32))
            out = self.node("BipolarQuant", ["input", one], "input_q")
        else:
            scalars = [self.const(f"input_{k}", np.array(v, np.float32))
                       for k, v in (("scale", 1.0), ("zeropt", 0.0), ("bitwidth", t.bits))]
            out = self.node("Quant", ["input", *scalars], "input_q", signed=0, narrow=0,
                            rounding_mode="ROUND")
        self.tensor[n.name] = out

    def layer(self, n: Layer) -> None:
        (self.conv if n.conv else self.dense)(n)

    def dense(self, n: Layer) -> None:
        w = self.bipolar_weight(n.name, n.weight.T)
        self.tensor[n.name] = self.node("MatMul", [self.vector(n.name, n.input), w], n.name)
        self.fan_in[n.name] = (n.weight.shape[1], self.graph.types[n.input].bipolar)

    def conv(self, n: Layer) -> None:
        src = self.tensor[n.input]
        t_in = self.graph.types[n.input]
        weight = n.weight.reshape(len(n.weight), n.kernel, n.kernel, t_in.shape[-1])
        if n.pad:
            value = float(n.pad_value)
            pads = self.const(f"{n.name}_pads", np.array([0, 0, n.pad, n.pad] * 2, np.int64))
            fill = self.const(f"{n.name}_padval", np.array(value, np.float32))
            src = self.node("Pad", [src, pads, fill], f"{n.name}_pad", mode="constant")
        w = self.bipolar_weight(n.name, weight.transpose(0, 3, 1, 2))
        self.tensor[n.name] = self.node("Conv", [src, w], n.name, kernel_shape=[n.kernel] * 2,
                                        strides=[n.stride] * 2)
        self.fan_in[n.name] = (n.kernel * n.kernel * t_in.shape[-1], t_in.bipolar)

    def threshold(self, n: Threshold) -> None:
        fan_in, bipolar = self._mvu(n)
        t = n.thresholds.astype(np.float64)
        bias = -(2 * t - fan_in) if bipolar else -t  # acc >= T  <=>  onnx value + bias >= 0
        b = self.const(f"{n.name}_bias", bias.astype(np.float32).reshape(self.channel_shape(n.name)))
        pre = self.node("Add", [self.tensor[n.input], b], f"{n.name}_pre")
        one = self.const(f"{n.name}_scale", np.array(1.0, np.float32))
        self.tensor[n.name] = self.node("BipolarQuant", [pre, one], n.name)

    def pool(self, n: MaxPool2d) -> None:
        self.tensor[n.name] = self.node("MaxPool", [self.tensor[n.input]], n.name,
                                        kernel_shape=[n.kernel] * 2, strides=[n.stride] * 2)

    def scores(self, n: ScoreAffine) -> None:
        from onnx import TensorProto

        fan_in, bipolar = self._mvu(n)
        acc = self.node("Cast", [self.tensor[n.input]], f"{n.name}_int", to=TensorProto.INT64)
        if bipolar:  # popcount = (dot + F) / 2, exactly (dot and F have the same parity)
            f = self.const(f"{n.name}_fanin", np.array([fan_in], np.int64))
            two = self.const(f"{n.name}_two", np.array([2], np.int64))
            acc = self.node("Div", [self.node("Add", [acc, f], f"{n.name}_shift"), two],
                            f"{n.name}_popcount")
        scale = self.const(f"{n.name}_scale", n.scale.reshape(1, -1).astype(np.int64))
        bias = self.const(f"{n.name}_bias", n.bias.reshape(1, -1).astype(np.int64))
        self.tensor[n.name] = self.node("Add", [self.node("Mul", [acc, scale], f"{n.name}_mul"),
                                                bias], "scores")

    def _mvu(self, n: Any) -> tuple[int, bool]:
        if n.input not in self.fan_in:
            raise InteropError(f"node {n.name!r} ({n.kind}) reads {n.input!r}, not a binary "
                               "layer's accumulator; export writes graphs bitfold compile makes")
        return self.fan_in[n.input]


def export_graph(graph: Graph) -> Any:
    """The QONNX ``ModelWrapper`` of a folded IR graph (shapes and datatypes inferred)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    w = _Writer(graph)
    kinds = {Input: w.input, Layer: w.layer, Threshold: w.threshold, MaxPool2d: w.pool,
             ScoreAffine: w.scores, ArgMax: lambda n: None}
    for n in graph.nodes:
        handler = kinds.get(type(n))
        if handler is None or (isinstance(n, Layer) and not isinstance(n.encoding, Binary)):
            raise InteropError(f"node {n.name!r} is a {n.kind}; bitfold export writes Input, "
                               "BinaryDense, BinaryConv2d, Threshold, MaxPool2d, ScoreAffine and "
                               "ArgMax (sparse, composite and domain layers are not in QONNX yet)")
        handler(n)
    if "scores" not in w.tensor.values():
        raise InteropError(f"graph {graph.name!r} has no ScoreAffine class scores to export")
    inp = graph.types[graph.inputs[0]]
    shape = [1, *onnx_shape(inp.shape)]
    outs = graph.types[next(n.name for n in graph.nodes if isinstance(n, ScoreAffine))].shape
    g = helper.make_graph(w.nodes, graph.name, [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "scores", TensorProto.INT64, [1, *outs])])
    model = ModelWrapper(qonnx_make_model(g, producer_name="bitfold",
                                          opset_imports=[helper.make_opsetid("", 13),
                                                         helper.make_opsetid(QONNX, 1)]))
    for k, v in w.constants.items():
        model.set_initializer(k, v)
    model = model.transform(InferShapes()).transform(InferDataTypes())
    from qonnx.core.datatype import DataType

    model.set_tensor_datatype("input", DataType["BIPOLAR"] if inp.bipolar
                              else DataType[f"UINT{inp.bits}"])
    return model


def onnx_shape(ir_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (ir_shape[2], ir_shape[0], ir_shape[1]) if len(ir_shape) == 3 else tuple(ir_shape)


def onnx_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """IR frames (bits for a bipolar input) as the exported model's float32 input."""
    t = graph.types[graph.inputs[0]]
    x = np.where(x == 1, 1.0, -1.0) if t.bipolar else np.asarray(x, np.float64)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return x.astype(np.float32)
