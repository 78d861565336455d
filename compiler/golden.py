"""The golden model's reference interpreter: the IR executed in plain integers.

One function per node kind (a binary layer's accumulate is its weight encoding's
``reference``, in the encoding's module), written to be read against docs/ir.md ("Nodes")
rather than to be fast (:mod:`bitfold.compiler.packed` is the fast executor and must
agree with this one exactly). Values are numpy arrays with the batch first:
integers as int64, bipolar tensors as their bits (uint8, 1 means +1).

The pre-fold kinds :class:`~bitfold.compiler.ir.AffineSign` and
:class:`~bitfold.compiler.ir.AffineArgMax` are evaluated in exact rational
arithmetic (``fractions.Fraction`` of the float64 values), so folding them into
integers can be checked for exactness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction

import numpy as np

from .errors import CompilerError
from .geometry import Window
from .ir import (
    Add,
    AffineArgMax,
    AffineSign,
    ArgMax,
    AvgPool2d,
    Graph,
    Layer,
    MaxPool2d,
    Node,
    Requantize,
    ScoreAffine,
    TensorType,
    Threshold,
    Upsample2d,
)

__all__ = ["check_inputs", "layer_rows", "pad_bit", "run_reference"]


def check_inputs(graph: Graph, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate input frames: integer arrays ``(N, *shape)`` within each input's type.

    A graph with one input takes the array itself; bipolar inputs are given as
    bits (0/1). Returns ``{input name: int64 array}``.
    """
    if not isinstance(x, Mapping):
        if len(graph.inputs) != 1:
            raise CompilerError(f"graph {graph.name!r} has inputs {list(graph.inputs)}; "
                                "pass a dict of arrays")
        x = {graph.inputs[0]: x}
    if set(x) != set(graph.inputs):
        raise CompilerError(f"inputs {sorted(x)} given, graph {graph.name!r} expects "
                            f"{list(graph.inputs)}")
    out = {}
    n = None
    for name in graph.inputs:
        t = graph.types[name]
        arr = np.asarray(x[name])
        if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
            raise CompilerError(f"input {name!r}: expected integers, not {arr.dtype}")
        if arr.shape[1:] != t.shape:
            raise CompilerError(f"input {name!r}: frames of shape {arr.shape[1:]}, expected "
                                f"{t.shape} (feature maps are (H, W, C); batch first)")
        lo, hi = (0, 1) if t.bipolar else (t.lo, t.hi)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise CompilerError(f"input {name!r}: values {arr.min()}..{arr.max()} outside "
                                f"{lo}..{hi} ({t.describe()}; bipolar inputs are bits)")
        if n is not None and len(arr) != n:
            raise CompilerError("inputs have different numbers of frames")
        n = len(arr)
        out[name] = arr.astype(np.int64)
    return out


def pad_bit(node: Layer, t_in: TensorType) -> int:
    """The stored value a convolution pads with: a bit for bipolar input, else the integer."""
    if not isinstance(node.geometry, Window):
        raise CompilerError(f"{node.name!r} is a dense layer; it does not pad")
    return node.geometry.pad_bit(t_in)


# --------------------------------------------------------------------------- one function per kind


def layer_rows(node: Layer, rows: np.ndarray, t_in: TensorType) -> np.ndarray:
    """The accumulators of a binary layer for input rows ``(N, fan_in)``: its encoding's."""
    return node.encoding.reference(rows, t_in)


