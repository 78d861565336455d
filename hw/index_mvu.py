"""A sparse layer's MVU in the index layout: only the kept inputs' positions are stored.

The mask layout (one bit per weight) is the plain :class:`~bitfold.hw.mvu.MVU`;
this unit gathers each row's kept inputs from a double-buffered input vector
and skips the zeros (``compiler/cost.py`` and docs/ir.md give the trade-off).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from bitfold.compiler.memlayout import index_words, vector_beats

from .arith import reg
from .mvu import MVU
from .ranges import accumulator_range, check_accumulator, weight_memory_kind
from .streams import check_positive

__all__ = ["IndexMVU", "checked_mask"]


def checked_mask(mask: np.ndarray, polarity: np.ndarray, *, bipolar: bool, input_bits: int,
                 **positive: int) -> tuple[np.ndarray, np.ndarray]:
    """A sparse unit's ``(mask, polarity)`` as arrays; ``ValueError`` naming what is wrong."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0 or not np.isin(mask, (0, 1)).all():
        raise ValueError(f"mask must be a non-empty 2-D array of bits, not shape {mask.shape}")
    check_positive(input_bits=input_bits, **positive)
    polarity = np.asarray(polarity).astype(np.uint8)
    if polarity.shape != (mask.shape[0],):
        raise ValueError(f"polarity must have shape ({mask.shape[0]},), not {polarity.shape}")
    if bipolar and input_bits != 1:
        raise ValueError(f"bipolar input has input_bits=1, not {input_bits!r}")
    return mask, polarity


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

    def __init__(self, mask: np.ndarray, pe: int, simd: int, acc_shape: Shape, *,
                 polarity: np.ndarray, thresholds: np.ndarray | None = None, input_bits: int = 1,
                 bipolar: bool = True, levels_per_stage: int = 2,
                 in_elems: int | None = None, weight_memory: str | None = None) -> None:
        mask, polarity = checked_mask(mask, polarity, pe=pe, simd=simd, input_bits=input_bits,
                                      bipolar=bipolar, levels_per_stage=levels_per_stage)
        mh, mw = mask.shape
        self.index_bits, self.slot_bits, self._words = index_words(mask, pe, simd)
        self.ragged = self.slot_bits > self.index_bits
        k = max(1, int(mask.sum(axis=1).max()))
        acc_shape = Shape.cast(acc_shape)
        lo, hi = accumulator_range(mask, input_bits, bipolar, polarity)
        thresholds = check_accumulator(acc_shape, lo, hi, thresholds, mh)
        self.weights, self.thresholds = mask.astype(np.uint8), thresholds
        self.polarity, self.plane_scale, self.planes = polarity, None, 1
        self.mh, self.mw, self.pe, self.simd, self.kept = mh, mw, pe, simd, k
        self.nf, self.sf = mh // pe, k // simd
        self.input_bits, self.bipolar, self.acc_shape = input_bits, bipolar, acc_shape
        self.levels_per_stage = levels_per_stage
        self.weight_memory = weight_memory or weight_memory_kind(self.nf * self.sf)
        self.weight_width = pe * simd * self.slot_bits
        if in_elems is None:
            in_elems = vector_beats(mw, self.nf * self.sf)
        check_positive(in_elems=in_elems)
        if mw % in_elems:
            raise ValueError(f"in_elems must divide the input count {mw}, not {in_elems!r}")
        self.in_elems = in_elems
        out_shape = unsigned(pe) if thresholds is not None else unsigned(pe * acc_shape.width)
        wiring.Component.__init__(self, {
            "i_stream": In(stream.Signature(unsigned(in_elems * input_bits))),
            "o_stream": Out(stream.Signature(out_shape)),
        })

    def weight_words(self) -> list[int]:
        """Index memory words (:func:`index_words`)."""
        return self._words

    def _front(self, m: Module, en: Value) -> tuple[list[list[Value]], Value]:
        nf_n, sf_n, bits = self.nf, self.sf, self.input_bits
        i = self.i_stream
        beats = self.mw // self.in_elems

        # writer: input words into the free bank, in order
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

        # reader, stage 0: fold counters over a full bank
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

        pols = self._polarity(m, nf1)
        lanes = []
        for p in range(self.pe):
            terms = []
            for s_ in range(self.simd):
                slot = w.word_select(p * self.simd + s_, self.slot_bits)
                pos = slot[:self.index_bits]
                x = Mux(bank, banks[1].word_select(pos, bits), banks[0].word_select(pos, bits))
                valid = slot[self.index_bits] if self.ragged else Const(1, 1)
                if self.bipolar:
                    terms.append(valid & ~(x ^ pols[p]))
                else:
                    terms.append(Mux(valid, Mux(pols[p], x, -x), 0))
            lanes.append(terms)
        return lanes, ctl1
