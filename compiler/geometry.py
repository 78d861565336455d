"""A binary layer's geometry: how its input becomes rows of ``fan_in`` elements (docs/ir.md).

:class:`Dense` reads the whole input, flattened row-major, as one row. :class:`Window`
pads an ``(H, W, C_in)`` map by ``pad`` on every side with ``pad_value`` and reads
each ``kernel x kernel`` window with ``stride``, flattened ``(ky, kx, c)``, as a row
(a convolution). The weight encoding (:mod:`bitfold.compiler.encoding`) maps each
row to the layer's accumulators; it never needs to know which geometry made the row.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import IRError
from .tensortype import TensorType

__all__ = ["DENSE", "Dense", "Geometry", "Window"]


@dataclass(frozen=True)
class Dense:
    """A dense (fully connected) layer: one row, the input flattened ``(h W + w) C + c``."""

    KIND: ClassVar[str] = "dense"  # in graph.json
    SUFFIX: ClassVar[str] = "Dense"  # of the layer's kind, e.g. "BinaryDense"

    def infer(self, t: TensorType, src: str, cols: int, c_out: int) -> tuple[int, ...]:
        """The output shape ``(C_out,)``; :class:`IRError` if the fan-in is not ``cols``."""
        fan_in = math.prod(t.shape)
        if cols != fan_in:
            raise IRError(f"weight has {cols} columns, expected {fan_in} "
                          f"(the fan-in of {src!r} {t.describe()})")
        return (c_out,)


DENSE = Dense()


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise IRError(f"{what} must be an integer, not {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise IRError(f"{what} must be an integer, not {value!r}") from None


@dataclass(frozen=True)
class Window:
    """A 2-D convolution's windows: ``kernel``, ``stride``, ``pad`` and the ``pad_value``.

    ``pad_value`` is -1 or +1 for bipolar input (bit 0 or 1), an unsigned value
    (usually 0) for multi-bit input; padded positions count like any other input.
    """

    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pad_value: int = -1
    KIND: ClassVar[str] = "window"
    SUFFIX: ClassVar[str] = "Conv2d"

    def __post_init__(self) -> None:
        for name in ("kernel", "stride", "pad", "pad_value"):
            object.__setattr__(self, name, _integer(getattr(self, name), name))

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output rows and columns of an ``h x w`` input."""
        k, s, p = self.kernel, self.stride, self.pad
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def pad_bit(self, t: TensorType) -> int:
        """The stored value it pads with: a bit for bipolar input, else the integer."""
        if t.bipolar:
            return 1 if self.pad_value == 1 else 0
        return self.pad_value

    def padded(self, x: np.ndarray, t: TensorType) -> np.ndarray:
        """Frames ``x (N, H, W, C)`` padded by ``pad`` with :meth:`pad_bit`."""
        n, h, w, c = x.shape
        p = self.pad
        if not p:
            return x
        out = np.full((n, h + 2 * p, w + 2 * p, c), self.pad_bit(t), dtype=x.dtype)
        out[:, p:p + h, p:p + w, :] = x
        return out

    def infer(self, t: TensorType, src: str, cols: int, c_out: int) -> tuple[int, ...]:
        """The output shape ``(H', W', C_out)``; :class:`IRError` for a window that does not fit."""
        if len(t.shape) != 3:
            raise IRError(f"input {src!r} {t.describe()} must be a (H, W, C) map")
        h, w, c_in = t.shape
        k, s, p = self.kernel, self.stride, self.pad
        if k < 1 or s < 1 or p < 0:
            raise IRError(f"kernel and stride must be >= 1 and pad >= 0, not {k}, {s}, {p}")
        if cols != k * k * c_in:
            raise IRError(f"weight has {cols} columns, expected {k * k * c_in} (a {k}x{k} "
                          f"window of {c_in} channels, (ky, kx, c) row-major)")
        legal = "-1 or +1" if t.bipolar else f"0..{t.hi}"
        ok = self.pad_value in (-1, 1) if t.bipolar else 0 <= self.pad_value <= t.hi
        if not ok:
            raise IRError(f"pad_value {self.pad_value!r} must be {legal} for "
                          f"{t.describe()} input")
        oh, ow = self.out_hw(h, w)
        if oh < 1 or ow < 1:
            raise IRError(f"kernel {k} does not fit the padded {h}x{w} input")
        return (oh, ow, c_out)


Geometry = Dense | Window
