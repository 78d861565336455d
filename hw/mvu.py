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

What a domain, sparse or composite layer's weights mean is its encoding's
(:mod:`.weights`); a two-frame unit (``frames=2``) is :mod:`.frames`'. The whole
pipeline advances together (``en``) whenever its output register is empty or
being read (or, with ``credit``, never stalls), so nothing is lost or duplicated.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from bitfold.compiler.cost import CREDITS
from bitfold.compiler.memlayout import (
    signed_bits,
    threshold_words,
    weight_geometry,
    weight_memory_kind,
    weight_words,
)

from .arith import adder_trees, as_signed, reg
from .frames import FRAMES, Unpair, pair_banks
from .inbuf import input_banks
from .pairs import PAIR_MIN_PE, pair_correction, pair_terms
from .ranges import LUTROM_MAX_DEPTH, check_accumulator
from .roms import fold_rom, weight_memory
from .streams import check_positive
from .weights import BinaryWeights, UnitWeights

__all__ = ["MVU"]


class MVU(wiring.Component):
    """A folded matrix-vector unit with optional per-neuron thresholds.

    Parameters
    ----------
    weights : UnitWeights, or ndarray of 0/1, shape ``(mh, mw)``
        The weight encoding (:mod:`.weights`: binary, sparse, composite, domain), its
        columns in the order the input streams them; bits alone are binary weights.
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
    lutrom_max_depth : int
        The deepest per-neuron ROM (thresholds) read from LUTs; deeper ones are block RAM
        (the device's ``ResourceModel.lutrom_max_depth``, as the cost model counts); also
        the deepest LUT-ROM weight memory when ``weight_memory`` is not given.
    frames : int
        2: each weight word serves two frames in flight (:mod:`.frames`): twice the lanes,
        ``NF * SF`` cycles per two frames; needs the dense layout, ``NF >= 2`` and
        ``SF >= 2`` (the input and output streams carry one frame at a time).

    The index, group and serial layouts (:mod:`.index_mvu`, :mod:`.group_mvu`,
    :mod:`.serial_mvu`) are subclasses sharing this constructor: a layout says what
    ``SIMD`` folds (:meth:`_columns`), its weight slots (:meth:`_slots`) and its input
    word (:meth:`_input_elems`); :func:`~bitfold.compiler.memlayout.weight_geometry` gives
    the folds and the weight memory of each.
    """

    LAYOUT: ClassVar[str] = "dense"  # the weight memory's layout (compiler.memlayout)
    GATED_INPUTS: ClassVar[bool] = True  # multi-bit input may take gated terms and an input sum
    # multi-bit input, PE >= PAIR_MIN_PE, thresholds: terms from shared input pairs
    # (_pair_terms); per neuron, the paired terms' sum minus the true sum
    pair_correction: np.ndarray | None = None
    _credits: tuple[Value, Signal] | None = None  # (may issue, issues a fold's last word)
    _roms: dict[str, list[Value]]  # the per-neuron ROMs built (fold_rom)

    def __init__(self, weights: UnitWeights | np.ndarray, pe: int, simd: int,
                 acc_shape: Shape, *, thresholds: np.ndarray | None = None, input_bits: int = 1,
                 bipolar: bool = True, levels_per_stage: int = 2,
                 weight_memory: str | None = None, register_reads: bool = True,
                 credit: bool = False, block_pes: int = 0,
                 lutrom_max_depth: int = LUTROM_MAX_DEPTH, frames: int = 1) -> None:
        enc = weights if isinstance(weights, UnitWeights) else BinaryWeights(weights)
        check_positive(pe=pe, simd=simd, input_bits=input_bits, levels_per_stage=levels_per_stage)
        mh, mw = enc.shape
        if mh % pe:
            raise ValueError(f"pe must divide the output count {mh}, not {pe!r}")
        if self._columns(mw) % simd:
            raise ValueError(f"simd must divide the input count {mw}, not {simd!r}")
        if bipolar and input_bits != 1:
            raise ValueError(f"bipolar input has input_bits=1, not {input_bits!r}")
        acc_shape = Shape.cast(acc_shape)
        lo, hi = enc.acc_range(input_bits, bipolar)
        self.thresholds = check_accumulator(acc_shape, lo, hi, thresholds, mh)
        self.enc, self.weights, self.planes = enc, enc.bits, enc.planes
        self.polarity, self.plane_scale = enc.polarity, enc.plane_scale
        self.offset, self.offset_scale = enc.offset, enc.offset_scale
        self.mh, self.mw, self.pe, self.simd = mh, mw, pe, simd
        slot_bits, kept = self._slots()
        self.nf, self.sf, depth, self.weight_width = weight_geometry(
            self.LAYOUT, mh, self._columns(mw), pe, simd, enc.planes, slot_bits, kept)
        self.input_bits, self.bipolar, self.acc_shape = input_bits, bipolar, acc_shape
        self.levels_per_stage, self.lutrom_max_depth = levels_per_stage, lutrom_max_depth
        self.shared_input_sum = not bipolar and enc.GATES_MULTIBIT and self.GATED_INPUTS
        if self.shared_input_sum and enc.PAIRS and self.thresholds is not None \
                and pe >= PAIR_MIN_PE and simd >= 2:
            self.shared_input_sum = False
            self.pair_correction = pair_correction(self.weights, simd)
        self.weight_memory = self._weight_memory(weight_memory, depth)
        self.register_reads, self.credit = bool(register_reads), bool(credit)
        if block_pes and not (self.weight_memory == "bram" and self.planes == 1 and
                              0 < block_pes <= pe):
            raise ValueError(f"block_pes={block_pes} needs 1..{pe} PEs of a one-plane unit "
                             f"whose weights are in block RAM, not {self.weight_memory!r}")
        self.block_pes = block_pes
        bad_frames = frames == 2 and (self.LAYOUT != "dense" or min(self.nf, self.sf) < 2)
        if frames not in FRAMES or bad_frames:
            raise ValueError(f"frames must be 1, or 2 for the dense layout with NF >= 2 and "
                             f"SF >= 2, not {frames!r} (NF={self.nf}, SF={self.sf})")
        self.frames = frames
        out_shape = unsigned(pe) if thresholds is not None else unsigned(pe * acc_shape.width)
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self._input_elems() * input_bits))),
            "o_stream": Out(stream.Signature(out_shape)),
        })

    # ---------------------------------------------------------------- the layout

    def _columns(self, mw: int) -> int:
        """What ``SIMD`` folds: the inputs per row."""
        return mw

    def _slots(self) -> tuple[int, int]:
        """``(slot bits, slots per SIMD lane)`` of the weight word (a bit a weight here)."""
        return 1, 1

    def _input_elems(self) -> int:
        """Elements per input word."""
        return self.simd

    # ---------------------------------------------------------------- memories

    def _weight_memory(self, kind: str | None, depth: int) -> str:
        """``kind`` (the folding's choice, ``compiler.cost``) checked, or the default by depth."""
        if kind is None:
            return weight_memory_kind(depth, self.lutrom_max_depth)
        if kind not in ("constant", "lutrom", "bram") or (kind == "constant") != (depth == 1):
            raise ValueError(f"weight_memory must be 'constant' for one word, else 'lutrom' or "
                             f"'bram'; not {kind!r} for {depth} words")
        return kind

    def weight_words(self) -> list[int]:
        """Weight memory words: address ``nf*SF + sf``, bit ``p*simd + s``."""
        return weight_words(self.weights, self.pe, self.simd)

    def _weights(self, m: Module, addr: Value, en: Value) -> Value:
        """The weight word at ``addr`` (:func:`.roms.weight_memory`)."""
        return weight_memory(m, self.weight_words(), self.weight_width, self.weight_memory,
                             self.block_pes * self.simd, addr, en)

    def fold_rom(self, m: Module, name: str, values, shape: Shape, nf: Value,
                 en: Value | None = None) -> list[Value]:
        """Each lane's value for fold ``nf`` of a per-neuron ROM (:func:`.roms.fold_rom`); built
        once, as the frames of a two-frame unit read the same fold."""
        if name not in self._roms:
            self._roms[name] = fold_rom(m, name, values, shape, nf, self.nf, self.pe,
                                        self.lutrom_max_depth, en)
        return self._roms[name]

    def _threshold(self, m: Module, nf: Value, en: Value) -> list[Value]:
        """Each lane's threshold of the fold that is ``nf`` this cycle, from the next advance on."""
        thresholds = self.thresholds
        if thresholds is None:
            raise ValueError("an MVU without thresholds has no threshold memory")
        if self.pair_correction is not None:  # paired terms: the accumulators are off by it
            thresholds = thresholds + self.pair_correction
        width, _ = threshold_words(thresholds, self.pe)
        return self.fold_rom(m, "thresholds", thresholds, signed(width), nf, en)

    # ---------------------------------------------------------------- datapath

    def polarity_lanes(self, m: Module, nf: Value) -> list[Value]:
        """Each lane's polarity bit for fold ``nf`` of a sparse layer (constants when ``NF == 1``)."""
        return self.fold_rom(m, "polarity", self.polarity, unsigned(1), nf)

    def _lanes(self, m: Module, x: Value, w: Value, nf: Value) -> list[list[Value]]:
        """The terms of every adder tree: ``pe`` lanes per plane, plane-major; a domain
        layer's input-sum lane last."""
        width = self.pe * self.simd
        pols = self.enc.fold_lanes(self, m, nf)
        lanes = [self.enc.terms(self, m, x, w[k * width:(k + 1) * width], p, pols[p])
                 for k in range(self.planes) for p in range(self.pe)]
        if self.enc.KEEPS_INPUT_SUM or self.shared_input_sum:  # the input's elements
            b = self.input_bits
            lanes.append([x[s] if self.bipolar else x[s * b:(s + 1) * b]
                          for s in range(self.simd)])
        return lanes

    def _combine(self, m: Module, sums: list[Value], nf: Value) -> list[Value]:
        """Each lane's value for its accumulator (composite planes, domain offsets: the
        encoding's :meth:`~.weights.UnitWeights.combine`)."""
        return self.enc.combine(self, m, sums, nf)

    def _tree(self, m: Module, lanes: list[list[Value]], ctl: Value, en: Value
              ) -> tuple[list[Value], Value]:
        """Every lane's adder tree (:func:`.arith.adder_trees`)."""
        return adder_trees(m, lanes, ctl, en, self.levels_per_stage)

    def elaborate(self, platform) -> Module:
        m = Module()
        self._roms: dict[str, list[Value]] = {}
        o = self.o_stream
        if self.frames == 2:  # both frames' words of a fold, then one frame at a time
            m.submodules.unpair = unpair = Unpair(len(o.payload), self.nf)
            wiring.connect(m, unpair.o_stream, wiring.flipped(o))
            o = unpair.i_stream
        if not self.credit:
            self._credits = None
            en = Signal()
            m.d.comb += en.eq(~o.valid | o.ready)
            lanes, ctl1 = self._front(m, en)
            self._back(m, lanes, ctl1, en, o)
            return m
        # credits: the datapath never stalls; the front issues a word only while every
        # result in flight has a place in the output FIFO
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=len(o.payload), depth=CREDITS)
        res = SimpleNamespace(valid=Signal(name="res_valid"),  # the FIFO's write side
                              payload=Signal(len(o.payload), name="res_payload"))
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

    def _ctl(self, active: Value, sf: Value, nf: Value, *tag: Value) -> Value:
        """A cycle's control: valid, a fold's first and last word, (frames=2: the tag,) the fold."""
        return Cat(active, sf == 0, sf == self.sf - 1, *tag, nf)

    def _front(self, m: Module, en: Value) -> tuple[list[list[Value]], Value]:
        """Fold counters, weights and inputs: every lane's terms and their control word.

        With one neuron fold the input word goes straight into the lanes. With more,
        input vectors are written into one bank of a two-bank buffer while the folds
        read the other, so the next vector streams in during the ``NF * SF`` compute
        cycles and no FIFO in front needs to hold a vector.
        """
        nf_n, sf_n = self.nf, self.sf
        i = self.i_stream
        issue, issued_last = self._credits if self._credits is not None else (Const(1), None)
        sf = Signal(range(sf_n))
        nf = Signal(range(nf_n))
        addr = Signal(range(nf_n * sf_n))
        tag: tuple[Value, ...] = ()  # frames=2: Cat(lone, first) of the pass (hw.frames)
        if nf_n == 1:
            active = i.valid & issue
            m.d.comb += i.ready.eq(en & issue)
            x = reg(m, i.payload, en, "x_in")
        elif self.frames == 2:
            active, x, pass_tag = pair_banks(m, i, en, sf, nf, sf_n, nf_n, issue)
            tag = (pass_tag,)
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
        ctl1 = reg(m, self._ctl(active, sf, nf, *tag), en, "ctl1", control=True)
        if self.register_reads and (self.weight_memory == "bram" or nf_n > 1):
            w, x = reg(m, w, en, "w_q"), reg(m, x, en, "x_q")  # a block RAM's slow output
            ctl1 = reg(m, ctl1, en, "ctl_q", control=True)
        c = 3 + sum(len(v) for v in tag)  # the fold index stops here (the polarity ROM); the back end
        xs = [x] if self.frames == 1 else [x[:len(x) // 2], x[len(x) // 2:]]  # counts its own
        if self.pair_correction is not None:
            ctl = reg(m, reg(m, ctl1[:c], en, "ctl_pair", control=True), en, "ctl_term",
                      control=True)
            return [t for xf in xs for t in self._pair_terms(m, xf, w, en)], ctl
        return [t for xf in xs for t in self._lanes(m, xf, w, ctl1[c:c + len(nf)])], ctl1[:c]

    def _acc_hw(self) -> Shape:
        """The accumulators' shape: the layer's, or a paired layer's shifted range."""
        c = self.pair_correction
        if c is None:
            return self.acc_shape
        lo, hi = self.enc.acc_range(self.input_bits, False)
        return signed(max(signed_bits(lo + int(c.min())), signed_bits(hi + int(c.max()))))

    def _pair_terms(self, m: Module, x: Value, w: Value, en: Value) -> list[list[Value]]:
        """Every lane's terms from shared input pairs (:func:`.pairs.pair_terms`)."""
        return pair_terms(m, x, w, en, self.pe, self.simd, self.input_bits)

    def _frame_sums(self, m: Module, sums: list[Value], nfi: Value) -> list[Value]:
        """One frame's values for its accumulators, from its lanes' sums."""
        if self.shared_input_sum:  # sum(w ? x : -x) = 2 sum(w & x) - sum(x)
            x_sum = as_signed(sums[-1])
            sums = [(as_signed(v) << 1) - x_sum for v in sums[:-1]] + \
                ([sums[-1]] if self.enc.KEEPS_INPUT_SUM else [])
        return self._combine(m, sums, nfi)

    def _back(self, m: Module, lanes: list[list[Value]], ctl1: Value, en: Value, o) -> None:
        """Adder trees, accumulation over ``SF`` cycles, thresholds, the output register."""
        sums, ctl = self._tree(m, lanes, ctl1, en)
        valid, first, last = ctl[0], ctl[1], ctl[2]
        nfi = Signal(range(self.nf), name="acc_nf")  # the fold being accumulated, in order
        nfi_next = Mux(nfi == self.nf - 1, 0, nfi + 1)
        if self.nf > 1:
            with m.If(en & valid & last):
                m.d.sync += nfi.eq(nfi_next)
        per = len(sums) // self.frames  # each frame's lanes, then the next frame's
        sums = [v for f in range(self.frames)
                for v in self._frame_sums(m, sums[f * per:(f + 1) * per], nfi)]
        # after a fold's last word the accumulators hold its totals until the next `en`
        accs = []
        for p, s in enumerate(sums):
            acc = Signal(self._acc_hw(), name=f"acc{p}", reset_less=True)  # restarts at `first`
            with m.If(en & valid):
                m.d.sync += acc.eq(Mux(first, 0, acc) + s)
            accs.append(acc)
        done = reg(m, valid & last, en, "done", control=True)
        tag = [reg(m, ctl[3:5], en, "tag")] if self.frames == 2 else []  # beside `done`

        if self.thresholds is None:
            m.d.comb += [o.valid.eq(done),
                         o.payload.eq(Cat(*[a[:self.acc_shape.width] for a in accs], *tag))]
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
        out_bits = reg(m, Cat(*[a >= thr[p % self.pe] for p, a in enumerate(accs)], *tag), en,
                       "out_bits")
        m.d.comb += [o.valid.eq(out_valid), o.payload.eq(out_bits)]
