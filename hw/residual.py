"""Units of the residual stream (docs/ir.md, "Residual streams"), one pixel a beat.

A stream word is one pixel: ``c`` signed elements of ``bits`` bits (element ``i`` at
payload bits ``[i*bits, (i+1)*bits)``, as everywhere in bitfold):

* :class:`StreamThreshold`: a ``Threshold`` on a stream, the next block's sign;
* :class:`RequantAdd`: ``Requantize`` of a layer's accumulators and the ``Add`` of the
  skip, one join of two streams (no skip: a ``Requantize`` alone);
* :class:`StreamFork`: one stream to two consumers (the block's input to its binary
  branch and to its skip FIFO), each taking every beat at its own pace;
* :class:`AvgPoolStream`, :class:`UpsampleStream`: the ``AvgPool2d`` and ``Upsample2d``
  of a strided skip and of an hourglass' way up.

Every output is registered and every unit keeps full throughput (a beat a cycle) under
continuous flow; they are checked against ``compiler.golden`` under random stalls
(``tests/hw/test_residual_units.py``). :class:`ResidualBlock` composes them with a sliding
window and an MVU into one unit of a residual network, its skip FIFO sized by
:func:`~bitfold.compiler.residual.skip_fifo_min`; the generator's plan places one for each
residual unit of a graph (``hw.stages.ResidualStage``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from bitfold.compiler.memlayout import window_lanes, window_order
from bitfold.compiler.residual import SKIP_SLACK, skip_fifo_min

from .streams import check_positive
from .swu import SlidingWindow

__all__ = ["SKIP_SLACK", "AvgPoolStream", "RequantAdd", "ResidualBlock", "StreamFork",
           "StreamThreshold", "UpsampleStream", "saturate", "skip_fifo_min"]


def _elements(word: Value, n: int, bits: int) -> list[Value]:
    return [word[i * bits:(i + 1) * bits].as_signed() for i in range(n)]


def saturate(v: Value, bits: int) -> Value:
    """``v`` clamped to ``bits`` signed bits, as a ``bits``-bit value."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, Const(hi, signed(bits)),
               Mux(v < lo, Const(lo, signed(bits)), v[:bits].as_signed()))


def _pipe(m: Module, o, fire_in: Value) -> Value:
    """A registered output stage: returns ``en``, the cycle it may load ``o``'s register;
    ``o.valid`` follows ``fire_in`` (the inputs it consumes this cycle)."""
    en = Signal()
    m.d.comb += en.eq(~o.valid | o.ready)
    with m.If(en):
        m.d.sync += o.valid.eq(fire_in)
    return en


