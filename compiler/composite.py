"""Composite binary weights: ``K`` binary planes with integer plane scales (CBDNet)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .arrays import ArraySpec
from .bitpack import PackedXnor
from .encoding import Accumulate, Encoding, Range, flip_rows, xnor_reference
from .errors import IRError
from .tensortype import TensorType

__all__ = ["Composite"]


@dataclass(frozen=True, eq=False)
class Composite(Encoding):
    """``K`` binary planes ``weight (K, C_out, fan_in)`` combined with ``plane_scale (K,)``.

    The accumulator is ``sum_k plane_scale[k] * acc_k``, ``acc_k`` the binary
    accumulator of plane ``k``. Plane scales are positive integers, the fixed-point
    ratios of the planes' real scales.
    """

    weight: np.ndarray
    plane_scale: np.ndarray
    NAME: ClassVar[str] = "composite"
    TITLE: ClassVar[str] = "Composite"
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {"weight": ("bits", 3),
                                              "plane_scale": ("int64", 1)}

    def planes(self) -> np.ndarray:
        return self.weight

    def check(self) -> None:
        k = len(self.plane_scale)
        if k != self.weight.shape[0] or k < 1 or (self.plane_scale < 1).any():
            raise IRError(f"plane_scale {self.plane_scale.tolist()} must hold one positive "
                          f"integer per weight plane ({self.weight.shape[0]})")

    def channel_ranges(self, t: TensorType) -> list[Range]:
        bound = self.weight.shape[2] * t.top * int(self.plane_scale.sum())
        one = (0, bound, bound) if t.bipolar else (-bound, bound, 0)
        return [one] * self.weight.shape[1]

    def negated(self, rows: np.ndarray) -> Composite:
        """Every plane's rows flipped."""
        return dataclasses.replace(self, weight=flip_rows(self.weight, rows, axis=1))

    def reference(self, rows: np.ndarray, t: TensorType) -> np.ndarray:
        return np.sum([int(m) * xnor_reference(w, rows, t.bipolar)
                       for m, w in zip(self.plane_scale, self.weight, strict=True)], axis=0)

    def packed(self, t: TensorType, bit_serial: bool) -> Accumulate:
        return _PackedComposite(tuple(PackedXnor.of(p, t, bit_serial) for p in self.weight),
                                tuple(int(m) for m in self.plane_scale))

    def unit_params(self, planes: np.ndarray, t: TensorType) -> dict[str, Any]:
        return {"weights": planes, "plane_scale": [int(v) for v in self.plane_scale]}


@dataclass(frozen=True)
class _PackedComposite:
    """The plane scales times each plane's packed binary accumulator."""

    planes: tuple[PackedXnor, ...]
    scales: tuple[int, ...]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.sum([m * mvu(rows) for m, mvu in zip(self.scales, self.planes, strict=True)],
                      axis=0)
