"""The golden model's reference interpreter: the IR executed in plain integers.

One function per node kind, written to be read against docs/ir.md ("Nodes") rather
than to be fast (:mod:`bitfold.compiler.packed` is the fast executor and must
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
from .ir import (
    AffineArgMax,
    AffineSign,
    ArgMax,
    BinaryConv2d,
    BinaryDense,
    CompositeConv2d,
    CompositeDense,
    ConvNode,
    DenseNode,
    DomainConv2d,
    DomainDense,
    Graph,
    MaxPool2d,
    MVUNode,
    Node,
    ScoreAffine,
    SparseConv2d,
    SparseDense,
    TensorType,
    Threshold,
    mvu_matrix,
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


def pad_bit(node: ConvNode, t_in: TensorType) -> int:
    """The stored value a convolution pads with: a bit for bipolar input, else the integer."""
    if t_in.bipolar:
        return 1 if node.pad_value == 1 else 0
    return node.pad_value


# --------------------------------------------------------------------------- one function per kind


def _accumulate(flat_w: np.ndarray, x: np.ndarray, bipolar: bool) -> np.ndarray:
    """Accumulators of rows ``x (N, F)`` against weight bits ``flat_w (C_out, F)``."""
    if bipolar:
        # popcount(xnor(x, w)): the number of positions where input bit equals weight bit.
        return np.stack([(x == w_row).sum(axis=1) for w_row in flat_w], axis=1).astype(np.int64)
    signs = np.where(flat_w == 1, 1, -1).astype(np.int64)  # weight bit 1 means +1
    return x @ signs.T  # sum_i (x_i if w_i else -x_i)


def _accumulate_sparse(mask: np.ndarray, polarity: np.ndarray, x: np.ndarray,
                       bipolar: bool) -> np.ndarray:
    """Masked accumulators: over the positions where ``mask`` is 1 only."""
    out = np.empty((len(x), len(mask)), dtype=np.int64)
    for c, (m_row, pol) in enumerate(zip(mask, polarity, strict=True)):
        on = m_row == 1
        if bipolar:  # inputs equal to the row's polarity, among the masked ones
            out[:, c] = (x[:, on] == pol).sum(axis=1)
        else:
            out[:, c] = x[:, on].sum(axis=1) * (1 if pol == 1 else -1)
    return out


def layer_rows(node: MVUNode, rows: np.ndarray, t_in: TensorType) -> np.ndarray:
    """The accumulators of any binary layer kind for input rows ``(N, fan_in)``."""
    planes = mvu_matrix(node)
    if isinstance(node, SparseDense | SparseConv2d):
        return _accumulate_sparse(planes[0], node.polarity, rows, t_in.bipolar)
    if isinstance(node, CompositeDense | CompositeConv2d):
        return np.sum([int(m) * _accumulate(w, rows, t_in.bipolar)
                       for m, w in zip(node.plane_scale, planes, strict=True)], axis=0)
    if isinstance(node, DomainDense | DomainConv2d):
        # scale * A + offset * X; X the input's sum (bipolar: the number of +1 bits)
        x_sum = rows.sum(axis=1, dtype=np.int64)[:, None]
        return node.scale * _accumulate(planes[0], rows, t_in.bipolar) + node.offset * x_sum
    return _accumulate(planes[0], rows, t_in.bipolar)


def binary_dense(node: DenseNode, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Popcount (bipolar input) or signed sum (multi-bit input) per output neuron."""
    return layer_rows(node, x.reshape(len(x), -1), t_in)


def binary_conv2d(node: ConvNode, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Pad with ``pad_value``, then each ``(k, k, C_in)`` window is a dense layer's input."""
    n, h, w, c = x.shape
    k, s, p = node.kernel, node.stride, node.pad
    padded = np.full((n, h + 2 * p, w + 2 * p, c), pad_bit(node, t_in), dtype=np.int64)
    padded[:, p:p + h, p:p + w, :] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, oh, ow, mvu_matrix(node).shape[1]), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            window = padded[:, i * s:i * s + k, j * s:j * s + k, :].reshape(n, -1)
            out[:, i, j, :] = layer_rows(node, window, t_in)
    return out


def threshold(node: Threshold, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Bit 1 (+1) where ``acc >= T[c]``, channels on the last axis."""
    return (acc >= node.thresholds).astype(np.uint8)


def max_pool2d(node: MaxPool2d, x: np.ndarray, t_in: TensorType) -> np.ndarray:
    """OR of the bits in each window (max of bipolar values)."""
    n, h, w, c = x.shape
    k, s = node.kernel, node.stride
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, oh, ow, c), dtype=np.uint8)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = x[:, i * s:i * s + k, j * s:j * s + k, :].max(axis=(1, 2))
    return out


def score_affine(node: ScoreAffine, acc: np.ndarray, t_in: TensorType) -> np.ndarray:
    """``scale[c] * acc[c] + bias[c]``; ``verify`` bounds it to int64."""
    return acc * node.scale + node.bias


def arg_max(node: ArgMax, scores: np.ndarray, t_in: TensorType) -> np.ndarray:
    """Index of the largest score; ``np.argmax`` returns the first (lowest) of tied maxima."""
    return np.argmax(scores, axis=1).astype(np.int64)


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
    BinaryDense: binary_dense,
    BinaryConv2d: binary_conv2d,
    SparseDense: binary_dense,
    SparseConv2d: binary_conv2d,
    CompositeDense: binary_dense,
    CompositeConv2d: binary_conv2d,
    DomainDense: binary_dense,
    DomainConv2d: binary_conv2d,
    Threshold: threshold,
    MaxPool2d: max_pool2d,
    ScoreAffine: score_affine,
    ArgMax: arg_max,
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
        src = node.inputs[0]
        values[node.name] = KERNELS[type(node)](node, values[src], graph.types[src])
    return values