def layer(node: Layer, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """A dense layer: the input flattened is one row. A convolution: pad with
    ``pad_value``, then each ``(k, k, C_in)`` window is a row."""
    geo = node.geometry
    if not isinstance(geo, Window):
        return layer_rows(node, x.reshape(len(x), -1), t_in)
    n = len(x)
    k, s = geo.kernel, geo.stride
    padded = geo.padded(x.astype(np.int64), t_in)
    oh, ow = geo.out_hw(x.shape[1], x.shape[2])
    out = np.empty((n, oh, ow, node.encoding.shape[0]), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            window = padded[:, i * s:i * s + k, j * s:j * s + k, :].reshape(n, -1)
            out[:, i, j, :] = layer_rows(node, window, t_in)
    return out


def threshold(node: Threshold, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Bit 1 (+1) where ``acc >= T[c]``, channels on the last axis."""
    return (acc >= node.thresholds).astype(np.uint8)


def _pool(x: np.ndarray, k: int, s: int, reduce: Callable[[np.ndarray], np.ndarray],
          dtype: type) -> np.ndarray:
    """``reduce`` of each ``k x k`` window (stride ``s``, no padding) of ``(N, H, W, C)`` maps;
    ``reduce`` takes ``(N, k, k, C)`` and returns ``(N, C)``."""
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, oh, ow, c), dtype=dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = reduce(x[:, i * s:i * s + k, j * s:j * s + k, :])
    return out


def max_pool2d(node: MaxPool2d, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """OR of the bits in each window (max of bipolar values)."""
    return _pool(x, node.kernel, node.stride, lambda win: win.max(axis=(1, 2)), np.uint8)


def score_affine(node: ScoreAffine, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """``scale[c] * acc[c] + bias[c]``; ``verify`` bounds it to int64."""
    return acc * node.scale + node.bias


def arg_max(node: ArgMax, scores: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Index of the largest score; ``np.argmax`` returns the first (lowest) of tied maxima."""
    return np.argmax(scores, axis=1).astype(np.int64)


def _saturate(v: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def requantize(node: Requantize, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """``floor((mult[c] * acc + bias[c]) / 2**shift)``, saturated to ``bits`` signed bits."""
    return _saturate((acc * node.mult + node.bias) >> node.shift, node.bits)


def add(node: Add, x: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """``x + skip`` saturated to ``bits``; channels ``skip`` lacks add zero."""
    total = x.copy()
    total[..., :skip.shape[-1]] += skip
    return _saturate(total, node.bits)


def avg_pool2d(node: AvgPool2d, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """``floor(sum / kernel**2)`` of each window (floor division: toward minus infinity)."""
    k = node.kernel
    return _pool(x, k, node.stride, lambda win: win.sum(axis=(1, 2)) // (k * k), np.int64)


def upsample2d(node: Upsample2d, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Each pixel repeated ``factor`` times down and across."""
    return x.repeat(node.factor, axis=1).repeat(node.factor, axis=2)


def affine_sign(node: AffineSign, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Bit 1 where ``slope[c] * acc + offset[c] >= 0``, decided exactly in rationals."""
    out = np.empty(acc.shape, dtype=np.uint8)
    for c, (k, b) in enumerate(zip(node.slope, node.offset, strict=True)):
        values = acc[..., c]
        uniq, where = np.unique(values, return_inverse=True)
        decided = np.array([Fraction(k) * int(a) + Fraction(b) >= 0 for a in uniq], dtype=np.uint8)
        out[..., c] = decided[where].reshape(values.shape)
    return out


def affine_arg_max(node: AffineArgMax, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Argmax of the exact real scores ``slope[c] * acc[c] + offset[c]``; ties -> lowest index."""
    k = [Fraction(v) for v in node.slope]
    b = [Fraction(v) for v in node.offset]
    out = np.empty(len(acc), dtype=np.int64)
    for i, row in enumerate(acc):
        scores = [k[c] * int(a) + b[c] for c, a in enumerate(row)]
        out[i] = scores.index(max(scores))
    return out


# one kernel per node kind: (node, input values, input type) -> output values
KERNELS: dict[type[Node], Callable[..., np.ndarray]] = {
    Layer: layer,
    Threshold: threshold,
    MaxPool2d: max_pool2d,
    ScoreAffine: score_affine,
    ArgMax: arg_max,
    Requantize: requantize,
    AvgPool2d: avg_pool2d,
    Upsample2d: upsample2d,
    AffineSign: affine_sign,
    AffineArgMax: affine_arg_max,
}


def run_reference(graph: Graph, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute ``graph`` on frames ``x``; return every tensor's values, batch first.

    Parameters
    ----------
    x : ndarray or mapping
        ``(N, *shape)`` integers for the graph's input (a dict for several).
    """
    values: dict[str, np.ndarray] = dict(check_inputs(graph, x))
    for node in graph.nodes:
        if node.name in values:  # an Input
            continue
        if isinstance(node, Add):  # the one kind with two inputs
            values[node.name] = add(node, values[node.input], values[node.skip])
            continue
        src = node.inputs[0]
        values[node.name] = KERNELS[type(node)](node, values[src], graph.types[src])
    return values