class StreamThreshold(wiring.Component):
    """``+1`` where ``x[c] >= thresholds[c]``: a stream of ``c``-channel pixels of signed
    ``bits``-bit elements to bipolar pixels (``c`` bits a beat)."""

    def __init__(self, c: int, bits: int, thresholds: Sequence[int]) -> None:
        check_positive(c=c, bits=bits)
        self.c, self.bits = c, bits
        self.thresholds = [int(t) for t in thresholds]
        if len(self.thresholds) != c:
            raise ValueError(f"{len(self.thresholds)} thresholds for {c} channels")
        super().__init__({"i_stream": In(stream.Signature(unsigned(c * bits))),
                          "o_stream": Out(stream.Signature(unsigned(c)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        en = _pipe(m, o, i.valid)
        m.d.comb += i.ready.eq(en)
        # a threshold beyond the stream's range is a constant bit
        lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        bits = [Const(1, 1) if t <= lo else Const(0, 1) if t > hi else x >= t
                for x, t in zip(_elements(i.payload, self.c, self.bits), self.thresholds,
                                strict=True)]
        with m.If(en):
            m.d.sync += o.payload.eq(Cat(*bits))
        return m


class RequantAdd(wiring.Component):
    """``sat(sat(floor((mult * acc + bias) / 2**shift)) + skip)`` per channel of a ``c``-channel
    pixel, ``lanes`` channels a beat.

    ``i_stream`` carries ``lanes`` accumulators of ``acc_shape`` a beat, channels ``j *
    lanes ..`` of a pixel in its beat ``j`` (an MVU's neuron folds: ``c / lanes`` beats a
    pixel); ``o_stream`` the results the same way. ``skip_stream`` (absent when ``skip_c``
    is 0: a ``Requantize`` alone) carries a pixel of ``skip_c <= c`` stream elements of
    ``bits`` bits, read by every beat of its pixel and taken with the last; the channels it
    lacks add zero. With one beat a pixel the multiplies are by constants, else by the
    beat's ``mult`` (a multiplier a lane, a DSP block where the fabric has them). Four
    registered stages under one enable: the operands (the beat's constants and skip element
    chosen), the product, the bias, shift and saturation, then the skip's add and
    saturation.
    """

    def __init__(self, c: int, acc_shape, mult: Sequence[int], bias: Sequence[int], shift: int,
                 bits: int, skip_c: int = 0, lanes: int | None = None) -> None:
        lanes = c if lanes is None else lanes
        check_positive(c=c, bits=bits, lanes=lanes)
        if len(mult) != c or len(bias) != c:
            raise ValueError(f"mult and bias need {c} entries, not {len(mult)}, {len(bias)}")
        if not 0 <= skip_c <= c or not 0 <= shift <= 32 or c % lanes:
            raise ValueError(f"skip channels 0..{c}, shift 0..32 and lanes dividing {c}, not "
                             f"{skip_c}, {shift}, {lanes}")
        self.c, self.acc_shape, self.shift, self.bits, self.skip_c = c, acc_shape, shift, bits, \
            skip_c
        self.lanes, self.beats = lanes, c // lanes
        self.mult, self.bias = [int(v) for v in mult], [int(v) for v in bias]
        ports = {"i_stream": In(stream.Signature(unsigned(lanes * acc_shape.width))),
                 "o_stream": Out(stream.Signature(unsigned(lanes * bits)))}
        if skip_c:
            ports["skip_stream"] = In(stream.Signature(unsigned(skip_c * bits)))
        super().__init__(ports)

    def _product_shape(self):
        w = self.acc_shape.width
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if self.acc_shape.signed else (0, (1 << w) - 1)
        ends = [mu * a for mu in self.mult for a in (lo, hi)]
        return signed(max(max(ends), -min(ends) - 1, 1).bit_length() + 1)

    @staticmethod
    def _const_shape(values: list[int]):
        return signed(max(max(abs(v) for v in values), 1).bit_length() + 1)

    def elaborate(self, platform) -> Module:
        m = Module()
        a, o, lanes, beats = self.i_stream, self.o_stream, self.lanes, self.beats
        skip = getattr(self, "skip_stream", None)
        beat = Signal(range(beats))
        last = beat == beats - 1
        ready = a.valid & (skip.valid if skip is not None else 1)
        # one enable for the four stages: operands, product, the requantized value, the skip
        # added (out)
        en, v1, v2, v3 = Signal(), Signal(), Signal(), Signal()
        fire = en & ready
        m.d.comb += [en.eq(~o.valid | o.ready), a.ready.eq(fire)]
        if skip is not None:
            m.d.comb += skip.ready.eq(fire & last)
        with m.If(en):
            m.d.sync += [v1.eq(ready), v2.eq(v1), v3.eq(v2), o.valid.eq(v3)]
        with m.If(fire):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        w = self.acc_shape.width
        skips = _elements(skip.payload, self.skip_c, self.bits) if skip is not None else []
        out = []
        for k in range(lanes):
            acc = a.payload[k * w:(k + 1) * w]
            acc = acc.as_signed() if self.acc_shape.signed else acc
            mults, biases = self.mult[k::lanes], self.bias[k::lanes]
            options = [skips[j * lanes + k] if j * lanes + k < self.skip_c
                       else Const(0, signed(self.bits)) for j in range(beats)]
            acc1 = Signal(self.acc_shape, name=f"acc{k}")
            bias1 = Signal(self._const_shape(biases), name=f"bias{k}")
            skip1 = Signal(signed(self.bits), name=f"skip{k}")
            prod = Signal(self._product_shape(), name=f"prod{k}")
            bias2 = Signal.like(bias1, name=f"bias{k}_2")
            skip2 = Signal.like(skip1, name=f"skip{k}_2")
            if beats == 1:  # constants: no operand registers for them
                mult1: Value = Const(mults[0], self._const_shape(mults))
                sync = [bias1.eq(biases[0]), skip1.eq(options[0])]
            else:  # the beat's constants, registered before the multiplier
                mult1 = Signal(self._const_shape(mults), name=f"mult{k}")
                sync = [mult1.eq(Array(Const(v, mult1.shape()) for v in mults)[beat]),
                        bias1.eq(Array(Const(v, bias1.shape()) for v in biases)[beat]),
                        skip1.eq(Array(options)[beat])]
            q = Signal(signed(self.bits), name=f"q{k}")
            skip3 = Signal.like(skip1, name=f"skip{k}_3")
            with m.If(en):
                m.d.sync += [acc1.eq(acc), *sync,
                             prod.eq(acc1 * mult1), bias2.eq(bias1), skip2.eq(skip1),
                             q.eq(saturate((prod + bias2) >> self.shift, self.bits)),
                             skip3.eq(skip2)]
            out.append(saturate(q + skip3, self.bits) if self.skip_c else q)
        with m.If(en):
            m.d.sync += o.payload.eq(Cat(*out))
        return m


class StreamFork(wiring.Component):
    """Every beat of ``i_stream`` to both ``a_stream`` and ``b_stream``.

    A beat leaves when each output has taken it, in the same cycle or in different ones
    (an output that took it waits for the other): neither consumer stalls the other
    beyond the beat they share.
    """

    def __init__(self, width: int) -> None:
        check_positive(width=width)
        self.width = width
        super().__init__({"i_stream": In(stream.Signature(unsigned(width))),
                          "a_stream": Out(stream.Signature(unsigned(width))),
                          "b_stream": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        i = self.i_stream
        outs = (self.a_stream, self.b_stream)
        taken = [Signal(name=f"taken_{n}") for n in "ab"]  # took the current beat already
        done = [t | o.ready for t, o in zip(taken, outs, strict=True)]
        m.d.comb += i.ready.eq(done[0] & done[1])
        for t, o, d in zip(taken, outs, done, strict=True):
            m.d.comb += [o.valid.eq(i.valid & ~t), o.payload.eq(i.payload)]
            with m.If(i.valid):
                m.d.sync += t.eq(Mux(i.ready, 0, d))
        return m


class AvgPoolStream(wiring.Component):
    """``floor(sum / kernel**2)`` of each ``kernel x kernel`` window of an ``(h, w, c)`` map of
    signed ``bits``-bit elements, windows side by side (``stride == kernel``, no padding; the
    rows and columns past the last whole window are dropped); ``kernel**2`` must be a power
    of two.

    No line buffer of pixels: each row's ``kernel`` pixels of a window are summed as they
    pass, and a row buffer of ``w / kernel`` partial sums (``bits + 2 log2(kernel)`` bits an
    element) adds the window's rows up; the last row's sum leaves as the mean.
    """

    def __init__(self, h: int, w: int, c: int, bits: int, kernel: int = 2,
                 stride: int = 2) -> None:
        check_positive(h=h, w=w, c=c, bits=bits, kernel=kernel, stride=stride)
        if kernel & (kernel - 1):
            raise ValueError(f"kernel {kernel}: the hardware divides by a power of two only")
        if stride != kernel or kernel > min(h, w):
            raise ValueError(f"kernel {kernel}, stride {stride} on {h}x{w}: the hardware pools "
                             "windows side by side (stride == kernel) inside the map")
        self.h, self.w, self.c, self.bits, self.kernel, self.stride = h, w, c, bits, kernel, stride
        self.oh, self.ow = h // kernel, w // kernel
        self.sum_bits = bits + 2 * (kernel.bit_length() - 1)
        super().__init__({"i_stream": In(stream.Signature(unsigned(c * bits))),
                          "o_stream": Out(stream.Signature(unsigned(c * bits)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        k, c, sb = self.kernel, self.c, self.sum_bits
        m.submodules.rows = rows = memory.Memory(shape=unsigned(c * sb), depth=self.ow, init=[])
        wr, rd = rows.write_port(), rows.read_port(domain="comb")
        x, y = Signal(range(self.w)), Signal(range(self.h))
        hx, vy = Signal(range(k)), Signal(range(k))  # position in the window: column, row
        ox = Signal(range(self.ow))
        inside = (x < self.ow * k) & (y < self.oh * k)
        hsum = [Signal(signed(sb), name=f"hsum{n}") for n in range(c)]
        pixel = _elements(i.payload, c, self.bits)
        across = [Mux(hx == 0, 0, hs) + p for hs, p in zip(hsum, pixel, strict=True)]
        above = _elements(rd.data, c, sb)
        down = [Mux(vy == 0, 0, a) + h for a, h in zip(above, across, strict=True)]
        en = _pipe(m, o, i.valid & inside & (hx == k - 1) & (vy == k - 1))
        m.d.comb += [i.ready.eq(en), rd.addr.eq(ox), wr.addr.eq(ox),
                     wr.data.eq(Cat(*[d[:sb] for d in down])),
                     wr.en.eq(i.valid & en & inside & (hx == k - 1) & (vy != k - 1))]
        shift = 2 * (k.bit_length() - 1)
        with m.If(i.valid & en):
            m.d.sync += [h.eq(v) for h, v in zip(hsum, across, strict=True)]
            m.d.sync += [o.payload.eq(Cat(*[(d >> shift)[:self.bits] for d in down])),
                         x.eq(Mux(x == self.w - 1, 0, x + 1)),
                         hx.eq(Mux((hx == k - 1) | (x == self.w - 1), 0, hx + 1))]
            with m.If(inside & (hx == k - 1)):
                m.d.sync += ox.eq(Mux(ox == self.ow - 1, 0, ox + 1))
            with m.If(x == self.w - 1):
                m.d.sync += [y.eq(Mux(y == self.h - 1, 0, y + 1)),
                             vy.eq(Mux((vy == k - 1) | (y == self.h - 1), 0, vy + 1)), ox.eq(0)]
        return m


class UpsampleStream(wiring.Component):
    """Nearest-neighbour upsampling of an ``(h, w)`` map of ``width``-bit pixels by ``factor``:
    each pixel ``factor`` times across, each row ``factor`` times down (a row buffer replays
    it)."""

    def __init__(self, h: int, w: int, width: int, factor: int = 2) -> None:
        check_positive(h=h, w=w, width=width, factor=factor)
        self.h, self.w, self.width, self.factor = h, w, width, factor
        super().__init__({"i_stream": In(stream.Signature(unsigned(width))),
                          "o_stream": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        f, w = self.factor, self.w
        m.submodules.row = row = memory.Memory(shape=unsigned(self.width), depth=w, init=[])
        wr, rd = row.write_port(), row.read_port(domain="comb")
        col = Signal(range(w))
        rep = Signal(range(f))  # the copy of the row being emitted
        copy = Signal(range(f))  # the copy of the pixel being emitted
        fresh = rep == 0  # the row's first copy reads the input, the others the row buffer
        m.d.comb += rd.addr.eq(col)
        pixel = Mux(fresh, i.payload, rd.data)
        have = Mux(fresh, i.valid, 1)
        en = _pipe(m, o, have)
        last_copy = copy == f - 1
        m.d.comb += [i.ready.eq(en & fresh & last_copy),
                     wr.addr.eq(col), wr.data.eq(i.payload), wr.en.eq(i.valid & i.ready)]
        with m.If(en & have):
            m.d.sync += [o.payload.eq(pixel), copy.eq(Mux(last_copy, 0, copy + 1))]
            with m.If(last_copy):
                m.d.sync += col.eq(Mux(col == w - 1, 0, col + 1))
                with m.If(col == w - 1):
                    m.d.sync += rep.eq(Mux(rep == f - 1, 0, rep + 1))
        return m



class ResidualBlock(wiring.Component):
    """One pre-activation unit on the stream, a pixel of ``c_in`` elements a beat in and
    ``mvu.pe`` channels of ``c_out`` a beat out: ``r' = sat(sat(requant(conv(sign(r)))) +
    skip(r))``.

    The fork sends each input pixel to the binary branch (``sign``, a
    :class:`StreamThreshold`; ``window``, a :class:`~.swu.SlidingWindow` of its bits;
    ``mvu``, an :class:`~.mvu.MVU` without thresholds) and to the skip FIFO (behind an
    :class:`AvgPoolStream` when the block strides); ``join``, a :class:`RequantAdd` of
    ``mvu.pe`` lanes, joins them. The FIFO holds
    :func:`~bitfold.compiler.residual.skip_fifo_min` + :data:`SKIP_SLACK` pixels unless
    ``skip_depth`` says otherwise; fewer than the minimum is refused (the dataflow would
    deadlock) unless ``unsafe_depth`` (for the test that shows it).
    :meth:`from_weights` builds the units from a convolution's weights.
    """

    def __init__(self, sign: StreamThreshold, window: SlidingWindow, mvu, join: RequantAdd,
                 skip_depth: int | None = None, unsafe_depth: bool = False) -> None:
        h, w, c_in, k, stride = window.h, window.w, window.c, window.kernel, window.stride
        if (sign.c, join.skip_c, join.lanes) != (c_in, c_in, mvu.pe) or join.c < c_in or \
                stride not in (1, 2) or k % 2 == 0 or window.pad != k // 2:
            raise ValueError(f"a block has an odd kernel padded to keep the map, stride 1 or 2, "
                             f"c_out >= c_in and its join as wide as its MVU; not kernel {k} "
                             f"pad {window.pad}, stride {stride}, {c_in}->{join.c}, "
                             f"join lanes {join.lanes} for {mvu.pe} PEs")
        self.h, self.w, self.c_in, self.c_out, self.bits = h, w, c_in, join.c, join.bits
        self.stride = stride
        self.sign, self.window, self.mvu, self.join = sign, window, mvu, join
        self.minimum = skip_fifo_min(h, w, k, stride, window.pad)
        self.skip_depth = self.minimum + SKIP_SLACK if skip_depth is None else skip_depth
        if self.skip_depth < self.minimum and not unsafe_depth:
            raise ValueError(f"skip FIFO of {self.skip_depth} pixels: the block needs at least "
                             f"{self.minimum} ({h}x{w} input, kernel {k}, stride {stride}) or "
                             "its dataflow can deadlock")
        super().__init__({"i_stream": In(stream.Signature(unsigned(c_in * self.bits))),
                          "o_stream": Out(stream.Signature(unsigned(mvu.pe * self.bits)))})

    @classmethod
    def from_weights(cls, h: int, w: int, c_in: int, bits: int, thresholds: Sequence[int],
                     weights: np.ndarray, stride: int, pad_bit: int, mult: Sequence[int],
                     bias: Sequence[int], shift: int, pe: int, simd: int,
                     skip_depth: int | None = None, unsafe_depth: bool = False
                     ) -> ResidualBlock:
        """The block of a convolution's ``(c_out, k, k, c_in)`` weight bits at ``pe x simd``."""
        from .mvu import MVU

        weights = np.asarray(weights)
        c_out, k = weights.shape[0], weights.shape[1]
        rows = weights.reshape(c_out, -1)[:, window_order(k, c_in)]
        acc_shape = unsigned((k * k * c_in).bit_length())
        window = SlidingWindow(h, w, c_in, 1, k, stride, k // 2, pad_bit,
                               lanes=window_lanes(k, c_in, simd))
        return cls(StreamThreshold(c_in, bits, thresholds), window,
                   MVU(rows, pe, simd, acc_shape),
                   RequantAdd(c_out, acc_shape, mult, bias, shift, bits, c_in, lanes=pe),
                   skip_depth, unsafe_depth)

    def elaborate(self, platform) -> Module:
        from .streams import StreamFIFO, WidthConverter

        m = Module()
        b, win, mvu = self.bits, self.window, self.mvu
        m.submodules.fork = fork = StreamFork(self.c_in * b)
        m.submodules.sign = sign = self.sign
        m.submodules.window = win
        mvu_in = Value.cast(mvu.i_stream.payload).shape().width  # the MVU's word of bits
        m.submodules.to_mvu = to_mvu = WidthConverter(win.lanes * win.kernel * self.c_in,
                                                      mvu_in, 1)
        m.submodules.mvu = mvu
        m.submodules.skip = skip = StreamFIFO(self.c_in * b, self.skip_depth)
        m.submodules.join = join = self.join
        wiring.connect(m, wiring.flipped(self.i_stream), fork.i_stream)
        wiring.connect(m, fork.a_stream, sign.i_stream)
        wiring.connect(m, sign.o_stream, win.i_stream)
        wiring.connect(m, win.o_stream, to_mvu.i_stream)
        wiring.connect(m, to_mvu.o_stream, mvu.i_stream)
        wiring.connect(m, mvu.o_stream, join.i_stream)
        if self.stride == 2:
            m.submodules.pool = pool = AvgPoolStream(self.h, self.w, self.c_in, b, 2, 2)
            wiring.connect(m, fork.b_stream, pool.i_stream)
            wiring.connect(m, pool.o_stream, skip.i_stream)
        else:
            wiring.connect(m, fork.b_stream, skip.i_stream)
        wiring.connect(m, skip.o_stream, join.skip_stream)
        wiring.connect(m, join.o_stream, wiring.flipped(self.o_stream))
        return m
