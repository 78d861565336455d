"""The output stage: integer class scores ``scale[c] * acc[c] + bias[c]`` and their argmax."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .names import class_bits

__all__ = ["ScoreArgMax"]


class ScoreArgMax(wiring.Component):
    """Scores and argmax of a vector of accumulators, one class per cycle.

    Input: one accumulator (``acc_shape``) per word, ``classes`` words per frame.
    Output: one word per frame, the class index (lowest of tied maxima) in the
    low ``class_bits(classes)`` bits, then the ``classes`` scores of
    ``score_bits`` signed bits each, class 0 first.
    """

    def __init__(self, scale: Sequence[int], bias: Sequence[int], acc_shape: Shape,
                 score_bits: int) -> None:
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
        self.cbits = class_bits(self.classes)
        super().__init__({
            "i_stream": In(stream.Signature(self.acc_shape)),
            "o_stream": Out(stream.Signature(unsigned(self.cbits + self.classes * score_bits))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        n, sb = self.classes, self.score_bits
        i, o = self.i_stream, self.o_stream
        wide = max(sb, max(abs(v) for v in self.scale + self.bias).bit_length() + 1)
        scale = Array(Const(v, signed(wide)) for v in self.scale)
        bias = Array(Const(v, signed(wide)) for v in self.bias)
        c = Signal(range(n))
        best = Signal(signed(sb))
        best_c = Signal(self.cbits)
        scores = [Signal(signed(sb), name=f"score{k}") for k in range(n)]
        score = Signal(signed(sb))
        m.d.comb += score.eq(scale[c] * i.payload + bias[c])
        take = (c == 0) | (score > best)
        new_best_c = Mux(take, c, best_c)
        en = ~o.valid | o.ready
        m.d.comb += i.ready.eq(en)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & en):
            m.d.sync += [c.eq(Mux(c == n - 1, 0, c + 1)), best.eq(Mux(take, score, best)),
                         best_c.eq(new_best_c)]
            for k in range(n):
                with m.If(c == k):
                    m.d.sync += scores[k].eq(score)
            with m.If(c == n - 1):
                m.d.sync += [o.valid.eq(1),
                             o.payload.eq(Cat(new_best_c, *scores[:-1], score))]
        return m
