"""Binary weights: one bit per weight, 1 means +1 (docs/ir.md, "Nodes")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .arrays import ArraySpec
from .bitpack import PackedXnor
from .encoding import Accumulate, Encoding, Range, flip_rows, xnor_reference
from .tensortype import TensorType

__all__ = ["Binary"]


@dataclass(frozen=True, eq=False)
class Binary(Encoding):
    """Weights ``(C_out, fan_in)`` in bits (1 means +1).

    Bipolar input: the accumulator is ``popcount(xnor(x, w))`` per output, in
    ``0 .. fan_in`` (``dot = 2 acc - fan_in``). Unsigned multi-bit input: the signed
    sum ``sum_i (x_i if w_i else -x_i)``.
    """

    weight: np.ndarray
    NAME: ClassVar[str] = "binary"
    TITLE: ClassVar[str] = "Binary"
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {"weight": ("bits", 2)}

    def planes(self) -> np.ndarray:
        return self.weight[None]

    def channel_ranges(self, t: TensorType) -> list[Range]:
        bound = self.weight.shape[1] * t.top
        one = (0, bound, bound) if t.bipolar else (-bound, bound, 0)
        return [one] * self.weight.shape[0]

    def negated(self, rows: np.ndarray) -> Binary:
        return dataclasses.replace(self, weight=flip_rows(self.weight, rows))

    def reference(self, rows: np.ndarray, t: TensorType) -> np.ndarray:
        return xnor_reference(self.weight, rows, t.bipolar)

    def packed(self, t: TensorType, bit_serial: bool) -> Accumulate:
        return PackedXnor.of(self.weight, t, bit_serial)

    def unit_params(self, planes: np.ndarray, t: TensorType) -> dict[str, Any]:
        return {"weights": planes[0]}
