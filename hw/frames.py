"""Two frames a pass: an MVU that reads each weight word once for two frames in flight.

A folded layer reads ``PE * SIMD`` weight bits a cycle; where a frame rate needs more
than the block RAMs deliver (36 bits a cycle each on the ECP5), a unit built with
``frames=2`` (:class:`~.mvu.MVU`) holds two input vectors and computes both against the
same weight word: twice the lanes, the same weight memory, ``NF * SF`` cycles for two
frames. Its streams stay one frame after another:

* :func:`pair_banks`: the input buffer, two frames a bank (a memory per slot, two banks
  each), the next pair streaming in while the unit reads the current one ``NF`` times;
  a frame that waits ``NF * SF`` cycles without a word coming goes alone (``lone``), so
  the last frame of an odd stream is never held back;
* :class:`Unpair`: the output, each fold's word of both slots in, the earlier frame's
  ``NF`` words then the other's out (the other's dropped when the frame went alone).

Neither depends on the lone timer for its results: a frame that goes alone is computed
exactly, only later than it could have been.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .streams import check_positive

__all__ = ["FRAMES", "Unpair", "pair_banks"]

FRAMES = (1, 2)  # frames a unit may compute in one pass


def pair_banks(m: Module, i, en: Value, sf: Value, nf: Value, sf_n: int, nf_n: int,
               issue: Value) -> tuple[Value, Value, Value]:
    """The two-frame input buffer: ``(the read bank is ready, both slots' words at sf next
    cycle, the read bank's tag)``; the tag is ``Cat(lone, first)``: the pass has one frame
    alone, and which slot holds the earlier frame.

    Frames go to the two slots (a memory each, two banks each) in turn; a bank is full with
    two frames. When a bank holds one frame and no word has come for ``NF * SF`` cycles,
    the writer closes it: the frame is computed alone. If the next frame had begun (an
    upstream unit may send a frame's first words early, as a padded window does), the writer
    stays on the bank and finishes that frame there once the lone pass has read it (``stay``),
    so it becomes the earlier frame of the bank's next pass. The reader frees its bank as it
    reads the pass' last word, and moves to the other bank unless the writer stayed.
    """
    width = len(i.payload)
    ports = []
    for f in range(2):  # a memory per slot, a bank per half of its address space
        m.submodules[f"inbuf{f}"] = buf = memory.Memory(shape=unsigned(width),
                                                        depth=2 << len(sf), init=[])
        ports.append((buf.write_port(), buf.read_port()))
    full, lone, stay, first = ([Signal(name=f"{n}{b}") for b in range(2)]
                               for n in ("full", "lone", "stay", "first"))
    wr_bank, rd_bank, wr_slot, half = Signal(), Signal(), Signal(), Signal()
    wr_sf = Signal(range(sf_n))
    idle = Signal(range(nf_n * sf_n + 1))  # cycles without a word while the bank is half full
    take = i.valid & i.ready
    m.d.comb += i.ready.eq(~Mux(wr_bank, full[1], full[0]))
    for f, (wr, rd) in enumerate(ports):
        m.d.comb += [wr.addr.eq(Cat(wr_sf, wr_bank)), wr.data.eq(i.payload),
                     wr.en.eq(take & (wr_slot == f)),
                     rd.addr.eq(Cat(sf, rd_bank)), rd.en.eq(en)]
    close = half & ~take & (idle == nf_n * sf_n)
    frame_done = take & (wr_sf == sf_n - 1)
    m.d.sync += idle.eq(Mux(half & ~take & ~close, idle + 1, 0))
    with m.If(take):
        m.d.sync += wr_sf.eq(Mux(wr_sf == sf_n - 1, 0, wr_sf + 1))
    with m.If(frame_done):
        m.d.sync += [wr_slot.eq(~wr_slot), half.eq(~half)]
    with m.If(close):
        m.d.sync += half.eq(0)
    with m.If(frame_done & half | close & (wr_sf == 0)):
        m.d.sync += wr_bank.eq(~wr_bank)
    active = Mux(rd_bank, full[1], full[0]) & issue
    done = en & active & (sf == sf_n - 1) & (nf == nf_n - 1)  # the pass' last read
    for b in range(2):  # the writer fills only a free bank, the reader frees only a full one
        here = wr_bank == b
        with m.If(frame_done & ~half & here):
            m.d.sync += first[b].eq(wr_slot)
        with m.If((frame_done & half | close) & here):
            m.d.sync += [full[b].eq(1), lone[b].eq(close), stay[b].eq(close & (wr_sf != 0))]
        with m.If(done & (rd_bank == b)):
            m.d.sync += full[b].eq(0)
    with m.If(done & ~Mux(rd_bank, stay[1], stay[0])):
        m.d.sync += rd_bank.eq(~rd_bank)
    x = Cat(ports[0][1].data, ports[1][1].data)
    tag = Mux(rd_bank, Cat(lone[1], first[1]), Cat(lone[0], first[0]))
    return active, x, tag


class Unpair(wiring.Component):
    """A two-frame unit's results in frame order.

    In: one word per neuron fold, ``Cat(slot 0's word, slot 1's word, lone, first)``,
    ``folds`` words a pass (``lone`` and ``first`` constant over a pass). Out: slot
    ``first``'s ``folds`` words, then the other slot's unless the pass was ``lone``. Two
    banks of ``folds`` words, so a pass streams in while the one before leaves.
    """

    def __init__(self, width: int, folds: int) -> None:
        check_positive(width=width, folds=folds)
        self.width, self.folds = width, folds
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(2 * width + 2))),
            "o_stream": Out(stream.Signature(unsigned(width))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        w, n = self.width, self.folds
        i, o = self.i_stream, self.o_stream
        m.submodules.words = mem = memory.Memory(shape=unsigned(2 * w), depth=2 * n, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        full, lone, first = ([Signal(name=f"{n}{b}") for b in range(2)]
                             for n in ("full", "lone", "first"))
        wr_bank, rd_bank, half = Signal(), Signal(), Signal()  # half: the pass' second frame
        wr_k, rd_k = Signal(range(n)), Signal(range(n))
        take = i.valid & i.ready
        m.d.comb += [i.ready.eq(~Mux(wr_bank, full[1], full[0])),
                     wr.addr.eq(wr_bank * n + wr_k), wr.data.eq(i.payload[:2 * w]),
                     wr.en.eq(take)]
        with m.If(take):
            m.d.sync += wr_k.eq(Mux(wr_k == n - 1, 0, wr_k + 1))
            with m.If(wr_k == n - 1):
                m.d.sync += wr_bank.eq(~wr_bank)
        # the read port holds its word while the output waits; `half` picks the frame
        advance = ~o.valid | o.ready
        ready = Mux(rd_bank, full[1], full[0])
        alone = Mux(rd_bank, lone[1], lone[0])
        slot = half ^ Mux(rd_bank, first[1], first[0])
        half_q = Signal()  # the slot read
        m.d.comb += [rd.addr.eq(rd_bank * n + rd_k), rd.en.eq(advance),
                     o.payload.eq(Mux(half_q, rd.data[w:], rd.data[:w]))]
        finish = (rd_k == n - 1) & (half | alone)  # the bank's last word to send
        with m.If(advance):
            m.d.sync += [o.valid.eq(ready), half_q.eq(slot)]
            with m.If(ready):
                m.d.sync += rd_k.eq(Mux(rd_k == n - 1, 0, rd_k + 1))
                with m.If(rd_k == n - 1):
                    m.d.sync += half.eq(~half & ~finish)
                with m.If(finish):
                    m.d.sync += rd_bank.eq(~rd_bank)
        for b in range(2):
            with m.If(take & (wr_k == n - 1) & (wr_bank == b)):
                m.d.sync += [full[b].eq(1), lone[b].eq(i.payload[2 * w]),
                             first[b].eq(i.payload[2 * w + 1])]
            with m.If(advance & ready & finish & (rd_bank == b)):
                m.d.sync += full[b].eq(0)
        return m
