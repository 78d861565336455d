"""What flows along the ONNX graph while it is imported: raw input, binary activations,
accumulators, and the final nodes; and the op groups the importer dispatches on.

Both :mod:`.importer` (the walk over the graph) and :mod:`.layers` (the handlers of
activations and accumulators) use them, so they live below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .chain import Chain

__all__ = ["FINAL_OPS", "LAYOUT_OPS", "MVU_OPS"]

LAYOUT_OPS = ("Reshape", "Flatten", "Transpose")
MVU_OPS = ("MatMul", "Gemm", "Conv", "XnorPopcountMatMul")
FINAL_OPS = ("Softmax", "LogSoftmax", "ArgMax", "TopK")


@dataclass
class _Raw:
    perm: np.ndarray
    chain: Chain


@dataclass
class _Act:
    ir: str
    perm: np.ndarray
    bipolar: bool
    alpha: Fraction
    beta: Fraction
    pad: tuple[int, int] | None = None  # (pad, IR pad value) from a Pad node


@dataclass
class _Acc:
    ir: str
    chain: Chain
    shape: tuple[int, ...]  # ONNX shape without batch: (C,) or (C, H, W)
    pool: Any = None  # a MaxPool waiting for the sign
    tensor: str = ""  # the ONNX tensor of the latest step


@dataclass
class _Final:
    acc: _Acc
    node: Any  # the first of the final nodes (a Softmax, say)
