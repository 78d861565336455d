"""Small QONNX graphs written with onnx.helper, for the importer's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

QONNX = "qonnx.custom_op.general"


def node(op: str, inputs: list[str], output: str, **attrs) -> helper.NodeProto:
    domain = QONNX if op in ("BipolarQuant", "Quant", "MultiThreshold", "Trunc",
                             "XnorPopcountMatMul") else ""
    return helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs)


def save(path: Path, nodes: list, constants: dict[str, np.ndarray], in_shape: tuple[int, ...],
         out: str, out_shape: tuple[int, ...], datatypes: dict[str, str] | None = None) -> Path:
    """Write a model reading ``x`` of ``in_shape`` whose output is tensor ``out``.

    ``datatypes`` annotates tensors with qonnx DataTypes (``BINARY`` weights, say).
    """
    from qonnx.util.basic import qonnx_make_model

    inits = [helper.make_tensor(k, TensorProto.FLOAT if v.dtype.kind == "f" else TensorProto.INT64,
                                v.shape, v.reshape(-1).tolist()) for k, v in constants.items()]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(in_shape))], [helper.make_tensor_value_info(
            out, TensorProto.FLOAT, list(out_shape))], inits)
    model = qonnx_make_model(graph, producer_name="bitfold-tests",
                             opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(QONNX, 1)])
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    wrapper = ModelWrapper(model)
    for name, dt in (datatypes or {}).items():
        wrapper.set_tensor_datatype(name, DataType[dt])
    wrapper.save(str(path))
    return path


def signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0], np.float32), size=shape)


def mlp(path: Path, seed: int = 0, hidden: str = "bipolar", extra: str = "") -> Path:
    """x (1, 16) in [0, 1] -> sign(x - 0.5) -> dense 16x8 -> BN -> act -> dense 8x4 -> scores.

    ``hidden``: ``bipolar`` (BipolarQuant), ``multithreshold`` (FINN style), ``quant4``
    (a 4-bit activation, refused). ``extra``: ``softmax-middle`` (a Softmax before the
    hidden quantizer), ``residual`` (the second layer's input added back), ``softmax-end``,
    ``gemm`` (the last layer a Gemm with a bias), ``ternary`` (a zero weight, refused).
    """
    rng = np.random.default_rng(seed)
    c = {"half": np.array([0.5], np.float32), "one": np.array(1.0, np.float32),
         "w1": signs(rng, (16, 8)), "w2": signs(rng, (8, 4)),
         "g": rng.uniform(-2, 2, 8).astype(np.float32), "b": rng.normal(0, 1, 8).astype(np.float32),
         "mu": rng.normal(0, 2, 8).astype(np.float32), "var": rng.uniform(0.5, 4, 8).astype(np.float32)}
    if extra == "ternary":
        c["w1"][0, 0] = 0.0
    nodes = [node("Sub", ["x", "half"], "xs"), node("BipolarQuant", ["xs", "one"], "x1"),
             node("MatMul", ["x1", "w1"], "m1"),
             node("BatchNormalization", ["m1", "g", "b", "mu", "var"], "bn1", epsilon=1e-5)]
    pre = "bn1"
    if extra == "softmax-middle":
        nodes.append(node("Softmax", ["bn1"], "sm", axis=1))
        pre = "sm"
    if hidden == "bipolar":
        nodes.append(node("BipolarQuant", [pre, "one"], "a1"))
    elif hidden == "multithreshold":
        c["thr"] = rng.normal(0, 1, (8, 1)).astype(np.float32)
        nodes.append(node("MultiThreshold", [pre, "thr"], "a1", out_dtype="BIPOLAR",
                          out_scale=2.0, out_bias=-1.0))
    else:  # a 4-bit activation
        c.update(s=np.array(0.25, np.float32), z=np.array(0.0, np.float32),
                 bw=np.array(4.0, np.float32))
        nodes.append(node("Quant", [pre, "s", "z", "bw"], "a1", signed=1, narrow=0,
                          rounding_mode="ROUND"))
    if extra == "residual":
        c["w_sq"] = signs(rng, (8, 8))
        nodes += [node("MatMul", ["a1", "w_sq"], "m_sq"), node("Add", ["m_sq", "bn1"], "r"),
                  node("BipolarQuant", ["r", "one"], "a1r")]
        last_in = "a1r"
    else:
        last_in = "a1"
    if extra == "gemm":
        c["w2t"], c["bias"] = c["w2"].T.copy(), rng.normal(0, 1, 4).astype(np.float32)
        nodes.append(node("Gemm", [last_in, "w2t", "bias"], "y", transB=1))
    else:
        nodes.append(node("MatMul", [last_in, "w2"], "y"))
    out = "y"
    if extra == "softmax-end":
        nodes.append(node("Softmax", ["y"], "p", axis=1))
        out = "p"
    return save(path, nodes, c, (1, 16), out, (1, 4))


def finn_mlp(path: Path, seed: int = 0) -> Path:
    """A FINN-streamlined style MLP: binary {0, 1} MultiThreshold outputs, XnorPopcountMatMul."""
    rng = np.random.default_rng(seed)
    c = {"t_in": np.array([[0.5]], np.float32),
         "w1": rng.integers(0, 2, (16, 8)).astype(np.float32),
         "t1": rng.integers(4, 13, (8, 1)).astype(np.float32) + 0.5 * rng.integers(0, 2, (8, 1)),
         "w2": rng.integers(0, 2, (8, 4)).astype(np.float32),
         "s": rng.uniform(0.5, 2, (1, 4)).astype(np.float32),
         "b": rng.normal(0, 1, (1, 4)).astype(np.float32)}
    c["t1"] = c["t1"].astype(np.float32)
    nodes = [node("MultiThreshold", ["x", "t_in"], "x1", out_dtype="BINARY"),
             node("XnorPopcountMatMul", ["x1", "w1"], "p1"),
             node("MultiThreshold", ["p1", "t1"], "a1", out_dtype="BINARY"),
             node("XnorPopcountMatMul", ["a1", "w2"], "p2"),
             node("Mul", ["p2", "s"], "sc"), node("Add", ["sc", "b"], "y")]
    return save(path, nodes, c, (1, 16), "y", (1, 4), {"w1": "BINARY", "w2": "BINARY"})
