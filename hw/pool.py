"""Max pooling of bipolar maps: OR over each window (docs/architecture.md, 3), one input pixel per cycle."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .streams import check_positive
from .swu import SlidingWindow

__all__ = ["MaxPool"]


class MaxPool(wiring.Component):
    """``kernel x kernel`` max pool with ``stride`` of a bipolar ``(h, w, c)`` map (no padding).

    A :class:`~.swu.SlidingWindow` reading whole windows (all ``kernel`` columns
    at once) feeds an OR over the window's pixels; input and output words are
    one pixel of ``c`` bits.
    """

    def __init__(self, h: int, w: int, c: int, kernel: int = 2, stride: int = 2) -> None:
        check_positive(h=h, w=w, c=c, kernel=kernel, stride=stride)
        if kernel > h or kernel > w:
            raise ValueError(f"kernel {kernel} does not fit the {h}x{w} input")
        self.h, self.w, self.c, self.kernel, self.stride = h, w, c, kernel, stride
        self.oh, self.ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        super().__init__({
            "i_stream": In(stream.Signature(c)),
            "o_stream": Out(stream.Signature(c)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.window = win = SlidingWindow(self.h, self.w, self.c, 1, self.kernel,
                                                  self.stride, 0, 0, lanes=self.kernel)
        wiring.connect(m, wiring.flipped(self.i_stream), win.i_stream)
        word = win.o_stream.payload
        pooled = word[:self.c]
        for n in range(1, self.kernel * self.kernel):
            pooled = pooled | word[n * self.c:(n + 1) * self.c]
        m.d.comb += [self.o_stream.payload.eq(pooled),
                     self.o_stream.valid.eq(win.o_stream.valid),
                     win.o_stream.ready.eq(self.o_stream.ready)]
        return m
