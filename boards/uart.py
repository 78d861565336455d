"""A UART (8N1) as two stream components: bytes in on a pin, bytes out on a pin.

``divisor`` is clock cycles per bit (``clk_hz // baud``). The receiver
synchronizes its pin, finds the falling edge of the start bit and samples every
bit in its middle; a frame whose stop bit is low is dropped.
"""


from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "check_divisor"]


def check_divisor(divisor: int) -> int:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor (clock cycles per bit) must be an integer >= 4, "
                         f"not {divisor!r}; lower the baud rate")
    return divisor


class UARTRx(wiring.Component):
    """Bytes received on ``rx`` (idle high) as an ``o_stream`` of 8-bit payloads."""

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))

    def __init__(self, divisor: int) -> None:
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(9))
        shreg = Signal(8)
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += timer.eq(self.divisor - 1)
                    with m.If(bit == 8):  # the stop bit
                        with m.If(rx):
                            m.d.sync += [self.o_stream.payload.eq(shreg),
                                         self.o_stream.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1)]
        return m


class UARTTx(wiring.Component):
    """Bytes of ``i_stream`` sent on ``tx`` (idle high), least significant bit first."""

    tx: Out(1, init=1)
    i_stream: In(stream.Signature(8))

    def __init__(self, divisor: int) -> None:
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))
        shreg = Signal(10, init=0x3FF)
        m.d.comb += [self.tx.eq(shreg[0]), self.i_stream.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.i_stream.valid):
                m.d.sync += [shreg.eq(Cat(0, self.i_stream.payload, 1)), bits.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
        return m
