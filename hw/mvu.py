"""The matrix-vector unit: PE x SIMD XNOR-popcount (or signed-add) lanes, folded (docs/architecture.md, 5).

One input vector of ``mw`` elements arrives as ``SF = mw / simd`` words of
``simd`` elements. For each of ``NF = mh / pe`` neuron folds the unit spends
``SF`` cycles, one word per cycle: ``pe`` neurons each combine ``simd`` inputs
with their weight bits, an adder tree (registered every few levels, so the
clock holds as ``simd`` grows) sums them, and an accumulator adds the ``SF``
partial sums. After the last word of a fold, the ``pe`` accumulators leave as
one output word, either compared with their thresholds (``acc >= T``, one bit
each, 1 means +1) or as integers. One output vector takes exactly
``NF * SF`` cycles; the input words are kept in a buffer for folds after the
first, which read it instead of the stream.

Bipolar input (``input_bits == 1``): the term is ``xnor(x, w)`` and the
accumulator a popcount; the first adder level is written as logic (a half adder
of two XNORs is two LUT4s), later levels are carry-chain adders. Unsigned
multi-bit input (the first layer): the exact sum of ``w ? x : -x`` is computed
as ``2 * sum(w & x) - sum(x)``: every lane adds only its gated inputs (no
negation, unsigned adders), and one adder tree per unit, shared by the ``pe``
lanes, sums the input word.

Thresholds are clamped to the accumulator's range (which leaves ``acc >= T``
unchanged) and sized to it, and read from a synchronous ROM one stage ahead of
the comparison.

A domain layer (``offset``) has one more adder tree, shared by the ``pe``
neurons, summing the input word's elements (bipolar: its bits), and each neuron
adds ``offset_scale * sum_p + offset[n] * sum_x`` to its accumulator.

The whole pipeline advances together (``en``) whenever its output register is
empty or being read, so nothing is lost or duplicated under backpressure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from bitfold.compiler.memlayout import (
    fold_words,
    offset_words,
    signed_bits,
    threshold_words,
    weight_words,
)

from .arith import add, as_signed, bits_on_wire, reg, wire
from .inbuf import input_banks
from .pairs import PAIR_MIN_PE, pair_correction, pair_terms
from .ranges import LUTROM_MAX_DEPTH, accumulator_range, check_accumulator, weight_memory_kind
from .streams import check_positive

__all__ = ["MVU", "accumulator_range"]

ALWAYS = Const(1)
CREDITS = 16  # output FIFO words of a credit-issued MVU: more than its results in flight


class _Result:
    """A result port the back end drives: ``valid`` and ``payload`` (a stream's, or a FIFO's
    write side)."""

    def __init__(self, valid: Signal, payload: Signal) -> None:
        self.valid, self.payload = valid, payload


class MVU(wiring.Component):
    """A folded matrix-vector unit with optional per-neuron thresholds.

    Parameters
    ----------
    weights : ndarray of 0/1, shape ``(mh, mw)``
        Weight bits (1 means +1), columns in the order the input streams them.
    pe, simd : int
        Neurons and inputs per cycle; must divide ``mh`` and ``mw``.
    acc_shape : Shape
        Shape of an accumulator (the IR type of the layer's output); checked to hold
        every reachable value.
    thresholds : ndarray of int, shape ``(mh,)``, optional
        When given, the output is one bit per neuron, ``acc >= thresholds``.
    input_bits : int
        Bits per input element.
    bipolar : bool
        True for bipolar input (bits, 1 means +1; ``input_bits`` must be 1), False
        for unsigned integers.
    levels_per_stage : int
        Adder-tree levels between pipeline registers.
    polarity : ndarray of 0/1, shape ``(mh,)``, optional
        A sparse layer (``compiler.ir.SparseDense``): ``weights`` is the mask and
        each neuron counts the masked inputs equal to its polarity (multi-bit:
        adds them, negated where the polarity is 0). Masked-out inputs are no
        terms at all where the weights are constants (``NF * SF == 1``).
    plane_scale : sequence of int, optional
        A composite layer (``compiler.ir.CompositeDense``): ``weights`` is
        ``(K, mh, mw)``; the ``K`` planes run as parallel lanes sharing each
        weight word, and their adder trees' sums are combined by constant
        shift-and-add, ``sum_k plane_scale[k] * sum_k``, before the accumulator.
    offset : sequence of int, optional
        A domain layer (``compiler.ir.DomainDense``): per neuron ``n`` the
        accumulator is ``offset_scale * A_n + offset[n] * X``, ``A_n`` the binary
        accumulator and ``X`` the input's sum (bipolar: its number of 1 bits), from
        one extra adder tree over the input word; the offsets come from a ROM read
        by the neuron fold (constants when ``NF == 1``).
    offset_scale : int
        The positive ``scale`` of a domain layer.
    weight_memory : str, optional
        Where the weights live: ``"constant"`` (one word), ``"lutrom"`` (LUT ROM, its
        output registered) or ``"bram"`` (block RAM read synchronously); the folding's
        cost model decides (``LayerCost.weight_memory``); by default chosen by depth.
    block_pes : int
        With ``"bram"``: the weights of the first ``block_pes`` PEs (the low
        ``block_pes * simd`` bits of each word) in a memory of their own that must be
        block RAM (``rom_style = "block"``); the rest is Yosys' to place, and it builds
        wide, shallow ROMs from LUTs (``LayerCost.block_pes``).
    register_reads : bool
        A pipeline register after the weight and input-buffer block-RAM reads: worth its
        flip-flops where the fabric's clock is fast (ECP5); on the iCE40, whose clock
        the score path and LUT depth limit first, the flip-flops would mostly sit in
        logic cells of their own.
    credit : bool
        Stall by credits instead of a global enable: the datapath registers run free (no
        clock enable, whose fan-out across thousands of flip-flops limits the clock of a
        large unit) and results go into an output FIFO of ``CREDITS`` words; the front
        issues a word only while every result in flight has a place there.
    """

    offset: list[int] | None = None  # a domain layer's offsets (units not built by __init__: none)
    offset_scale: int = 1
    shared_input_sum: bool = False  # multi-bit input: gated terms and one input-sum lane
    # multi-bit input, PE >= PAIR_MIN_PE, thresholds: terms from shared input pairs
    # (_pair_terms); per neuron, the paired terms' sum minus the true sum
    pair_correction: np.ndarray | None = None
    register_reads: bool = True  # a register after each block-RAM read (fast fabrics)
    block_pes: int = 0  # PEs whose weights are forced into block RAM
    credit: bool = False  # a free-running datapath, issue held by output credits
    _credits: tuple[Value, Signal] | None = None  # (may issue, issues a fold's last word)

    def __init__(self, weights: np.ndarray, pe: int, simd: int, acc_shape: Shape, *,
                 thresholds: np.ndarray | None = None, input_bits: int = 1, bipolar: bool = True,
                 levels_per_stage: int = 2, polarity: np.ndarray | None = None,
                 plane_scale: Sequence[int] | None = None, offset: Sequence[int] | None = None,
                 offset_scale: int = 1, weight_memory: str | None = None,
                 register_reads: bool = True, credit: bool = False, block_pes: int = 0) -> None:
        weights = np.asarray(weights)
        ndim = 3 if plane_scale is not None else 2
        if weights.ndim != ndim or weights.size == 0 or not np.isin(weights, (0, 1)).all():
            raise ValueError(f"weights must be a non-empty {ndim}-D array of bits, not shape "
                             f"{weights.shape}")
        if polarity is not None and plane_scale is not None:
            raise ValueError("a layer is sparse (polarity) or composite (plane_scale), not both")
        check_positive(pe=pe, simd=simd, input_bits=input_bits, levels_per_stage=levels_per_stage)
        mh, mw = weights.shape[-2:]
        if polarity is not None:
            polarity = np.asarray(polarity).astype(np.uint8)
            if polarity.shape != (mh,):
                raise ValueError(f"polarity must have shape ({mh},), not {polarity.shape}")
        if offset is not None:
            if polarity is not None or plane_scale is not None:
                raise ValueError("a domain layer (offset) is neither sparse nor composite")
            offset = [int(v) for v in np.asarray(offset).reshape(-1)]
            if len(offset) != mh:
                raise ValueError(f"offset must have {mh} entries (one per neuron), not "
                                 f"{len(offset)}")
            if isinstance(offset_scale, bool) or not isinstance(offset_scale, int | np.integer) \
                    or offset_scale < 1:
                raise ValueError(f"offset_scale must be a positive integer, not {offset_scale!r}")
            offset_scale = int(offset_scale)
        if plane_scale is not None:
            plane_scale = [int(m) for m in plane_scale]
            if len(plane_scale) != weights.shape[0] or min(plane_scale) < 1:
                raise ValueError(f"plane_scale must be {weights.shape[0]} positive integers, "
                                 f"not {plane_scale!r}")
        if mh % pe:
            raise ValueError(f"pe must divide the output count {mh}, not {pe!r}")
        if mw % simd:
            raise ValueError(f"simd must divide the input count {mw}, not {simd!r}")
        acc_shape = Shape.cast(acc_shape)
        if bipolar and input_bits != 1:
            raise ValueError(f"bipolar input has input_bits=1, not {input_bits!r}")
        lo, hi = accumulator_range(weights, input_bits, bipolar, polarity, plane_scale, offset,
                                   offset_scale)
        thresholds = check_accumulator(acc_shape, lo, hi, thresholds, mh)
        self.weights, self.thresholds = weights.astype(np.uint8), thresholds
        self.polarity, self.plane_scale = polarity, plane_scale
        self.offset, self.offset_scale = offset, offset_scale
        self.planes = 1 if plane_scale is None else len(plane_scale)
        self.mh, self.mw, self.pe, self.simd = mh, mw, pe, simd
        self.nf, self.sf = mh // pe, mw // simd
        self.input_bits, self.bipolar, self.acc_shape = input_bits, bipolar, acc_shape
        self.levels_per_stage = levels_per_stage
        self.shared_input_sum = not bipolar and polarity is None
        if self.shared_input_sum and plane_scale is None and offset is None \
                and thresholds is not None and pe >= PAIR_MIN_PE and simd >= 2:
            self.shared_input_sum = False
            self.pair_correction = pair_correction(self.weights, simd)
        self.weight_memory = self._weight_memory(weight_memory)
        self.register_reads, self.credit = bool(register_reads), bool(credit)
        self.weight_width = pe * simd * self.planes
        if block_pes and not (self.weight_memory == "bram" and self.planes == 1 and
                              0 < block_pes <= pe):
            raise ValueError(f"block_pes={block_pes} needs 1..{pe} PEs of a one-plane unit "
                             f"whose weights are in block RAM, not {self.weight_memory!r}")
        self.block_pes = block_pes
        out_shape = unsigned(pe) if thresholds is not None else unsigned(pe * acc_shape.width)
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(simd * input_bits))),
            "o_stream": Out(stream.Signature(out_shape)),
        })

    # ---------------------------------------------------------------- memories

    def _weight_memory(self, kind: str | None) -> str:
        """``kind`` (the folding's choice, ``compiler.cost``) checked, or the default by depth."""
        depth = self.nf * self.sf
        if kind is None:
            return weight_memory_kind(depth)
        if kind not in ("constant", "lutrom", "bram") or (kind == "constant") != (depth == 1):
            raise ValueError(f"weight_memory must be 'constant' for one word, else 'lutrom' or "
                             f"'bram'; not {kind!r} for {depth} words")
        return kind

    def weight_words(self) -> list[int]:
        """Weight memory words: address ``nf*SF + sf``, bit ``p*simd + s``."""
        return weight_words(self.weights, self.pe, self.simd)

    def _weights(self, m: Module, addr: Value, en: Value) -> Value:
        words = self.weight_words()
        width = self.weight_width
        if self.weight_memory == "constant":
            return Const(words[0], width)
        forced = self.block_pes * self.simd
        if forced:  # two memories: the low bits forced into block RAM, the rest Yosys' choice
            parts = []
            for name, lo, hi, attrs in (("weights_block", 0, forced, {"rom_style": "block"}),
                                        ("weights", forced, width, None)):
                if hi > lo:
                    mask = (1 << (hi - lo)) - 1
                    m.submodules[name] = part = memory.Memory(
                        shape=unsigned(hi - lo), depth=len(words),
                        init=[(w >> lo) & mask for w in words], attrs=attrs)
                    rd = part.read_port()
                    m.d.comb += [rd.addr.eq(addr), rd.en.eq(en)]
                    parts.append(rd.data)
            return Cat(*parts)
        m.submodules.weights = mem = memory.Memory(shape=unsigned(width), depth=len(words),
                                                    init=words)
        if self.weight_memory == "lutrom":
            rd = mem.read_port(domain="comb")
            m.d.comb += rd.addr.eq(addr)
            return reg(m, rd.data, en, "w_lut")
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(addr), rd.en.eq(en)]
        return rd.data

    def _fold_rom(self, m: Module, name: str, values, shape: Shape, nf: Value,
                  en: Value | None = None) -> list[Value]:
        """Each lane's value for fold ``nf`` of a per-neuron ROM (:func:`fold_words`); constants
        when ``NF == 1``. Read combinationally, or with ``en`` synchronously: the values of
        the ``nf`` of this cycle appear in the next cycle the pipeline advances."""
        values = [int(v) for v in np.asarray(values).reshape(-1)]
        if self.nf == 1:
            return [Const(v, shape) for v in values]
        # read synchronously and deeper than a LUT ROM: a block RAM (yosys would build a
        # few-kbit ROM from LUTs, a LUT4 per 16 bits plus the multiplexers)
        block = en is not None and self.nf > LUTROM_MAX_DEPTH
        m.submodules[name] = mem = memory.Memory(shape=unsigned(self.pe * shape.width),
                                                 depth=self.nf,
                                                 init=fold_words(values, self.pe, shape.width),
                                                 attrs={"rom_style": "block"} if block else None)
        if en is None:
            rd = mem.read_port(domain="comb")
        else:
            rd = mem.read_port()
            m.d.comb += rd.en.eq(en)
        m.d.comb += rd.addr.eq(nf)
        lanes = [rd.data.word_select(p, shape.width) for p in range(self.pe)]
        return [v.as_signed() for v in lanes] if shape.signed else lanes

    def _threshold(self, m: Module, nf: Value, en: Value) -> list[Value]:
        """Each lane's threshold of the fold that is ``nf`` this cycle, from the next advance on."""
        thresholds = self.thresholds
        if thresholds is None:
            raise ValueError("an MVU without thresholds has no threshold memory")
        if self.pair_correction is not None:  # paired terms: the accumulators are off by it
            thresholds = thresholds + self.pair_correction
        width, _ = threshold_words(thresholds, self.pe)
        return self._fold_rom(m, "thresholds", thresholds, signed(width), nf, en)

    # ---------------------------------------------------------------- datapath

    def _terms(self, m: Module, x: Value, w: Value, p: int, pol: Value | None = None
               ) -> list[Value]:
        """The ``simd`` terms of neuron lane ``p`` (of a plane's word ``w``), on wires."""
        wp = w.word_select(p, self.simd)
        b = self.input_bits
        xs = [x[s] if self.bipolar else x[s * b:(s + 1) * b] for s in range(self.simd)]
        if pol is not None:  # sparse: masked inputs equal to the polarity / +-x
            keep = range(self.simd)
            if self.weight_memory == "constant":  # constant mask: zeros are no terms at all
                keep = [s for s in keep if (self.weight_words()[0] >> (p * self.simd + s)) & 1]
            if not keep:
                return [Const(0, 1)]
            if self.bipolar:
                bits = wire(m, Cat(*[wp[s] & ~(xs[s] ^ pol) for s in keep]))
                return [bits[i] for i in range(len(keep))]
            return [Mux(wp[s], Mux(pol, xs[s], -xs[s]), 0) for s in keep]
        if self.bipolar:
            xnor = wire(m, ~(x ^ wp))
            return [xnor[s] for s in range(self.simd)]
        if self.shared_input_sum:  # w & x; the lane's sum becomes 2 S - X after the tree
            gated = wire(m, Cat(*[xs[s] & wp[s].replicate(b) for s in range(self.simd)]))
            return [gated[s * b:(s + 1) * b] for s in range(self.simd)]
        return [Mux(wp[s], xs[s], -xs[s]) for s in range(self.simd)]

    def _polarity(self, m: Module, nf: Value) -> list[Value]:
        """Each lane's polarity bit for fold ``nf`` (constants when ``NF == 1``)."""
        return self._fold_rom(m, "polarity", self.polarity, unsigned(1), nf)

    def _offsets(self, m: Module, nf: Value) -> list[Value]:
        """Each lane's domain offset for fold ``nf`` (constants when ``NF == 1``)."""
        width, _ = offset_words(self.offset, self.pe)
        return self._fold_rom(m, "offsets", self.offset, signed(width), nf)

    def _lanes(self, m: Module, x: Value, w: Value, nf: Value) -> list[list[Value]]:
        """The terms of every adder tree: ``pe`` lanes per plane, plane-major; a domain
        layer's input-sum lane last."""
        width = self.pe * self.simd
        pols = self._polarity(m, nf) if self.polarity is not None else [None] * self.pe
        lanes = [self._terms(m, x, w[k * width:(k + 1) * width], p, pols[p])
                 for k in range(self.planes) for p in range(self.pe)]
        if self.offset is not None or self.shared_input_sum:  # the input's elements
            b = self.input_bits
            lanes.append([x[s] if self.bipolar else x[s * b:(s + 1) * b]
                          for s in range(self.simd)])
        return lanes

    def _domain(self, m: Module, sums: list[Value], nf: Value) -> list[Value]:
        """``offset_scale * sum_p + offset[p] * sum_x`` per lane (``sum_x`` the last lane)."""
        offsets = self._offsets(m, nf)
        x_sum = sums[-1]
        return [s * self.offset_scale + off * x_sum
                for s, off in zip(sums[:-1], offsets, strict=True)]

    def _combine(self, sums: list[Value]) -> list[Value]:
        """Composite planes: ``sum_k plane_scale[k] * plane k's sum`` per lane (constant multiplies)."""
        if self.plane_scale is None:
            return sums
        out = []
        for p in range(self.pe):
            total = None
            for k, scale in enumerate(self.plane_scale):
                term = sums[k * self.pe + p] * scale
                total = term if total is None else total + term
            out.append(total)
        return out

    def _tree(self, m: Module, lanes: list[list[Value]], ctl: Value, en: Value
              ) -> tuple[list[Value], Value]:
        """Pairwise adder trees over every lane, registered every ``levels_per_stage`` levels.

        Lanes with fewer terms (pruned sparse ones) are padded with constant zeros, so
        every lane has the same pipeline depth; synthesis removes the additions of zero.
        """
        longest = max(len(t) for t in lanes)
        lanes = [t + [Const(0, 1)] * (longest - len(t)) for t in lanes]
        # one-bit terms feed the logic half adders, which read each input twice: on a wire
        lanes = [bits_on_wire(m, t) if all(len(v) == 1 for v in t) else t for t in lanes]
        level = 0
        while len(lanes[0]) > 1:
            lanes = [[add(m, t[i], t[i + 1]) if i + 1 < len(t) else t[i]
                      for i in range(0, len(t), 2)] for t in lanes]
            level += 1
            if level % self.levels_per_stage == 0 or len(lanes[0]) == 1:
                lanes = [[reg(m, v, en, f"tree{level}_p{p}_{i}") for i, v in enumerate(t)]
                         for p, t in enumerate(lanes)]
                ctl = reg(m, ctl, en, f"tree{level}_ctl", control=True)
        return [t[0] for t in lanes], ctl

    def elaborate(self, platform) -> Module:
        m = Module()
        if not self.credit:
            self._credits = None
            en = Signal()
            m.d.comb += en.eq(~self.o_stream.valid | self.o_stream.ready)
            lanes, ctl1 = self._front(m, en)
            self._back(m, lanes, ctl1, en, self.o_stream)
            return m
        # credits: the datapath never stalls; the front issues a word only while every
        # result in flight has a place in the output FIFO
        o = self.o_stream
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=len(o.payload), depth=CREDITS)
        res = _Result(Signal(name="res_valid"), Signal(len(o.payload), name="res_payload"))
        pending = Signal(range(CREDITS + 1))  # results issued and not yet taken
        issue, issued_last = Signal(), Signal()
        taken = o.valid & o.ready
        m.d.comb += [issue.eq(pending < CREDITS),
                     fifo.w_en.eq(res.valid), fifo.w_data.eq(res.payload),
                     o.valid.eq(fifo.r_rdy), o.payload.eq(fifo.r_data), fifo.r_en.eq(o.ready)]
        m.d.sync += pending.eq(pending + issued_last - taken)
        self._credits = (issue, issued_last)  # read by _front
        lanes, ctl1 = self._front(m, Const(1))
        self._back(m, lanes, ctl1, Const(1), res)
        return m

    def _ctl(self, active: Value, sf: Value, nf: Value) -> Value:
        """Control word of one cycle: valid, first and last word of a fold, the fold."""
        return Cat(active, sf == 0, sf == self.sf - 1, nf)

    def _front(self, m: Module, en: Value) -> tuple[list[list[Value]], Value]:
        """Fold counters, weights and inputs: every lane's terms and their control word.

        With one neuron fold the input word goes straight into the lanes. With more,
        input vectors are written into one bank of a two-bank buffer while the folds
        read the other, so the next vector streams in during the ``NF * SF`` compute
        cycles and no FIFO in front needs to hold a vector.
        """
        nf_n, sf_n = self.nf, self.sf
        i = self.i_stream
        issue, issued_last = self._credits if self._credits is not None else (ALWAYS, None)
        sf = Signal(range(sf_n))
        nf = Signal(range(nf_n))
        addr = Signal(range(nf_n * sf_n))
        if nf_n == 1:
            active = i.valid & issue
            m.d.comb += i.ready.eq(en & issue)
            x = reg(m, i.payload, en, "x_in")
        else:
            active, x = input_banks(m, self.i_stream, en, sf, nf, self.sf, self.nf, issue)
        if issued_last is not None:  # a word that completes a fold: one result
            m.d.comb += issued_last.eq(en & active & (sf == sf_n - 1))
        with m.If(en & active):  # stage 0: fold counters
            m.d.sync += [sf.eq(Mux(sf == sf_n - 1, 0, sf + 1)),
                         addr.eq(Mux(addr == nf_n * sf_n - 1, 0, addr + 1))]
            with m.If(sf == sf_n - 1):
                m.d.sync += nf.eq(Mux(nf == nf_n - 1, 0, nf + 1))

        # stage 1: weights and input word
        w = self._weights(m, addr, en)
        ctl1 = reg(m, self._ctl(active, sf, nf), en, "ctl1", control=True)
        if self.register_reads and (self.weight_memory == "bram" or nf_n > 1):
            w, x = reg(m, w, en, "w_q"), reg(m, x, en, "x_q")  # a block RAM's slow output
            ctl1 = reg(m, ctl1, en, "ctl_q", control=True)
        if self.pair_correction is not None:
            ctl = reg(m, reg(m, ctl1[:3], en, "ctl_pair", control=True), en, "ctl_term",
                      control=True)
            return self._pair_terms(m, x, w, en), ctl
        # the fold index stops here (the polarity ROM); the back end counts its own
        return self._lanes(m, x, w, ctl1[3:3 + len(nf)]), ctl1[:3]

    def _acc_hw(self) -> Shape:
        """The accumulators' shape: the layer's, or a paired layer's shifted range."""
        c = self.pair_correction
        if c is None:
            return self.acc_shape
        lo, hi = accumulator_range(self.weights, self.input_bits, False)
        return signed(max(signed_bits(lo + int(c.min())), signed_bits(hi + int(c.max()))))

    def _pair_terms(self, m: Module, x: Value, w: Value, en: Value) -> list[list[Value]]:
        """Every lane's terms from shared input pairs (:func:`.pairs.pair_terms`)."""
        return pair_terms(m, x, w, en, self.pe, self.simd, self.input_bits)

    def _back(self, m: Module, lanes: list[list[Value]], ctl1: Value, en: Value, o) -> None:
        """Adder trees, accumulation over ``SF`` cycles, thresholds, the output register."""
        sums, ctl = self._tree(m, lanes, ctl1, en)
        valid, first, last = ctl[0], ctl[1], ctl[2]
        nfi = Signal(range(self.nf), name="acc_nf")  # the fold being accumulated, in order
        nfi_next = Mux(nfi == self.nf - 1, 0, nfi + 1)
        if self.nf > 1:
            with m.If(en & valid & last):
                m.d.sync += nfi.eq(nfi_next)
        if self.shared_input_sum:  # sum(w ? x : -x) = 2 sum(w & x) - sum(x)
            x_sum = as_signed(sums[-1])
            sums = [(as_signed(v) << 1) - x_sum for v in sums[:-1]] + \
                ([sums[-1]] if self.offset is not None else [])
        sums = self._combine(sums) if self.offset is None else self._domain(m, sums, nfi)
        # after a fold's last word the accumulators hold its totals until the next `en`
        accs = []
        for p, s in enumerate(sums):
            acc = Signal(self._acc_hw(), name=f"acc{p}", reset_less=True)  # restarts at `first`
            with m.If(en & valid):
                m.d.sync += acc.eq(Mux(first, 0, acc) + s)
            accs.append(acc)
        done = reg(m, valid & last, en, "done", control=True)

        if self.thresholds is None:
            m.d.comb += [o.valid.eq(done),
                         o.payload.eq(Cat(*[a[:self.acc_shape.width] for a in accs]))]
            return
        if self.register_reads and self.nf > 1:
            # read ahead (the fold this cycle leaves accumulating) and register the word: the
            # block RAM's slow output is off the compare's path. The read port then always
            # holds the threshold of the fold in the accumulators; thr its copy a cycle later.
            ahead = Mux(valid & last, nfi_next, nfi)
            thr = [reg(m, v, en, f"thr{p}") for p, v in enumerate(self._threshold(m, ahead, en))]
        else:
            thr = self._threshold(m, nfi, en)  # read with the totals, ready beside them
        out_valid = reg(m, done, en, "out_valid", control=True)
        out_bits = reg(m, Cat(*[a >= th for a, th in zip(accs, thr, strict=True)]), en, "out_bits")
        m.d.comb += [o.valid.eq(out_valid), o.payload.eq(out_bits)]
