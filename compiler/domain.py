"""General binary domain ``{a, b}`` per output: an offset plus a scaled binary weight."""

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

__all__ = ["Domain", "domain_range"]


@dataclass(frozen=True, eq=False)
class Domain(Encoding):
    """``w = d (s + offset / scale)``, ``s`` +-1 (Schiavone et al.'s domain ``{a, b}``).

    ``weight`` bits ``(C_out, fan_in)`` are ``s`` (1 means +1), ``offset`` int64
    ``(C_out,)`` each row's offset and ``scale`` a positive integer. The accumulator is
    ``scale * A_i + offset[i] * X``: ``A_i`` the binary accumulator of row ``i`` and
    ``X`` the sum of the row (bipolar: ``popcount(x)``, the number of +1 inputs;
    multi-bit: ``sum_i x_i``).
    """

    weight: np.ndarray
    offset: np.ndarray
    scale: int = 1
    NAME: ClassVar[str] = "domain"
    TITLE: ClassVar[str] = "Domain"
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {"weight": ("bits", 2), "offset": ("int64", 1)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.scale, bool) or not isinstance(self.scale, int | np.integer):
            raise IRError(f"domain scale must be an integer, not {self.scale!r}")
        object.__setattr__(self, "scale", int(self.scale))

    def planes(self) -> np.ndarray:
        return self.weight[None]

    def check(self) -> None:
        c_out = self.weight.shape[0]
        if self.offset.shape != (c_out,):
            raise IRError(f"offset has {len(self.offset)} entries, expected {c_out} "
                          "(one per output)")
        if self.scale < 1:
            raise IRError(f"scale must be a positive integer, not {self.scale!r}")

    def channel_ranges(self, t: TensorType) -> list[Range]:
        fan_in = self.weight.shape[1]
        return [domain_range(fan_in, self.scale, int(m), t.top, t.bipolar) for m in self.offset]

    def negated(self, rows: np.ndarray) -> Domain:
        """Bits flipped and offsets negated: ``scale (F - A) - m X = scale F - acc``."""
        offset = self.offset.copy()
        offset[rows] = -offset[rows]
        return dataclasses.replace(self, weight=flip_rows(self.weight, rows), offset=offset)

    def reference(self, rows: np.ndarray, t: TensorType) -> np.ndarray:
        x_sum = rows.sum(axis=1, dtype=np.int64)[:, None]
        return self.scale * xnor_reference(self.weight, rows, t.bipolar) + self.offset * x_sum

    def packed(self, t: TensorType, bit_serial: bool) -> Accumulate:
        return _PackedDomain(PackedXnor.of(self.weight, t, bit_serial), self.scale,
                             np.asarray(self.offset, dtype=np.int64))

    def unit_params(self, planes: np.ndarray, t: TensorType) -> dict[str, Any]:
        return {"weights": planes[0], "offset": [int(v) for v in self.offset],
                "offset_scale": self.scale}


def domain_range(fan_in: int, scale: int, offset: int, top: int,
                 bipolar: bool) -> tuple[int, int, int]:
    """``(lo, hi, mirror)`` of a domain row's accumulator ``scale * A + offset * X``.

    One input position adds ``scale [x = w] + offset [x = 1]`` (bipolar: ``0`` or
    ``scale + offset`` where ``w = 1``, ``scale`` or ``offset`` where ``w = 0``) or
    ``(offset +- scale) x`` (multi-bit, ``x`` in ``0 .. top``). The range is the same
    for every row of a given offset: ``fan_in`` times an interval holding every
    position's values and 0, so every partial sum (a hardware accumulator between
    words) lies in it too, and negating the row (its bits and its offset) maps it
    onto ``mirror - range`` exactly (``mirror = scale * fan_in`` bipolar, 0 multi-bit).
    """
    if bipolar:
        return (fan_in * min(0, offset), fan_in * (scale + max(0, offset)), fan_in * scale)
    return (fan_in * top * min(0, offset - scale), fan_in * top * max(0, offset + scale), 0)


@dataclass(frozen=True)
class _PackedDomain:
    """``scale`` times the packed binary accumulator plus ``offset`` times the row's sum
    (bipolar: its number of 1 bits)."""

    signs: PackedXnor
    scale: int
    offset: np.ndarray

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        x_sum = rows.sum(axis=1, dtype=np.int64)[:, None]
        return self.scale * self.signs(rows) + self.offset[None, :] * x_sum
