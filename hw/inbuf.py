"""An MVU's two-bank input buffer: the next input vector streams in while the unit reads
the current one ``NF`` times."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import memory

__all__ = ["input_banks"]


def input_banks(m: Module, i, en: Value, sf: Value, nf: Value, sf_n: int, nf_n: int,
                issue: Value) -> tuple[Value, Value]:
    """The two-bank input buffer: ``(the read bank is full, its word at sf next cycle)``.

    The writer fills the free bank word by word; the reader (the fold counters)
    frees its bank as it reads the vector's last word, and toggles the read bank.
    """
    # a bank per half of the address space (address = bank, sf): no adder on either side
    m.submodules.inbuf = buf = memory.Memory(shape=unsigned(len(i.payload)),
                                             depth=2 << len(sf), init=[])
    wr, rd = buf.write_port(), buf.read_port()
    full = [Signal(name=f"full{b}") for b in range(2)]
    wr_bank, rd_bank = Signal(), Signal()
    wr_sf = Signal(range(sf_n))
    m.d.comb += [i.ready.eq(~Mux(wr_bank, full[1], full[0])),
                 wr.addr.eq(Cat(wr_sf, wr_bank)), wr.data.eq(i.payload),
                 wr.en.eq(i.valid & i.ready),
                 rd.addr.eq(Cat(sf, rd_bank)), rd.en.eq(en)]
    active = Mux(rd_bank, full[1], full[0]) & issue
    done = en & active & (sf == sf_n - 1) & (nf == nf_n - 1)  # the vector's last read
    with m.If(wr.en):
        m.d.sync += wr_sf.eq(Mux(wr_sf == sf_n - 1, 0, wr_sf + 1))
        with m.If(wr_sf == sf_n - 1):
            m.d.sync += wr_bank.eq(~wr_bank)
    for b in range(2):  # the writer fills only a free bank, the reader frees only a full one
        with m.If(wr.en & (wr_sf == sf_n - 1) & (wr_bank == b)):
            m.d.sync += full[b].eq(1)
        with m.If(done & (rd_bank == b)):
            m.d.sync += full[b].eq(0)
    with m.If(done):
        m.d.sync += rd_bank.eq(~rd_bank)
    return active, rd.data
