"""The output stage: integer class scores ``scale[c] * acc[c] + bias[c]`` and their argmax.

The unit streams its result out narrow, one beat per class (:func:`result_layout`):
beat ``c`` carries score ``c`` as soon as it is computed and the argmax of the
scores so far, so the beat of the last class carries the frame's class and
``last``. No register holds all scores, and the output takes one beat per input
accumulator: ``classes`` beats per frame, the score unit's own rate in the
compiler's cycle model, so the output never becomes the bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Array, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .names import class_bits

__all__ = ["MUL_BITS", "ScoreArgMax", "fit_shape", "result_layout", "score_widths"]

MUL_BITS = 16  # the widest unsigned operand one DSP multiplier takes (iCE40 SB_MAC16: 16x16)


def result_layout(score_bits: int, cbits: int) -> data.StructLayout:
    """One output beat: ``score`` (signed), ``argmax`` (the running class index), ``last``.

    Bits ``[0, score_bits)`` are the score, the next ``cbits`` the index, the top
    bit ``last`` (set on the beat of the last class).
    """
    return data.StructLayout({"score": signed(score_bits), "argmax": unsigned(cbits),
                              "last": unsigned(1)})


def fit_shape(lo: int, hi: int) -> Shape:
    """The narrowest shape holding every integer in ``lo .. hi`` (unsigned if ``lo >= 0``)."""
    if lo >= 0:
        return unsigned(max(1, hi.bit_length()))
    return signed(max(hi.bit_length(), (-lo - 1).bit_length()) + 1)


def _range(shape: Shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def score_widths(scale: Sequence[int], bias: Sequence[int], acc_shape: Shape,
                 score_bits: int) -> tuple[int, Shape, Shape, int]:
    """The datapath of :class:`ScoreArgMax`: shift, multiplier operand, product and sum widths.

    The scales share ``2**shift`` (their common trailing zeros), so the multiplier
    takes ``scale >> shift``. The sum is exact over the accumulator's range but
    never wider than ``score_bits`` (every score fits them, so arithmetic modulo
    ``2**sum_bits`` is exact); the product is no wider than the sum for the same
    reason.

    Returns
    -------
    shift : int
    operand : Shape
        The shifted scale constants.
    product : Shape
        ``acc * (scale >> shift)``.
    sum_bits : int
        Signed bits of ``scale * acc + bias``.
    """
    lo, hi = _range(Shape.cast(acc_shape))
    shift = min(((v & -v).bit_length() - 1 for v in scale if v), default=0)
    op = [v >> shift for v in scale]
    ends = [v * a for v in op for a in (lo, hi)]
    sums = [(v << shift) * a + b for v, b in zip(op, bias, strict=True) for a in (lo, hi)]
    sum_bits = min(score_bits, fit_shape(min(sums + [-1]), max(sums)).width)
    product = fit_shape(min(ends + [0]), max(ends))
    if product.width + shift > sum_bits:
        product = signed(max(1, sum_bits - shift))
    return shift, fit_shape(min(op + [0]), max(op)), product, sum_bits


def _rom(values: list[int], shape: Shape, index: Signal):
    """``values[index]``: constants selected by a class index (a constant for one class)."""
    if len(values) == 1:
        return Const(values[0], shape)
    return Array(Const(v, shape) for v in values)[index]


class ScoreArgMax(wiring.Component):
    """Scores and argmax of a vector of accumulators, one class per cycle, one beat per class.

    Input: one accumulator (``acc_shape``) per word, ``classes`` words per frame.
    Output: one :func:`result_layout` beat per input word: the score of that
    class (``score_bits`` signed bits, class 0 first), the index of the highest
    score so far (lowest of tied maxima) and ``last`` on the frame's last class.

    A pipeline of four registers that all advance unless the output stalls: the
    accumulator with its class's (shifted) scale, the product (a DSP multiplier
    where the device has one), the sum with the class's bias, then the sum with
    its "takes the lead" bit, which is the output beat (its argmax a 2:1 select
    of registers).

    The running maximum is the one recurrence. Its compare is taken off the loop:
    while a sum waits in the register before the output, the next sum is compared
    with both candidates for the best it will meet (that sum, and the best before
    it), so the loop itself is a 1-bit select.
    """

    def __init__(self, scale: Sequence[int], bias: Sequence[int], acc_shape: Shape,
                 score_bits: int, split_products: bool = True) -> None:
        scale, bias = [int(v) for v in scale], [int(v) for v in bias]
        if not scale or len(scale) != len(bias):
            raise ValueError(f"scale and bias must be non-empty and of one length, not "
                             f"{len(scale)} and {len(bias)}")
        if not isinstance(score_bits, int) or score_bits < 2:
            raise ValueError(f"score_bits must be an integer >= 2, not {score_bits!r}")
        self.scale, self.bias = scale, bias
        self.classes = len(scale)
        self.acc_shape = Shape.cast(acc_shape)
        self.score_bits = score_bits
        self.split_products = bool(split_products)
        self.cbits = class_bits(self.classes)
        self.widths = score_widths(scale, bias, self.acc_shape, score_bits)
        super().__init__({
            "i_stream": In(stream.Signature(self.acc_shape)),
            "o_stream": Out(stream.Signature(result_layout(score_bits, self.cbits))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self.classes
        i, o = self.i_stream, self.o_stream
        shift, op_shape, prod_shape, sb = self.widths
        en = Signal()  # every register advances unless the output holds a word not taken
        m.d.comb += [en.eq(~o.valid | o.ready), i.ready.eq(en)]
        count = Signal(range(n))
        # with split_products (fast fabrics), an operand wider than a DSP's port (16 bits on
        # the iCE40, 18 signed on the ECP5) is split in two products, each one DSP with its
        # own output register, added a stage later; else synthesis splits it (no register)
        split = self.split_products and op_shape.width > MUL_BITS
        depth = 4 if split else 3
        valid = [Signal(name=f"valid{k}") for k in range(depth)]
        cls = [Signal(range(n), name=f"cls{k}") for k in range(depth)]
        # the datapath has no reset (the valid bits qualify it), so a DSP block can take the
        # multiplier's operand and product registers in
        acc, operand = Signal(self.acc_shape, reset_less=True), Signal(op_shape, reset_less=True)
        prod, total = Signal(prod_shape, reset_less=True), Signal(signed(sb), reset_less=True)
        ops = [v >> shift for v in self.scale]
        # the bias modulo 2**sb: the sum is exact modulo 2**sb and every score fits sb bits
        biases = [(v + (1 << (sb - 1))) % (1 << sb) - (1 << (sb - 1)) for v in self.bias]
        with m.If(en):
            with m.If(i.valid):
                m.d.sync += count.eq(Mux(count == n - 1, 0, count + 1))
            m.d.sync += [valid[0].eq(i.valid), cls[0].eq(count),
                         *(v.eq(u) for u, v in zip(valid, valid[1:], strict=False)),
                         *(v.eq(u) for u, v in zip(cls, cls[1:], strict=False)),
                         acc.eq(i.payload), operand.eq(_rom(ops, op_shape, count)),
                         total.eq((prod << shift) + _rom(biases, signed(sb), cls[-2]))]
            if split:
                lo = Signal(signed(self.acc_shape.width + MUL_BITS + 1), reset_less=True)
                hi = Signal(signed(self.acc_shape.width + op_shape.width - MUL_BITS + 1),
                            reset_less=True)
                top = operand[MUL_BITS:]  # the high part keeps the operand's sign
                top = top.as_signed() if op_shape.signed else top
                m.d.sync += [lo.eq(acc * operand[:MUL_BITS]), hi.eq(acc * top),
                             prod.eq(lo + (hi << MUL_BITS))]
            else:
                m.d.sync += prod.eq(acc * operand)
        self._select(m, en, valid[-1], cls[-1], total)
        return m

    def _select(self, m: Module, en: Signal, valid: Signal, cls: Signal, total: Signal) -> None:
        """The running argmax; stage R is the output beat.

        ``total``/``cls``/``valid`` (stage P) move into stage R (``r_total``, ``r_cls``,
        ``r_valid``) with ``r_take``: whether R's sum beats every earlier sum of its
        frame (or is its first class). When R leaves as the output beat, it updates
        ``best`` if it takes the lead. P's lead bit compares P
        with the best R leaves behind: R's sum if R takes the lead, else ``best``;
        both compares read registers only.
        """
        o = self.o_stream
        r_total = Signal.like(total, name="r_total")
        r_cls, r_valid, r_take = Signal.like(cls, name="r_cls"), Signal(), Signal()
        best, best_cls = Signal.like(total, name="best"), Signal.like(cls, name="best_cls")
        r_leads = Signal()
        m.d.comb += r_leads.eq(r_valid & r_take)
        # a > b as the sign of b - a: one carry chain (yosys maps a compare less directly)
        beats = Mux(r_leads, (r_total - total)[-1], (best - total)[-1])
        m.d.comb += [o.valid.eq(r_valid), o.payload.score.eq(r_total),
                     o.payload.argmax.eq(Mux(r_take, r_cls, best_cls)),
                     o.payload.last.eq(r_cls == self.classes - 1)]
        with m.If(en):  # R leaves (as the output beat) and P moves in
            m.d.sync += r_valid.eq(valid)
            with m.If(valid):
                m.d.sync += [r_total.eq(total), r_cls.eq(cls), r_take.eq((cls == 0) | beats)]
            with m.If(r_leads):
                m.d.sync += [best.eq(r_total), best_cls.eq(r_cls)]
