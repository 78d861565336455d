"""Stream plumbing: element-vector width converters, FIFOs and a skid buffer.

Every stream between bitfold stages carries a *word* of ``n`` elements of
``bits`` bits each; element ``i`` occupies payload bits ``[i*bits, (i+1)*bits)``
(two's complement for signed elements). Vectors (a dense layer's input, a
window, a pixel) are streamed as consecutive elements, so a converter that
regroups elements never needs to know where vectors start.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "StreamFIFO", "WidthConverter", "check_positive"]


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` unless every keyword value is an ``int >= 1``."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


class WidthConverter(wiring.Component):
    """Regroup a stream of ``in_elems``-element words into ``out_elems``-element words.

    Where one size divides the other, a shift register of the wider word that
    collects (or hands out) the narrow words one a cycle. Otherwise a gearbox
    holding up to ``in_elems + out_elems`` elements: it emits a word
    whenever it holds ``out_elems`` elements and accepts a word whenever it
    will have room for it after this cycle's output, so it moves one output
    word per cycle when ``in_elems >= out_elems`` and one input word per cycle
    otherwise. Element order is kept.

    Parameters
    ----------
    in_elems, out_elems : int
        Elements per input and per output word.
    elem_bits : int
        Bits of one element.
    """

    def __init__(self, in_elems: int, out_elems: int, elem_bits: int) -> None:
        check_positive(in_elems=in_elems, out_elems=out_elems, elem_bits=elem_bits)
        self.in_elems, self.out_elems, self.elem_bits = in_elems, out_elems, elem_bits
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(in_elems * elem_bits))),
            "o_stream": Out(stream.Signature(unsigned(out_elems * elem_bits))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        a, b = self.in_elems, self.out_elems
        if a == b:
            wiring.connect(m, wiring.flipped(self.i_stream), wiring.flipped(self.o_stream))
            return m
        if b % a == 0:
            return self._gather(m, b // a)
        if a % b == 0:
            return self._scatter(m, a // b)
        return self._gearbox(m)

    def _gather(self, m: Module, k: int) -> Module:
        """``k`` input words into one output word: a shift register, words entering at the top.

        It takes a word in the cycle its full output word leaves, so the input side
        moves a word per cycle.
        """
        i, o, w = self.i_stream, self.o_stream, self.in_elems * self.elem_bits
        buf = Signal(k * w, reset_less=True)
        count = Signal(range(k + 1))
        i_fire, o_fire = i.valid & i.ready, o.valid & o.ready
        m.d.comb += [o.valid.eq(count == k), o.payload.eq(buf),
                     i.ready.eq((count != k) | o.ready)]
        with m.If(i_fire):
            m.d.sync += [buf.eq(Cat(buf[w:], i.payload)),
                         count.eq(Mux(o_fire, 1, count + 1))]
        with m.Elif(o_fire):
            m.d.sync += count.eq(0)
        return m

    def _scatter(self, m: Module, k: int) -> Module:
        """One input word into ``k`` output words: a shift register read at the bottom.

        It takes the next word in the cycle its last output word leaves, so the
        output side moves a word per cycle.
        """
        i, o, w = self.i_stream, self.o_stream, self.out_elems * self.elem_bits
        buf = Signal(k * w, reset_less=True)
        count = Signal(range(k + 1))  # output words left in buf
        m.d.comb += [o.valid.eq(count != 0), o.payload.eq(buf[:w]),
                     i.ready.eq((count == 0) | ((count == 1) & o.ready))]
        with m.If(i.valid & i.ready):
            m.d.sync += [buf.eq(i.payload), count.eq(k)]
        with m.Elif(o.valid & o.ready):
            m.d.sync += [buf.eq(buf[w:]), count.eq(count - 1)]
        return m

    def _gearbox(self, m: Module) -> Module:
        """Any other ratio: a buffer of ``in_elems + out_elems`` elements, words landing at
        the fill level."""
        a, b, eb = self.in_elems, self.out_elems, self.elem_bits
        cap = a + b
        buf = Signal(cap * eb)
        count = Signal(range(cap + 1))
        o_fire = Signal()
        after = Signal(range(cap + 1))
        shifted = Signal(cap * eb)
        m.d.comb += [
            self.o_stream.valid.eq(count >= b),
            self.o_stream.payload.eq(buf[:b * eb]),
            o_fire.eq(self.o_stream.valid & self.o_stream.ready),
            after.eq(count - o_fire * b),
            shifted.eq(buf),
            self.i_stream.ready.eq(after <= b),
        ]
        with m.If(o_fire):
            m.d.comb += shifted.eq(buf >> (b * eb))
        i_fire = self.i_stream.valid & self.i_stream.ready
        m.d.sync += buf.eq(shifted)
        with m.If(i_fire):
            m.d.sync += count.eq(after + a)
            # a word can only land at a multiple of gcd(a, b), at most b elements in
            with m.Switch(after):
                for k in range(b + 1):
                    with m.Case(k):
                        m.d.sync += buf.eq(shifted | (self.i_stream.payload << (k * eb)))
        with m.Else():
            m.d.sync += count.eq(after)
        return m


class StreamFIFO(wiring.Component):
    """A first-word-fall-through FIFO (``amaranth.lib.fifo.SyncFIFOBuffered``) on streams.

    Parameters
    ----------
    width : int
        Payload bits.
    depth : int
        Words it holds (at least 1).
    """

    def __init__(self, width: int, depth: int) -> None:
        check_positive(width=width, depth=depth)
        self.width, self.depth = width, depth
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(width))),
            "o_stream": Out(stream.Signature(unsigned(width))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i_stream.payload),
            fifo.w_en.eq(self.i_stream.valid),
            self.i_stream.ready.eq(fifo.w_rdy),
            self.o_stream.payload.eq(fifo.r_data),
            self.o_stream.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o_stream.ready),
        ]
        return m



class SkidBuffer(wiring.Component):
    """A 2-deep skid buffer: full throughput, registered ``ready`` and registered data.

    The output register drives ``o_stream``; a second (skid) register catches
    the word that arrives in the cycle the consumer stalls, since the producer
    only sees ``ready`` fall one cycle later. ``i_stream.ready`` is "the skid
    register is empty", a flip-flop, so neither side's ``ready`` reaches the
    other through logic: the buffer cuts the combinational handshake path that
    a plain pipeline register leaves. It moves one word per cycle under
    continuous flow and holds at most two.

    Parameters
    ----------
    width : int
        Payload bits.
    """

    def __init__(self, width: int) -> None:
        check_positive(width=width)
        self.width = width
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(width))),
            "o_stream": Out(stream.Signature(unsigned(width))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        skid = Signal(self.width)
        skid_valid = Signal()
        m.d.comb += i.ready.eq(~skid_valid)
        i_fire = i.valid & ~skid_valid
        with m.If(~o.valid | o.ready):  # the output register takes a word (or empties)
            with m.If(skid_valid):
                m.d.sync += [o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [o.payload.eq(i.payload), o.valid.eq(i_fire)]
        with m.Elif(i_fire):  # the consumer stalls: the word in flight goes to the skid
            m.d.sync += [skid.eq(i.payload), skid_valid.eq(1)]
        return m
