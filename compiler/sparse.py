"""Sparse binary weights ``{0, b}`` per output channel: a mask and a polarity (Schiavone et al.)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .arrays import ArraySpec
from .bitpack import pack_bits, popcount_rows
from .encoding import Accumulate, Encoding, Range, flip_rows
from .errors import CompilerError, IRError
from .tensortype import TensorType

__all__ = ["Sparse"]


@dataclass(frozen=True, eq=False)
class Sparse(Encoding):
    """``mask`` bits ``(C_out, fan_in)`` mark the non-zero weights, ``polarity`` bits
    ``(C_out,)`` the sign of each row's non-zero value (1 means +1).

    Bipolar input: the accumulator is ``popcount(mask & xnor(x, polarity))``, the number
    of masked inputs equal to the row's polarity, in ``0 .. nnz``. Unsigned multi-bit
    input: ``sum over masked i of (x_i if polarity else -x_i)``. The hardware stores
    the mask as the weight plane (or, in the index and group layouts, the positions of
    its ones) and the polarity per neuron.
    """

    mask: np.ndarray
    polarity: np.ndarray
    NAME: ClassVar[str] = "sparse"
    TITLE: ClassVar[str] = "Sparse"
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {"mask": ("bits", 2), "polarity": ("bits", 1)}

    def planes(self) -> np.ndarray:
        return self.mask[None]

    def check(self) -> None:
        c_out = self.mask.shape[0]
        if self.polarity.shape != (c_out,):
            raise IRError(f"polarity has {len(self.polarity)} entries, expected {c_out} "
                          "(one per output)")

    def channel_ranges(self, t: TensorType) -> list[Range]:
        out = []
        for nnz, pol in zip(self.mask.sum(axis=1), self.polarity, strict=True):
            n = int(nnz)
            out.append((0, n, n) if t.bipolar else
                       ((0, n * t.top, 0) if pol else (-n * t.top, 0, 0)))
        return out

    def negated(self, rows: np.ndarray) -> Sparse:
        return dataclasses.replace(self, polarity=flip_rows(self.polarity, rows))

    def reference(self, rows: np.ndarray, t: TensorType) -> np.ndarray:
        """Over the positions where ``mask`` is 1 only."""
        out = np.empty((len(rows), len(self.mask)), dtype=np.int64)
        for c, (m_row, pol) in enumerate(zip(self.mask, self.polarity, strict=True)):
            on = m_row == 1
            if t.bipolar:  # inputs equal to the row's polarity, among the masked ones
                out[:, c] = (rows[:, on] == pol).sum(axis=1)
            else:
                out[:, c] = rows[:, on].sum(axis=1) * (1 if pol == 1 else -1)
        return out

    def packed(self, t: TensorType, bit_serial: bool) -> Accumulate:
        return _PackedSparse.of(self.mask, self.polarity, t)

    def unit_params(self, planes: np.ndarray, t: TensorType) -> dict[str, Any]:
        return {"weights": planes[0], "polarity": np.asarray(self.polarity)}


@dataclass(frozen=True)
class _PackedSparse:
    """``p = popcount(x & mask)`` per row, then ``p`` or ``nnz - p`` by polarity.

    Multi-bit input is the exact float64 product with the masked +-1 rows.
    """

    mask_t: np.ndarray
    nnz: np.ndarray
    polarity: np.ndarray
    fan_in: int
    bipolar: bool
    signs_t: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray, polarity: np.ndarray, t_in: TensorType) -> _PackedSparse:
        if not t_in.bipolar and mask.shape[1] * t_in.hi >= 2**53:
            raise CompilerError(f"a sparse layer of fan-in {mask.shape[1]} over {t_in.bits}-bit "
                                "input is too wide for the packed executor")
        signs = mask * np.where(polarity == 1, 1.0, -1.0)[:, None]
        return cls(np.ascontiguousarray(pack_bits(mask).T), mask.sum(axis=1).astype(np.int64),
                   polarity.astype(bool), mask.shape[1], t_in.bipolar,
                   np.ascontiguousarray(signs.T))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if not self.bipolar:
            return (rows.astype(np.float64) @ self.signs_t).astype(np.int64)
        count = np.uint16 if self.fan_in < (1 << 16) else np.uint32
        ones = popcount_rows(np.bitwise_and, pack_bits(rows), self.mask_t, count).astype(np.int64)
        return np.where(self.polarity, ones, self.nnz - ones)
