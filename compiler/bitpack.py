"""Bits packed into little-endian uint64 words and the binary accumulate on them.

Bit ``i`` of word ``j`` is element ``64 j + i``; the tail is zero in both input and
weights, so it never mismatches, and ``popcount(xnor(x, w)) = fan_in - popcount(x ^ w)``
(docs/architecture.md, "Layout and bit packing"). The packed executor
(:mod:`bitfold.compiler.packed`) and the weight encodings' ``packed`` accumulates use these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tensortype import TensorType

__all__ = ["PackedXnor", "pack_bits", "pack_ints", "popcount_rows"]


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack 0/1 values along the last axis into little-endian uint64 words (zero tail)."""
    packed = np.packbits(bits.astype(np.uint8, copy=False), axis=-1, bitorder="little")
    tail = (-packed.shape[-1]) % 8
    if tail:
        packed = np.concatenate(
            [packed, np.zeros(packed.shape[:-1] + (tail,), dtype=np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view("<u8")


def pack_ints(values, bits: int) -> list[int]:
    """Each row of integers ``values`` (``(N, E)``) as one integer: element ``i`` at bits
    ``[i*bits, (i+1)*bits)``, two's complement (only its low ``bits`` bits are kept).

    The one packer of stream words and memory words: the hardware's input beats (``hw``,
    ``sim``), its weight and per-neuron ROM words (:mod:`.memlayout`).
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (rows of elements), not shape {v.shape}")
    if bits > 62 or v.dtype == object:  # beyond int64: plain integers
        mask = (1 << bits) - 1
        return [sum((int(x) & mask) << (i * bits) for i, x in enumerate(row)) for row in v]
    v = v.astype(np.int64, copy=False)
    planes = ((v[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return [int.from_bytes(row.tobytes(), "little") for row in pack_bits(planes.reshape(len(v), -1))]


def popcount_rows(op, x: np.ndarray, w_t: np.ndarray, count_dtype) -> np.ndarray:
    """``sum_j popcount(op(x[:, j], w_t[j]))``: packed rows ``x (N, W)``, weights ``w_t (W, C)``.

    The weights are stored word-major so each step reads a contiguous row;
    counts accumulate in the narrowest unsigned type that holds the fan-in.
    """
    out = np.zeros((len(x), w_t.shape[1]), dtype=count_dtype)
    for j in range(x.shape[1]):
        out += np.bitwise_count(op(x[:, j, None], w_t[j][None, :]))
    return out


@dataclass(frozen=True)
class PackedXnor:
    """A binary layer's weights, packed once (word-major: ``(W, C_out)`` uint64).

    ``signs_t`` (``(fan_in, C_out)`` float64 of +-1) is set for a multi-bit layer
    whose accumulator is computed as a float64 matrix product instead of bit-serially.
    """

    words_t: np.ndarray
    fan_in: int
    bipolar: bool
    input_bits: int
    signs_t: np.ndarray | None = None

    @classmethod
    def of(cls, flat_w: np.ndarray, t_in: TensorType, bit_serial: bool) -> PackedXnor:
        words = np.ascontiguousarray(pack_bits(flat_w).T)
        # exact: every partial sum is an integer of magnitude <= fan_in * max input < 2**53
        exact = flat_w.shape[1] * t_in.hi < 2**53
        signs = None if t_in.bipolar or bit_serial or not exact else \
            np.ascontiguousarray(np.where(flat_w == 1, 1.0, -1.0).T)
        return cls(words, flat_w.shape[1], t_in.bipolar, t_in.bits, signs)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Accumulators of ``rows (N, fan_in)`` (bits or unsigned ints) -> ``(N, C_out)``."""
        count = np.uint16 if self.fan_in < (1 << 16) else np.uint32
        if self.bipolar:
            mismatches = popcount_rows(np.bitwise_xor, pack_bits(rows), self.words_t, count)
            return self.fan_in - mismatches.astype(np.int64)
        if self.signs_t is not None:
            return (rows.astype(np.float64) @ self.signs_t).astype(np.int64)
        acc = np.zeros((len(rows), self.words_t.shape[1]), dtype=np.int64)
        for q in range(self.input_bits):
            plane = pack_bits((rows >> q) & 1)
            ones = np.bitwise_count(plane).sum(axis=1, dtype=np.int64)[:, None]
            pos = popcount_rows(np.bitwise_and, plane, self.words_t, count).astype(np.int64)
            acc += (2 * pos - ones) << q
        return acc
