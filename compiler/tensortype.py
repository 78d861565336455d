"""Integer tensor types of the IR: shape, width and signedness (docs/ir.md, "Values")."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TensorType", "int_type"]


@dataclass(frozen=True)
class TensorType:
    """Shape (without batch), width in bits and signedness of an integer tensor."""

    shape: tuple[int, ...]
    bits: int
    signed: bool

    @property
    def bipolar(self) -> bool:
        """True for binary {-1, +1} tensors (one bit, 1 means +1)."""
        return self.bits == 1 and self.signed

    @property
    def lo(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def top(self) -> int:
        """The largest input value a binary layer sees: 1 (a +1 bit) or ``hi`` (unsigned)."""
        return 1 if self.bipolar else self.hi

    def describe(self) -> str:
        kind = "bipolar" if self.bipolar else f"{'int' if self.signed else 'uint'}{self.bits}"
        return f"{kind}{list(self.shape)}"


def int_type(shape: tuple[int, ...], lo: int, hi: int) -> TensorType:
    """The narrowest integer type holding ``lo .. hi`` (signed ones have at least 2 bits)."""
    if lo >= 0:
        return TensorType(tuple(shape), max(1, int(hi).bit_length()), False)
    bits = max((-int(lo) - 1).bit_length(), max(int(hi), 0).bit_length()) + 1
    return TensorType(tuple(shape), max(2, bits), True)
