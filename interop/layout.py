"""Element order and constants of the ONNX tensors the importer walks.

An ONNX tensor bitfold holds as an IR tensor carries a *perm*: an integer array
of the ONNX tensor's shape (batch left out) whose entries are the IR tensor's
flat indices. A fresh IR feature map ``(H, W, C)`` seen as ONNX ``(C, H, W)``
has :func:`canonical` order; ``Reshape``, ``Flatten`` and ``Transpose`` move the
entries, and a dense layer reading the result permutes its weight columns by
them, so any layout change before a ``MatMul`` is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UnsupportedNodeError

__all__ = ["binary_weight", "canonical", "is_canonical", "per_channel", "reshaped", "scalar",
           "transposed"]


def canonical(shape: tuple[int, ...]) -> np.ndarray:
    """The perm of a fresh IR tensor: ONNX ``(C,)`` or ``(C, H, W)`` over IR ``(C,)``/``(H, W, C)``."""
    if len(shape) == 3:
        c, h, w = shape
        return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1)
    return np.arange(int(np.prod(shape))).reshape(shape)


def is_canonical(perm: np.ndarray) -> bool:
    return np.array_equal(perm, canonical(perm.shape))


def reshaped(node: Any, perm: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """``perm`` after ``Reshape`` to ``target`` (batch first, ``0`` copies, ``-1`` infers)."""
    if target is None:
        raise UnsupportedNodeError(node, "the target shape is computed, not a constant")
    full = (1, *perm.shape)
    dims = [full[i] if int(d) == 0 and i < len(full) else int(d) for i, d in enumerate(target)]
    try:
        out = perm.reshape(1, *perm.shape).reshape(dims)
    except ValueError as exc:
        raise UnsupportedNodeError(node, f"cannot reshape {list(full)} to {dims} ({exc})") from None
    if out.shape[0] != 1:
        raise UnsupportedNodeError(node, "the reshape moves elements across the batch axis")
    return out[0]


def transposed(node: Any, perm: np.ndarray, axes: list[int] | None) -> np.ndarray:
    axes = list(axes) if axes else list(range(perm.ndim + 1))[::-1]
    if len(axes) != perm.ndim + 1 or axes[0] != 0:
        raise UnsupportedNodeError(node, "a transpose must keep the batch axis first")
    return perm.transpose([a - 1 for a in axes[1:]])


def scalar(node: Any, value: np.ndarray | None, what: str = "operand") -> float:
    """A constant that must be one number (broadcast to any shape)."""
    if value is None:
        raise UnsupportedNodeError(node, f"its {what} is computed, not a constant")
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size == 0 or not np.all(flat == flat[0]):
        raise UnsupportedNodeError(node, f"its {what} must be one number here, not an array of "
                                   f"shape {list(np.shape(value))}")
    return float(flat[0])


def per_channel(node: Any, value: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """A constant broadcast against ONNX ``(1, *shape)`` that varies along channels (axis 1) only."""
    if value is None:
        raise UnsupportedNodeError(node, "its operand is computed, not a constant")
    full = (1, *shape)
    try:
        b = np.broadcast_to(np.asarray(value, dtype=np.float32), full)
    except ValueError:
        raise UnsupportedNodeError(node, f"its constant of shape {list(np.shape(value))} does not "
                                   f"broadcast to the tensor's {list(full)}") from None
    col = b.reshape(shape[0], -1)
    if not np.all(col == col[:, :1]):
        raise UnsupportedNodeError(node, "its constant varies within a channel; only per-channel "
                                   "constants fold into thresholds")
    return np.ascontiguousarray(col[:, 0])


def binary_weight(node: Any, w: np.ndarray | None, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Sign bits (1 means +1) and per-output-channel scales of binary weights ``{-s, +s}``.

    ``axis`` is the output-channel axis of ``w``. Anything else (ternary, multi-bit,
    float weights, a zero) is refused, naming the number of distinct magnitudes.
    """
    if w is None:
        raise UnsupportedNodeError(node, "its weights are computed, not a constant (or a "
                                   "quantizer of a constant)")
    w = np.moveaxis(np.asarray(w, dtype=np.float64), axis, 0)
    flat = np.abs(w.reshape(len(w), -1))
    scales = flat.max(axis=1)
    if not np.all(flat == scales[:, None]) or np.any(scales == 0):
        levels = max(len(np.unique(row)) for row in w.reshape(len(w), -1))
        raise UnsupportedNodeError(node, f"its weights take {levels} distinct values in some "
                                   "output channel; bitfold imports binary weights {-s, +s} "
                                   "(1-bit: BipolarQuant, or bipolar initializers)")
    return np.moveaxis((w > 0).astype(np.uint8), 0, axis), scales
