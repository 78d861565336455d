"""Board tops around the dataflow core: a UART bridge and a self-test.

* :class:`UARTBridge`: the host sends a frame as its input beats, each beat
  ``ceil(in_width / 8)`` bytes little-endian (``manifest.json``'s beat format);
  the board answers each frame with its scores, class 0 first, each
  ``ceil(score_bits / 8)`` bytes little-endian two's complement, then the class
  index in ``ceil(class_bits / 8)`` bytes (:class:`Serializer`).
  A byte FIFO holds one whole frame, so the host may send the next frame while
  the core works on the last (``bitfold infer`` waits for each result anyway);
  a host that streams faster than results go back overruns it.
* :class:`SelfTest`: test frames and their expected classes in ROM; the core
  runs them back to back; ``passed`` / ``failed`` drive LEDs, and a record
  (:data:`RECORD_BYTES` bytes, see :func:`parse_record`) goes out on the UART
  when the test ends and again whenever a byte is received.

Both are plain components with pins as ports (``rx``, ``tx``, LEDs), so they
simulate without a platform; :class:`BoardTop` requests a board's resources.
"""


from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from bitfold.hw.plan import Plan
from bitfold.hw.score import result_layout
from bitfold.hw.streams import StreamFIFO
from bitfold.hw.top import Dataflow

from .uart import UARTRx, UARTTx

__all__ = ["RECORD_BYTES", "BoardTop", "Deserializer", "SelfTest", "Serializer", "UARTBridge",
           "parse_record"]

RECORD_BYTES = 8  # b"P"/b"F", mismatches (saturating), frames (u16 LE), cycles (u32 LE)


def nbytes(width: int) -> int:
    return (width + 7) // 8


