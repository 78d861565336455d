"""Frozen array attributes of the IR's dataclasses (nodes and weight encodings)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from .errors import IRError

__all__ = ["ArraySpec", "fields_equal", "frozen_array"]

# an array attribute's encoding ("bits", "int64", "float64") and number of dimensions
ArraySpec = tuple[str, int]


def frozen_array(value: Any, dtype: str, ndim: int, where: str,
                 flatten: bool = False) -> np.ndarray:
    """A read-only C-ordered copy of ``value`` as ``dtype``, checked to have ``ndim`` axes.

    ``flatten``: more axes than ``ndim`` are folded into the last one, row-major (a
    convolution's weight ``(C_out, k, k, C_in)`` becomes the matrix ``(C_out, k k C_in)``).
    """
    arr = np.asarray(value)
    if flatten and ndim >= 2 and arr.ndim > ndim:
        arr = arr.reshape(*arr.shape[:ndim - 1], -1)
    if arr.ndim != ndim:
        raise IRError(f"{where} must have {ndim} dimensions, not shape {arr.shape}")
    if dtype == "bits":
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise IRError(f"{where} must hold bits 0/1 (1 means +1)")
        arr = arr.astype(np.uint8)
    elif dtype == "int64":
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise IRError(f"{where} must be integers, not {arr.dtype}")
        arr = arr.astype(np.int64)
    else:
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise IRError(f"{where} must be finite")
    arr = np.array(arr, copy=True, order="C")
    arr.setflags(write=False)
    return arr


def fields_equal(a: Any, b: Any) -> bool:
    """Two dataclasses of one type with equal fields (arrays: same dtype and values)."""
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if not isinstance(y, np.ndarray) or x.dtype != y.dtype or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True
