"""The weight encoding of a matrix-vector unit: a strategy the MVU is built with (``hw/mvu.py``).

Every MVU (any layout) streams weight words, counts terms in adder trees and
accumulates them; what the weights *mean* is its encoding's:

* :class:`BinaryWeights`: one plane of bits (1 means +1): ``xnor(x, w)`` on bipolar
  input, ``w ? x : -x`` (or gated ``w & x`` beside an input-sum lane) on multi-bit input;
* :class:`SparseWeights`: a mask and a polarity per neuron: masked terms equal to the
  polarity (multi-bit: ``+-x``), the polarity from a per-fold ROM;
* :class:`CompositeWeights`: ``K`` planes side by side, each plane's sums combined by
  constant shift-and-add, ``sum_k plane_scale[k] * sum_k``;
* :class:`DomainWeights`: one plane, an offset per neuron: ``scale * A + offset * X``
  with ``X`` the input's sum from one more adder tree.

Each knows its accumulator range from the IR's encoding (:meth:`UnitWeights.acc_range`,
``Encoding.channel_ranges``), so the unit and the compiler size accumulators alike.

An encoding's weights are made once, in the hardware plan (``hw/plan.py``, the
``unit`` of an :class:`~.stages.MVUStage`), which is plain data: this module imports
Amaranth only in the methods that build the unit's logic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from bitfold.compiler.binary import Binary
from bitfold.compiler.composite import Composite
from bitfold.compiler.domain import Domain
from bitfold.compiler.encoding import Encoding
from bitfold.compiler.memlayout import offset_words
from bitfold.compiler.sparse import Sparse
from bitfold.compiler.tensortype import TensorType

if TYPE_CHECKING:
    from amaranth.hdl import Module, Value


class MVU(Protocol):
    """What an encoding reads of its unit (:class:`~.mvu.MVU`)."""

    pe: int
    simd: int
    input_bits: int
    bipolar: bool
    shared_input_sum: bool
    weight_memory: str

    def weight_words(self) -> list[int]: ...

    def polarity_lanes(self, m: Module, nf: Value) -> list[Value]: ...

    def fold_rom(self, m: Module, name: str, values: Any, shape: Any, nf: Value,
                 en: Value | None = None) -> list[Value]: ...

__all__ = ["BinaryWeights", "CompositeWeights", "DomainWeights", "SparseWeights", "UnitWeights",
           "unit_weights"]


def _bits(weights: np.ndarray, ndim: int) -> np.ndarray:
    weights = np.asarray(weights)
    if weights.ndim != ndim or weights.size == 0 or not np.isin(weights, (0, 1)).all():
        raise ValueError(f"weights must be a non-empty {ndim}-D array of bits, not shape "
                         f"{weights.shape}")
    return weights.astype(np.uint8)


class UnitWeights:
    """A binary weight plane, and the base of the other encodings (see the module)."""

    GATES_MULTIBIT: ClassVar[bool] = True  # multi-bit input: gated terms, an input-sum lane
    KEEPS_INPUT_SUM: ClassVar[bool] = False  # the input-sum lane reaches combine (domain)
    PAIRS: ClassVar[bool] = False  # the first layer may take its terms from input pairs
    polarity: np.ndarray | None = None
    plane_scale: list[int] | None = None
    offset: list[int] | None = None
    offset_scale: int = 1

    def __init__(self, weights: np.ndarray) -> None:
        self.bits = _bits(weights, 2)

    @property
    def planes(self) -> int:
        return 1

    @property
    def shape(self) -> tuple[int, int]:
        """``(mh, mw)``."""
        mh, mw = self.bits.shape[-2:]
        return int(mh), int(mw)

    def encoding(self) -> Encoding:
        """The IR's encoding of these weights (in the unit's column order)."""
        return Binary(self.bits)

    def acc_range(self, input_bits: int, bipolar: bool) -> tuple[int, int]:
        """The exact range of the unit's accumulators: the IR's channel ranges
        (``Encoding.channel_ranges``) over every neuron."""
        mw = self.shape[1]
        t = TensorType((mw,), 1, True) if bipolar else TensorType((mw,), input_bits, False)
        ranges = self.encoding().channel_ranges(t)
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def fold_lanes(self, unit: MVU, m: Module, nf: Value) -> list[Value | None]:
        """Per lane, what its terms need of fold ``nf`` (a sparse layer's polarity)."""
        return [None] * unit.pe

    def terms(self, unit: MVU, m: Module, x: Value, w: Value, p: int,
              pol: Value | None) -> list[Value]:
        """The ``simd`` terms of neuron lane ``p`` (of a plane's word ``w``), on wires."""
        from amaranth.hdl import Cat, Mux

        from .arith import wire

        wp = w.word_select(p, unit.simd)
        b = unit.input_bits
        xs = [x[s] if unit.bipolar else x[s * b:(s + 1) * b] for s in range(unit.simd)]
        if unit.bipolar:
            xnor = wire(m, ~(x ^ wp))
            return [xnor[s] for s in range(unit.simd)]
        if unit.shared_input_sum:  # w & x; the lane's sum becomes 2 S - X after the tree
            gated = wire(m, Cat(*[xs[s] & wp[s].replicate(b) for s in range(unit.simd)]))
            return [gated[s * b:(s + 1) * b] for s in range(unit.simd)]
        return [Mux(wp[s], xs[s], -xs[s]) for s in range(unit.simd)]

    def combine(self, unit: MVU, m: Module, sums: list[Value], nf: Value) -> list[Value]:
        """Each lane's value added to its accumulator, from the trees' sums."""
        return sums


class BinaryWeights(UnitWeights):
    """Plain binary weights ``(mh, mw)`` (``compiler.binary.Binary``)."""

    PAIRS = True


class SparseWeights(UnitWeights):
    """A mask ``(mh, mw)`` and a polarity ``(mh,)`` (``compiler.sparse.Sparse``): each
    neuron counts the masked inputs equal to its polarity (multi-bit: adds them, negated
    where the polarity is 0). Masked-out inputs are no terms at all where the weights are
    constants (``NF * SF == 1``)."""

    GATES_MULTIBIT = False

    def __init__(self, mask: np.ndarray, polarity: np.ndarray) -> None:
        super().__init__(mask)
        polarity = np.asarray(polarity).astype(np.uint8)
        if polarity.shape != (self.shape[0],):
            raise ValueError(f"polarity must have shape ({self.shape[0]},), not {polarity.shape}")
        self.polarity = self.signs = polarity

    def encoding(self) -> Encoding:
        return Sparse(self.bits, self.signs)

    def fold_lanes(self, unit: MVU, m: Module, nf: Value) -> list[Value | None]:
        return list(unit.polarity_lanes(m, nf))

    def terms(self, unit: MVU, m: Module, x: Value, w: Value, p: int,
              pol: Value | None) -> list[Value]:
        """Masked inputs equal to the polarity ``pol`` (multi-bit: ``+-x``)."""
        from amaranth.hdl import Cat, Const, Mux

        from .arith import wire

        wp = w.word_select(p, unit.simd)
        b = unit.input_bits
        xs = [x[s] if unit.bipolar else x[s * b:(s + 1) * b] for s in range(unit.simd)]
        keep: Sequence[int] = range(unit.simd)
        if unit.weight_memory == "constant":  # constant mask: zeros are no terms at all
            word = unit.weight_words()[0]
            keep = [s for s in keep if (word >> (p * unit.simd + s)) & 1]
        if not keep:
            return [Const(0, 1)]
        if unit.bipolar:
            bits = wire(m, Cat(*[wp[s] & ~(xs[s] ^ pol) for s in keep]))
            return [bits[i] for i in range(len(keep))]
        return [Mux(wp[s], Mux(pol, xs[s], -xs[s]), 0) for s in keep]


    @staticmethod
    def gathered_term(unit: MVU, x: Value, valid: Value, pol: Value) -> Value:
        """The term of a kept input ``x`` the index or group layout gathered by position:
        ``valid & xnor(x, pol)``, or multi-bit ``+-x`` (0 when not ``valid``)."""
        from amaranth.hdl import Mux

        if unit.bipolar:
            return valid & ~(x ^ pol)
        return Mux(valid, Mux(pol, x, -x), 0)


class CompositeWeights(UnitWeights):
    """``K`` planes ``(K, mh, mw)`` and their positive integer scales
    (``compiler.composite.Composite``): the planes run as parallel lanes sharing each
    weight word (or, in the serial unit, one a cycle)."""

    def __init__(self, planes: np.ndarray, plane_scale: Sequence[int]) -> None:
        self.bits = _bits(planes, 3)
        scales = [int(v) for v in plane_scale]
        if len(scales) != self.bits.shape[0] or min(scales) < 1:
            raise ValueError(f"plane_scale must be {self.bits.shape[0]} positive integers, "
                             f"not {scales!r}")
        self.plane_scale = self.scales = scales

    @property
    def planes(self) -> int:
        return int(self.bits.shape[0])

    def encoding(self) -> Encoding:
        return Composite(self.bits, np.asarray(self.scales))

    def combine(self, unit: MVU, m: Module, sums: list[Value], nf: Value) -> list[Value]:
        """``sum_k plane_scale[k] * plane k's sum`` per lane (constant multiplies)."""
        out = []
        for p in range(unit.pe):
            total = None
            for k, scale in enumerate(self.scales):
                term = sums[k * unit.pe + p] * scale
                total = term if total is None else total + term
            out.append(total)
        return out


class DomainWeights(UnitWeights):
    """Bits ``(mh, mw)``, an offset per neuron and a positive ``scale``
    (``compiler.domain.Domain``): neuron ``n`` accumulates ``scale * A_n + offset[n] * X``,
    ``A_n`` the binary accumulator and ``X`` the input's sum (bipolar: its number of 1
    bits), from one extra adder tree over the input word; the offsets come from a ROM
    read by the neuron fold (constants when ``NF == 1``)."""

    KEEPS_INPUT_SUM = True
    offset: list[int]  # always given, unlike the base class'

    def __init__(self, weights: np.ndarray, offset: Sequence[int], scale: int) -> None:
        super().__init__(weights)
        offsets = [int(v) for v in np.asarray(offset).reshape(-1)]
        if len(offsets) != self.shape[0]:
            raise ValueError(f"offset must have {self.shape[0]} entries (one per neuron), not "
                             f"{len(offsets)}")
        if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
            raise ValueError(f"offset_scale must be a positive integer, not {scale!r}")
        self.offset, self.offset_scale = offsets, int(scale)

    def encoding(self) -> Encoding:
        return Domain(self.bits, np.asarray(self.offset), self.offset_scale)

    def combine(self, unit: MVU, m: Module, sums: list[Value], nf: Value) -> list[Value]:
        """``offset_scale * sum_p + offset[p] * sum_x`` per lane (``sum_x`` the last lane)."""
        from amaranth.hdl import signed

        width, _ = offset_words(self.offset, unit.pe)
        offsets = unit.fold_rom(m, "offsets", self.offset, signed(width), nf)
        x_sum = sums[-1]
        return [s * self.offset_scale + off * x_sum
                for s, off in zip(sums[:-1], offsets, strict=True)]


def unit_weights(weights: np.ndarray, polarity: np.ndarray | None = None,
                 plane_scale: Sequence[int] | None = None, offset: Sequence[int] | None = None,
                 offset_scale: int = 1) -> UnitWeights:
    """The strategy of a weight encoding's unit parameters (``Encoding.unit_params``)."""
    if polarity is not None:
        return SparseWeights(weights, polarity)
    if plane_scale is not None:
        return CompositeWeights(weights, plane_scale)
    if offset is not None:
        return DomainWeights(weights, offset, offset_scale)
    return BinaryWeights(weights)

