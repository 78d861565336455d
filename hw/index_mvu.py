"""A sparse layer's MVU in the index layout: only the kept inputs' positions are stored.

The mask layout (one bit per weight) is the plain :class:`~bitfold.hw.mvu.MVU`;
this unit gathers each row's kept inputs from a double-buffered input vector
and skips the zeros (``compiler/cost.py`` and docs/ir.md give the trade-off).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value

from bitfold.compiler.memlayout import index_words, vector_beats

from .arith import reg
from .mvu import MVU
from .ranges import LUTROM_MAX_DEPTH
from .streams import check_positive
from .weights import SparseWeights

__all__ = ["IndexMVU", "sparse_weights"]


def sparse_weights(mask: np.ndarray, polarity: np.ndarray, **positive: int) -> SparseWeights:
    """A sparse unit's weights, after checking ``positive`` (``ValueError`` naming what is
    wrong)."""
    check_positive(**positive)
    return SparseWeights(mask, polarity)


class IndexMVU(MVU):
    """A sparse layer's MVU in the index layout: it gathers the kept inputs and skips zeros.

    Each row stores only the positions of its kept inputs (see :func:`index_words`),
    ``SIMD`` per lane and cycle, so a vector takes ``NF * K / SIMD`` cycles (``K``
    the most non-zeros in a row), not ``NF * MW / SIMD``, and the weight memory
    holds ``MH * K`` positions of ``ceil(log2 MW)`` bits instead of ``MH * MW`` mask
    bits. The input vector arrives as ``MW / in_elems`` words into one of two
    register banks while the other is being read, so loading the next vector
    overlaps computing this one; each term gathers its input from the bank
    through a multiplexer, then counts it as the masked MVU does
    (``xnor(x, polarity)``, or ``+-x`` for multi-bit input) and the adder
    trees, accumulators and thresholds are :class:`MVU`'s.

    Trade-off (also in ``compiler.cost``): positions are fewer bits than the mask
    only when the density is below ``1 / ceil(log2 MW)`` (a row of density ``d``
    holds ``MW * H(d)`` bits of information, which the mask matches at ``d = 1/2``),
    and each gather costs a ``2 MW``-to-1 multiplexer, so the masked :class:`MVU`
    stays the cheaper unit at moderate sparsity; the folding prices both.

    ``in_elems`` (default: the fewest that load a vector within its compute cycles,
    :func:`vector_beats`) must divide ``MW``; a bank is released for the next vector
    once its last gather has moved on, so the unit never reads a half-written bank.
    """

    LAYOUT = "index"

    def __init__(self, mask: np.ndarray, pe: int, simd: int, acc_shape: Shape, *,
                 polarity: np.ndarray, thresholds: np.ndarray | None = None, input_bits: int = 1,
                 bipolar: bool = True, levels_per_stage: int = 2,
                 in_elems: int | None = None, weight_memory: str | None = None,
                 lutrom_max_depth: int = LUTROM_MAX_DEPTH) -> None:
        weights = sparse_weights(mask, polarity, pe=pe, simd=simd, input_bits=input_bits,
                                 levels_per_stage=levels_per_stage)
        mask = weights.bits
        mh, mw = mask.shape
        self.index_bits, self.slot_bits, self._words = index_words(mask, pe, simd)
        self.ragged = self.slot_bits > self.index_bits
        self.kept = max(1, int(mask.sum(axis=1).max()))
        if in_elems is None:
            in_elems = vector_beats(mw, (mh // pe) * (self.kept // simd))
        check_positive(in_elems=in_elems)
        if mw % in_elems:
            raise ValueError(f"in_elems must divide the input count {mw}, not {in_elems!r}")
        self.in_elems = in_elems
        super().__init__(weights, pe, simd, acc_shape, thresholds=thresholds,
                         input_bits=input_bits, bipolar=bipolar,
                         levels_per_stage=levels_per_stage, weight_memory=weight_memory,
                         lutrom_max_depth=lutrom_max_depth)

    def _columns(self, mw: int) -> int:
        return self.kept  # the kept inputs of the fullest row

    def _slots(self) -> tuple[int, int]:
        return self.slot_bits, 1

    def _input_elems(self) -> int:
        return self.in_elems

    def weight_words(self) -> list[int]:
        """Index memory words (:func:`index_words`)."""
        return self._words

    def _writer(self, m: Module) -> tuple[list[Signal], list[Signal], Signal, Signal]:
        """Input words into the free bank, in order: ``(banks, full, wr_bank, held)``;
        ``held`` (driven by the reader) stalls the writer while stage 1 keeps gathering
        from the bank it would write."""
        bits, i = self.input_bits, self.i_stream
        beats = self.mw // self.in_elems
        banks = [Signal(self.mw * bits, name=f"bank{b}") for b in range(2)]
        full = [Signal(name=f"full{b}") for b in range(2)]
        wr_bank = Signal()
        wr_beat = Signal(range(beats))
        held = Signal()  # stage 1 keeps gathering from the writer's bank next cycle
        m.d.comb += i.ready.eq(~Mux(wr_bank, full[1], full[0]) & ~held)
        with m.If(i.valid & i.ready):
            for b in range(2):
                with m.If(wr_bank == b):
                    word = banks[b] if beats == 1 else \
                        banks[b].word_select(wr_beat, self.in_elems * bits)
                    m.d.sync += word.eq(i.payload)
            m.d.sync += wr_beat.eq(Mux(wr_beat == beats - 1, 0, wr_beat + 1))
            with m.If(wr_beat == beats - 1):
                m.d.sync += wr_bank.eq(~wr_bank)
                for b in range(2):
                    with m.If(wr_bank == b):
                        m.d.sync += full[b].eq(1)
        return banks, full, wr_bank, held

    def _front(self, m: Module, en: Value) -> tuple[list[list[Value]], Value]:
        """The reader: fold counters over a full bank, the positions, the gathered terms."""
        nf_n, sf_n, bits = self.nf, self.sf, self.input_bits
        banks, full, wr_bank, held = self._writer(m)

        # stage 0: fold counters over a full bank
        rd_bank = Signal()
        sf = Signal(range(sf_n))
        nf = Signal(range(nf_n))
        addr = Signal(range(nf_n * sf_n))
        active = Mux(rd_bank, full[1], full[0])
        last_of_vector = (nf == nf_n - 1) & (sf == sf_n - 1)
        with m.If(en & active):
            m.d.sync += [sf.eq(Mux(sf == sf_n - 1, 0, sf + 1)),
                         addr.eq(Mux(addr == nf_n * sf_n - 1, 0, addr + 1))]
            with m.If(sf == sf_n - 1):
                m.d.sync += nf.eq(Mux(nf == nf_n - 1, 0, nf + 1))
            with m.If(last_of_vector):  # the bank is free once its last gather moves on
                m.d.sync += rd_bank.eq(~rd_bank)
                for b in range(2):
                    with m.If(rd_bank == b):
                        m.d.sync += full[b].eq(0)

        # stage 1: positions; gather from the bank (combinationally, so a write may land
        # in the same cycle as the bank's last gather, but not while that gather is held)
        w = self._weights(m, addr, en)
        ctl1 = reg(m, Cat(self._ctl(active, sf, nf), rd_bank), en, "ctl1", control=True)
        nf_bits = len(nf)
        nf1, bank = ctl1[3:3 + nf_bits], ctl1[3 + nf_bits]
        m.d.comb += held.eq(~en & ctl1[0] & (bank == wr_bank))

        pols = self.polarity_lanes(m, nf1)
        lanes = []
        for p in range(self.pe):
            terms = []
            for s_ in range(self.simd):
                slot = w.word_select(p * self.simd + s_, self.slot_bits)
                pos = slot[:self.index_bits]
                x = Mux(bank, banks[1].word_select(pos, bits), banks[0].word_select(pos, bits))
                valid = slot[self.index_bits] if self.ragged else Const(1, 1)
                terms.append(SparseWeights.gathered_term(self, x, valid, pols[p]))
            lanes.append(terms)
        return lanes, ctl1
