"""Ternary weights ``{-1, 0, +1}``: a mask of the non-zero weights and each one's sign."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .arrays import ArraySpec
from .bitpack import pack_bits, popcount_rows
from .encoding import Accumulate, Encoding, Range
from .errors import CompilerError, IRError
from .tensortype import TensorType, int_type

__all__ = ["Ternary"]


@dataclass(frozen=True, eq=False)
class Ternary(Encoding):
    """``mask`` bits ``(C_out, fan_in)`` mark the non-zero weights, ``sign`` bits (same
    shape, 0 where the mask is) their signs, 1 meaning +1.

    Bipolar input: the accumulator is ``popcount(mask & xnor(x, sign))``, the number of
    non-zero weights the input agrees with, in ``0 .. nnz`` (``dot = 2 acc - nnz``).
    Unsigned multi-bit input: ``sum over masked i of (x_i if sign_i else -x_i)``. A
    sparse layer is the ternary one whose signs are constant along each row.

    Hardware builds it as a composite unit of two binary planes with unit scales,
    ``hi = sign | ~mask`` (the weight >= 0) and ``lo = sign & mask`` (> 0): their
    accumulators add to ``2 acc + zeros`` (bipolar, ``zeros`` the row's zero weights) or
    ``2 acc`` (multi-bit), so a threshold ``T`` becomes ``2 T + zeros`` (or ``2 T``).
    The unit's accumulator is not the layer's, so it must feed a ``Threshold``.
    """

    mask: np.ndarray
    sign: np.ndarray
    NAME: ClassVar[str] = "ternary"
    TITLE: ClassVar[str] = "Ternary"
    SCHEME: ClassVar[str] = "composite"  # the unit hardware builds (and the cost model prices)
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {"mask": ("bits", 2), "sign": ("bits", 2)}
    UNIT_ACCUMULATES_IR: ClassVar[bool] = False

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    def planes(self) -> np.ndarray:
        """The composite unit's two planes, ``(sign | ~mask, sign & mask)``."""
        return np.stack([self.sign | (1 - self.mask), self.sign & self.mask]).astype(np.uint8)

    def check(self) -> None:
        if self.sign.shape != self.mask.shape:
            raise IRError(f"sign has shape {self.sign.shape}, expected the mask's "
                          f"{self.mask.shape}")
        if (self.sign & (1 - self.mask)).any():
            raise IRError("sign must be 0 where mask is 0 (a zero weight has no sign)")

    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the number of +1 and of -1 weights."""
        pos = (self.mask & self.sign).sum(axis=1)
        return pos, self.mask.sum(axis=1) - pos

    def channel_ranges(self, t: TensorType) -> list[Range]:
        pos, neg = self._counts()
        if t.bipolar:
            return [(0, int(p + n), int(p + n)) for p, n in zip(pos, neg, strict=True)]
        return [(-int(n) * t.top, int(p) * t.top, 0) for p, n in zip(pos, neg, strict=True)]

    def negated(self, rows: np.ndarray) -> Ternary:
        """Every non-zero weight of the rows changes sign."""
        sign = self.sign.copy()
        sign[rows] = self.mask[rows] & (1 - sign[rows])
        return dataclasses.replace(self, sign=sign)

    def reference(self, rows: np.ndarray, t: TensorType) -> np.ndarray:
        out = np.empty((len(rows), len(self.mask)), dtype=np.int64)
        for c, (m_row, s_row) in enumerate(zip(self.mask, self.sign, strict=True)):
            on = m_row == 1
            if t.bipolar:  # the masked inputs equal to their weight's sign
                out[:, c] = (rows[:, on] == s_row[on]).sum(axis=1)
            else:
                out[:, c] = rows[:, on] @ np.where(s_row[on] == 1, 1, -1)
        return out

    def packed(self, t: TensorType, bit_serial: bool) -> Accumulate:
        return _PackedTernary.of(self.mask, self.sign, t, bit_serial)

    def unit_params(self, planes: np.ndarray, t: TensorType) -> dict[str, Any]:
        """The composite unit, its accumulator ``2 acc + zeros`` sized to ``0 .. 2 fan_in``
        (multi-bit: ``+-2 fan_in top``)."""
        bound = 2 * planes.shape[-1] * t.top
        acc = int_type((), 0 if t.bipolar else -bound, bound)
        return {"weights": planes, "plane_scale": [1, 1], "acc_bits": acc.bits,
                "acc_signed": acc.signed}

    def unit_thresholds(self, thresholds: np.ndarray, t: TensorType) -> np.ndarray:
        """``acc >= T`` as the unit's ``2 acc + zeros >= 2 T + zeros``, clipped to its range."""
        zeros = (1 - self.mask).sum(axis=1) if t.bipolar else 0
        ranges = np.array(self.channel_ranges(t), dtype=np.int64)
        return np.clip(2 * np.asarray(thresholds, np.int64) + zeros, 2 * ranges[:, 0] + zeros,
                       2 * ranges[:, 1] + zeros + 1)


@dataclass(frozen=True)
class _PackedTernary:
    """Bipolar: ``nnz - popcount(mask & (x ^ sign))``. Multi-bit: the exact float64
    product with the +-1/0 rows, or, bit-serially over the input's bit planes ``q``,
    ``sum_q 2^q (popcount(x_q & plus) - popcount(x_q & minus))``."""

    mask_t: np.ndarray
    sign_t: np.ndarray
    minus_t: np.ndarray
    nnz: np.ndarray
    bipolar: bool
    input_bits: int
    signs_t: np.ndarray | None

    @classmethod
    def of(cls, mask: np.ndarray, sign: np.ndarray, t: TensorType,
           bit_serial: bool) -> _PackedTernary:
        if not t.bipolar and not bit_serial and mask.shape[1] * t.hi >= 2**53:
            raise CompilerError(f"a ternary layer of fan-in {mask.shape[1]} over {t.bits}-bit "
                                "input is too wide for the float product; run it bit-serially")
        signs = None if t.bipolar or bit_serial else \
            np.ascontiguousarray((mask * np.where(sign == 1, 1.0, -1.0)).T)

        def words(bits: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(pack_bits(bits).T)

        return cls(words(mask), words(sign), words(mask & (1 - sign)),
                   mask.sum(axis=1).astype(np.int64), t.bipolar, t.bits, signs)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        count = np.uint16 if self.mask_t.shape[0] * 64 < (1 << 16) else np.uint32
        if self.bipolar:
            x = pack_bits(rows)
            off = np.zeros((len(rows), self.mask_t.shape[1]), dtype=count)
            for j in range(x.shape[1]):
                off += np.bitwise_count((x[:, j, None] ^ self.sign_t[j][None]) &
                                        self.mask_t[j][None])
            return self.nnz - off.astype(np.int64)
        if self.signs_t is not None:
            return (rows.astype(np.float64) @ self.signs_t).astype(np.int64)
        acc = np.zeros((len(rows), self.mask_t.shape[1]), dtype=np.int64)
        for q in range(self.input_bits):
            plane = pack_bits((rows >> q) & 1)
            plus = popcount_rows(np.bitwise_and, plane, self.sign_t, count).astype(np.int64)
            minus = popcount_rows(np.bitwise_and, plane, self.minus_t, count).astype(np.int64)
            acc += (plus - minus) << q
        return acc
