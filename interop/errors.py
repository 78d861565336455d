"""Errors of ``bitfold import`` / ``bitfold export``: one line, naming the node and what is supported."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["InteropError", "UnsupportedNodeError", "describe_node"]

SUPPORTED = ("supported: BipolarQuant, Quant (1-bit activations; multi-bit only on the input), "
             "MultiThreshold (one threshold), Sign, MatMul/Gemm/Conv with binary weights, "
             "XnorPopcountMatMul, BatchNormalization, Add/Sub/Mul/Div by constants, "
             "Reshape/Flatten/Transpose, Pad (constant), MaxPool, and a final "
             "Softmax/ArgMax/TopK")


class InteropError(ValueError):
    """A model or file bitfold cannot import or export; the message says what and what to do."""


class UnsupportedNodeError(InteropError):
    """A node of the ONNX graph the IR cannot express."""

    def __init__(self, node: Any, problem: str, supported: str = SUPPORTED,
                 model: Any = None) -> None:
        super().__init__(f"{describe_node(node, model)}: {problem}; {supported}")


def _attr_value(attr: Any) -> Any:
    from onnx import helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    if hasattr(value, "dims"):  # a tensor attribute
        return f"tensor{list(value.dims)}"
    return value


# The constant inputs of QONNX's quantizers, by position, named as the QONNX spec names them.
QUANT_INPUTS = {"Quant": ("scale", "zeropt", "bitwidth"), "BipolarQuant": ("scale",),
                "Trunc": ("scale", "zeropt", "input_bit_width", "output_bit_width")}


def describe_node(node: Any, model: Any = None) -> str:
    """``node 'Quant_3' (Quant, bitwidth=4, signed=1)``: name, op and attributes of an ONNX node.

    With ``model`` (a qonnx ``ModelWrapper``), the scalar constant inputs of the
    quantizers (a ``Quant``'s bit width, say) are named too.
    """
    parts = []
    if model is not None:
        for label, name in zip(QUANT_INPUTS.get(node.op_type, ()), list(node.input)[1:],
                               strict=False):
            value = model.get_initializer(name)
            if value is not None and np.size(value) == 1:
                parts.append(f"{label}={np.asarray(value).item():g}")
    parts += [f"{a.name}={_attr_value(a)}" for a in node.attribute]
    inside = ", ".join([node.op_type, *parts])
    return f"node {node.name or node.output[0]!r} ({inside})"