class Deserializer(wiring.Component):
    """Bytes in, ``width``-bit words out (``ceil(width / 8)`` bytes each, little-endian)."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__({"i_stream": In(stream.Signature(8)),
                          "o_stream": Out(stream.Signature(width))})

    def elaborate(self, platform) -> Module:
        m = Module()
        n = nbytes(self.width)
        buf = Signal(8 * n)
        count = Signal(range(n + 1))
        m.d.comb += [self.o_stream.payload.eq(buf[:self.width]),
                     self.o_stream.valid.eq(count == n),
                     self.i_stream.ready.eq(count != n)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += count.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [buf.eq((buf >> 8) | (self.i_stream.payload << (8 * (n - 1)))),
                         count.eq(count + 1)]
        return m


class Serializer(wiring.Component):
    """Result beats in (:func:`~bitfold.hw.score.result_layout`), bytes out.

    Every beat goes out as its score, ``ceil(score_bits / 8)`` bytes little-endian
    (sign-extended); a frame's last beat is followed by its class index,
    ``ceil(class_bits / 8)`` bytes. It holds one beat, as a shift register of
    those bytes, and takes the next when the last byte has gone.
    """

    def __init__(self, score_bits: int, class_bits: int) -> None:
        self.score_bits, self.class_bits = score_bits, class_bits
        super().__init__({"i_stream": In(stream.Signature(result_layout(score_bits, class_bits))),
                          "o_stream": Out(stream.Signature(8))})

    def elaborate(self, platform) -> Module:
        m = Module()
        ns, nc = nbytes(self.score_bits), nbytes(self.class_bits)
        i, o = self.i_stream, self.o_stream
        buf = Signal(8 * (ns + nc))
        left = Signal(range(ns + nc + 1))
        score = Signal(signed(8 * ns))
        m.d.comb += [score.eq(i.payload.score), o.payload.eq(buf[:8]), o.valid.eq(left != 0),
                     i.ready.eq(left == 0)]
        with m.If(o.valid & o.ready):
            m.d.sync += [buf.eq(buf >> 8), left.eq(left - 1)]
        with m.If(i.valid & i.ready):
            m.d.sync += [buf.eq(Cat(score, i.payload.argmax)),
                         left.eq(Mux(i.payload.last, ns + nc, ns))]
        return m


class UARTBridge(wiring.Component):
    """Frames in over ``rx``; per frame its scores, then its class, out over ``tx``."""

    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, plan: Plan, divisor: int) -> None:
        self.plan, self.divisor = plan, divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = Dataflow(self.plan)
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.des = des = Deserializer(len(core.i_stream.payload))
        m.submodules.ser = ser = Serializer(self.plan.score_bits, self.plan.class_bits)
        frame_bytes = nbytes(len(core.i_stream.payload)) * self.plan.beats_per_frame
        m.submodules.rx_fifo = fifo = StreamFIFO(8, frame_bytes + 1)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_stream, fifo.i_stream)
        wiring.connect(m, fifo.o_stream, des.i_stream)
        wiring.connect(m, des.o_stream, core.i_stream)
        wiring.connect(m, core.o_stream, ser.i_stream)
        wiring.connect(m, ser.o_stream, utx.i_stream)
        return m


class SelfTest(wiring.Component):
    """Run ROM test frames through the core; compare classes; report over ``tx``.

    Parameters
    ----------
    plan : Plan
    beats : sequence of int
        Input payloads of all test frames, frame after frame.
    expected : sequence of int
        The expected class of every frame.
    divisor : int
        UART clock cycles per bit.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    passed: Out(1)
    failed: Out(1)
    done: Out(1)
    cycles: Out(32)
    mismatches: Out(8)

    def __init__(self, plan: Plan, beats: Sequence[int], expected: Sequence[int],
                 divisor: int) -> None:
        if not expected or len(expected) >= 1 << 16:
            raise ValueError(f"the self-test needs 1 to 65535 frames, not {len(expected)}")
        if len(beats) != len(expected) * plan.beats_per_frame:
            raise ValueError(f"{len(expected)} frames need {len(expected) * plan.beats_per_frame} "
                             f"input beats, not {len(beats)}")
        self.plan, self.divisor = plan, divisor
        self.beats, self.expected = [int(b) for b in beats], [int(c) for c in expected]
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = Dataflow(self.plan)
        width = len(core.i_stream.payload)
        nbeats, nframes = len(self.beats), len(self.expected)
        m.submodules.frames = frames = Memory(shape=width, depth=nbeats, init=self.beats)
        m.submodules.classes = classes = Memory(shape=max(self.plan.class_bits, 1),
                                                depth=nframes, init=self.expected)
        rd_beat = frames.read_port(domain="comb")
        rd_class = classes.read_port(domain="comb")

        sent = Signal(range(nbeats + 1))
        got = Signal(range(nframes + 1))
        m.d.comb += [rd_beat.addr.eq(sent), core.i_stream.payload.eq(rd_beat.data),
                     core.i_stream.valid.eq(sent != nbeats),
                     rd_class.addr.eq(got), core.o_stream.ready.eq(~self.done),
                     self.done.eq(got == nframes),
                     self.passed.eq(self.done & (self.mismatches == 0)),
                     self.failed.eq(self.done & (self.mismatches != 0))]
        with m.If(core.i_stream.valid & core.i_stream.ready):
            m.d.sync += sent.eq(sent + 1)
        with m.If(~self.done):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        # a frame is done at its last result beat, whose argmax is its class
        with m.If(core.o_stream.valid & core.o_stream.ready & core.o_stream.payload.last):
            m.d.sync += got.eq(got + 1)
            cls = core.o_stream.payload.argmax
            with m.If((cls != rd_class.data) & (self.mismatches != 255)):
                m.d.sync += self.mismatches.eq(self.mismatches + 1)

        # the record: sent when the test ends and again for every received byte
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), urx.o_stream.ready.eq(1)]
        record = [Mux(self.passed, ord("P"), ord("F")),
                  self.mismatches, Const(nframes & 0xFF, 8), Const(nframes >> 8, 8),
                  *(self.cycles[8 * i:8 * i + 8] for i in range(4))]
        index = Signal(range(RECORD_BYTES + 1), init=RECORD_BYTES)
        done_q = Signal()
        m.d.sync += done_q.eq(self.done)
        with m.Switch(index):
            for i, byte in enumerate(record):
                with m.Case(i):
                    m.d.comb += utx.i_stream.payload.eq(byte)
        m.d.comb += utx.i_stream.valid.eq(index != RECORD_BYTES)
        with m.If(utx.i_stream.valid & utx.i_stream.ready):
            m.d.sync += index.eq(index + 1)
        with m.If((self.done & ~done_q) | (self.done & urx.o_stream.valid &
                                             (index == RECORD_BYTES))):
            m.d.sync += index.eq(0)
        return m


def parse_record(record: bytes, clock_hz: float) -> dict:
    """Decode a self-test record: verdict, mismatches, frames, cycles, measured fps."""
    if len(record) != RECORD_BYTES or record[:1] not in (b"P", b"F"):
        raise ValueError(f"a self-test record is {RECORD_BYTES} bytes starting with P or F, "
                         f"not {record!r}")
    frames = int.from_bytes(record[2:4], "little")
    cycles = int.from_bytes(record[4:8], "little")
    return {"passed": record[:1] == b"P", "mismatches": record[1], "frames": frames,
            "cycles": cycles, "fps": frames * clock_hz / cycles if cycles else 0.0}


class BoardTop(wiring.Component):
    """A tested top (:class:`UARTBridge` or :class:`SelfTest`) on a board's pins.

    With a ``pll`` (a :class:`~.pll.PLLConfig`) the ``sync`` domain runs from the
    PLL (:func:`~.pll.pll_domain`); without one, from the board oscillator (the
    platform's default clock).
    """

    def __init__(self, inner: wiring.Component, board, pll=None) -> None:
        self.inner, self.board, self.pll = inner, board, pll
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        if self.pll is not None:
            from .pll import pll_domain

            pll_domain(m, platform, self.pll)
        m.submodules.inner = inner = self.inner
        uart = platform.request("uart", 0)
        m.d.comb += [inner.rx.eq(uart.rx.i), uart.tx.o.eq(inner.tx)]
        if isinstance(inner, SelfTest):
            pass_led, fail_led = self.board.leds(platform)
            m.d.comb += [pass_led.eq(inner.passed), fail_led.eq(inner.failed)]
        return m
