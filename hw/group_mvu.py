"""A sparse layer's MVU in the group layout: N kept inputs of every G, as positions in the group.

A mask trained with ``--sparse-group G`` keeps exactly ``N`` inputs in every
group of ``G`` consecutive columns (N:G structured sparsity), so each group
needs only ``N`` positions of ``log2 G`` bits: half a bit a weight at 1:2 and
at 1:4, where the mask layout (:class:`~bitfold.hw.mvu.MVU`) needs one and the
index layout (:class:`~bitfold.hw.index_mvu.IndexMVU`) several. The unit takes
``SIMD`` groups (``SIMD * G`` inputs) a cycle and skips the zeros: each of a
lane's ``SIMD * N`` terms picks its input from its group's ``G`` through a
small multiplexer, so the adder trees are ``N / G`` the mask layout's at the
same cycles, and the memory shrinks with them (``compiler/cost.py`` prices it).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Shape, Value

from bitfold.compiler.memlayout import group_words

from .index_mvu import sparse_weights
from .mvu import MVU
from .ranges import LUTROM_MAX_DEPTH
from .weights import SparseWeights

__all__ = ["GroupMVU"]


class GroupMVU(MVU):
    """A sparse layer's MVU in the group layout (:func:`group_words`): it skips zeros.

    Parameters are :class:`MVU`'s for a sparse layer (``mask``, ``polarity``) and
    ``group`` (G). The input word is ``SIMD * G`` elements; a vector takes
    ``NF * MW / (G SIMD)`` cycles. Every term is ``valid & xnor(x, polarity)``
    (multi-bit input: ``+-x`` or 0) of the input its slot selects; the input
    buffer, adder trees, accumulators and thresholds are :class:`MVU`'s.
    """

    LAYOUT = "group"

    def __init__(self, mask: np.ndarray, group: int, pe: int, simd: int, acc_shape: Shape, *,
                 polarity: np.ndarray, thresholds: np.ndarray | None = None,
                 input_bits: int = 1, bipolar: bool = True, levels_per_stage: int = 2,
                 weight_memory: str | None = None,
                 lutrom_max_depth: int = LUTROM_MAX_DEPTH) -> None:
        weights = sparse_weights(mask, polarity, pe=pe, simd=simd, input_bits=input_bits,
                                 levels_per_stage=levels_per_stage)
        self.kept, self.slot_bits, self.ragged, self._words = group_words(weights.bits, group,
                                                                          pe, simd)
        self.group = group
        super().__init__(weights, pe, simd, acc_shape, thresholds=thresholds,
                         input_bits=input_bits, bipolar=bipolar,
                         levels_per_stage=levels_per_stage, weight_memory=weight_memory,
                         lutrom_max_depth=lutrom_max_depth)

    def _columns(self, mw: int) -> int:
        return mw // self.group  # groups of G inputs

    def _slots(self) -> tuple[int, int]:
        return self.slot_bits, self.kept

    def _input_elems(self) -> int:
        return self.simd * self.group

    def weight_words(self) -> list[int]:
        """Slot memory words (:func:`group_words`)."""
        return self._words

    def _term(self, x: Value, valid: Value, pol: Value) -> Value:
        return SparseWeights.gathered_term(self, x, valid, pol)

    def _lanes(self, m: Module, x: Value, w: Value, nf: Value) -> list[list[Value]]:
        g, bits, n = self.group, self.input_bits, self.kept
        pos_bits = self.slot_bits - (1 if self.ragged else 0)
        pols = self.polarity_lanes(m, nf)
        constant = self.weight_memory == "constant"
        lanes = []
        for p in range(self.pe):
            terms = []
            for s in range(self.simd):
                xs = x[s * g * bits:(s + 1) * g * bits]
                for j in range(n):
                    at = ((p * self.simd + s) * n + j) * self.slot_bits
                    if constant:  # fixed positions: wires, and padding is no term at all
                        slot = (self._words[0] >> at) & ((1 << self.slot_bits) - 1)
                        if self.ragged and not slot >> pos_bits:
                            continue
                        pos = slot & ((1 << pos_bits) - 1)
                        terms.append(self._term(xs[pos * bits:(pos + 1) * bits], Const(1, 1),
                                                pols[p]))
                        continue
                    slot = w[at:at + self.slot_bits]
                    valid = slot[pos_bits] if self.ragged else Const(1, 1)
                    terms.append(self._term(xs.word_select(slot[:pos_bits], bits), valid,
                                            pols[p]))
            lanes.append(terms or [Const(0, 1)])
        return lanes
