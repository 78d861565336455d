"""The sliding-window unit: line buffers turning a pixel stream into convolution windows.

Input: one pixel (``c`` elements) per word, rows in raster order. The unit
keeps ``R`` input rows in a circular line buffer (one ``amaranth.lib.memory``
per row slot, ``w`` pixels deep) and emits, for every output pixel, its
``k x k x c`` window as ``k / lanes`` words of ``lanes * k * c`` elements.
Within a window the element order is ``(kx, ky, c)``, ``c`` fastest (the MVU's
weights are permuted to match, :func:`window_order`); positions outside the
image read as ``pad_value``.

A writer fills row slots as pixels arrive (one per cycle) while a reader emits
one word per cycle once every row its output row needs is complete; rows are
released when no later window needs them, so both run concurrently and a
frame's tail overlaps the next frame's head.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from bitfold.compiler.memlayout import line_buffer_rows

from .streams import check_positive

__all__ = ["SlidingWindow"]


class SlidingWindow(wiring.Component):
    """Convolution windows of a ``(h, w, c)`` map, padded with ``pad_value``.

    Parameters
    ----------
    h, w, c : int
        Input height, width and channels.
    elem_bits : int
        Bits per element.
    kernel, stride, pad : int
        Window geometry (``pad`` rows and columns on every side).
    pad_value : int
        Stored element value of padding (a bit for bipolar maps).
    lanes : int
        Window columns (``kx``) per output word; must divide ``kernel``.
    """

    def __init__(self, h: int, w: int, c: int, elem_bits: int, kernel: int, stride: int = 1,
                 pad: int = 0, pad_value: int = 0, lanes: int = 1) -> None:
        check_positive(h=h, w=w, c=c, elem_bits=elem_bits, kernel=kernel, stride=stride,
                       lanes=lanes)
        if not isinstance(pad, int) or pad < 0:
            raise ValueError(f"pad must be a non-negative integer, not {pad!r}")
        if kernel % lanes:
            raise ValueError(f"lanes must divide the kernel {kernel}, not {lanes!r}")
        if not 0 <= pad_value < (1 << elem_bits):
            raise ValueError(f"pad_value must be a stored {elem_bits}-bit value, not {pad_value!r}")
        self.oh = (h + 2 * pad - kernel) // stride + 1
        self.ow = (w + 2 * pad - kernel) // stride + 1
        if self.oh < 1 or self.ow < 1:
            raise ValueError(f"kernel {kernel} does not fit the padded {h}x{w} input")
        self.h, self.w, self.c, self.elem_bits = h, w, c, elem_bits
        self.kernel, self.stride, self.pad, self.pad_value = kernel, stride, pad, pad_value
        self.lanes = lanes
        self.rows = line_buffer_rows(h, kernel, stride, pad)
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(c * elem_bits))),
            "o_stream": Out(stream.Signature(unsigned(lanes * kernel * c * elem_bits))),
        })

    @property
    def words_per_window(self) -> int:
        return self.kernel // self.lanes

    def _mod_rows(self, value):
        r = self.rows
        return Mux(value >= r, value - r, value)

    def elaborate(self, platform) -> Module:
        m = Module()
        slots = [memory.Memory(shape=unsigned(self.c * self.elem_bits), depth=self.w, init=[])
                 for _ in range(self.rows)]
        for n, mem in enumerate(slots):
            m.submodules[f"row{n}"] = mem
        filled = Signal(range(self.rows + 1))  # complete rows held (in order from the reader's first)
        row_done = Signal()
        release = Signal(range(self.h + 1))
        self._writer(m, slots, filled, row_done)
        m.d.sync += filled.eq(filled + row_done - release)
        self._reader(m, slots, filled, release)
        return m

    def _writer(self, m: Module, slots: list[memory.Memory], filled: Signal,
                row_done: Signal) -> None:
        """One pixel per cycle into row slot ``wslot`` while a slot is free; ``row_done``
        when a row is complete."""
        w, i = self.w, self.i_stream
        wx = Signal(range(w))
        wslot = Signal(range(self.rows))
        m.d.comb += i.ready.eq(filled < self.rows)
        w_go = i.valid & i.ready
        for n, mem in enumerate(slots):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(wx), wp.data.eq(i.payload), wp.en.eq(w_go & (wslot == n))]
        with m.If(w_go):
            m.d.sync += wx.eq(Mux(wx == w - 1, 0, wx + 1))
            with m.If(wx == w - 1):
                m.d.comb += row_done.eq(1)
                m.d.sync += wslot.eq(self._mod_rows(wslot + 1))

    def _reader(self, m: Module, slots: list[memory.Memory], filled: Signal,
                release: Signal) -> None:
        """One word (``lanes`` window columns x ``k`` rows) per cycle once every row its
        output row needs is complete; ``release`` the rows no later window needs."""
        h, w, k, s, p = self.h, self.w, self.kernel, self.stride, self.pad
        lanes, oh, ow, o = self.lanes, self.oh, self.ow, self.o_stream
        en = Signal()
        m.d.comb += en.eq(~o.valid | o.ready)
        oy = Signal(range(oh))
        ox = Signal(range(ow))
        g = Signal(range(max(2, k // lanes)))
        row0 = Signal(signed(max(h, p, s * oh).bit_length() + 2), init=-p)
        col0 = Signal(signed(max(w, p, s * ow).bit_length() + 2), init=-p)
        rel = Signal(range(h + 1))  # rows of this frame released so far
        rslot0 = Signal(range(self.rows))  # slot of row `rel`
        last_row = oy == oh - 1
        need = Signal(signed(len(row0) + 1))
        m.d.comb += need.eq(Mux(last_row, h - 1,
                                Mux(row0 + max(k, s) - 1 > h - 1, h - 1, row0 + max(k, s) - 1)))
        rows_ok = need < rel + filled
        rd_go = en & rows_ok
        end_px = g == k // lanes - 1
        end_row = end_px & (ox == ow - 1)
        with m.If(rd_go):
            m.d.sync += g.eq(Mux(end_px, 0, g + 1))
            with m.If(end_px):
                m.d.sync += [ox.eq(Mux(ox == ow - 1, 0, ox + 1)),
                             col0.eq(Mux(ox == ow - 1, -p, col0 + s))]
            with m.If(end_row):
                nxt = row0 + s
                new_rel = Mux(last_row, h, Mux(nxt < 0, 0, Mux(nxt > h, h, nxt)))
                n_rel = (new_rel - rel)[:len(release)]
                m.d.comb += release.eq(n_rel)
                m.d.sync += [oy.eq(Mux(last_row, 0, oy + 1)),
                             row0.eq(Mux(last_row, -p, nxt)),
                             rel.eq(Mux(last_row, 0, new_rel)),
                             rslot0.eq(self._mod_rows(rslot0 + n_rel))]
        self._read_words(m, slots, en, rows_ok, row0, col0, g, rel, rslot0)

    def _read_words(self, m: Module, slots: list[memory.Memory], en: Signal, rows_ok: Value,
                    row0: Signal, col0: Signal, g: Signal, rel: Signal, rslot0: Signal) -> None:
        """The read addresses (a column per lane, a slot per ``ky``), the padding flags that
        travel with the read, and the output word."""
        h, w, k, r, lanes, o = self.h, self.w, self.kernel, self.rows, self.lanes, self.o_stream
        sel = []
        inside = []
        for ky in range(k):
            row = row0 + ky
            sel.append(self._mod_rows(rslot0 + (row - rel)[:len(rslot0) + 1])[:len(rslot0)])
            inside.append((row >= 0) & (row < h))
        cols = []
        for j in range(lanes):
            col = col0 + g * lanes + j
            cols.append(col)
            inside.append((col >= 0) & (col < w))
        sel_r = Signal(len(rslot0) * k, name="sel_r")
        inside_r = Signal(k + lanes, name="inside_r")
        valid_r = Signal(name="valid_r")
        with m.If(en):
            m.d.sync += [sel_r.eq(Cat(*sel)), inside_r.eq(Cat(*inside)), valid_r.eq(rows_ok)]
        data: list[list[Value]] = [[] for _ in range(lanes)]
        for mem in slots:
            for j in range(lanes):
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(cols[j][:len(rp.addr)]), rp.en.eq(en)]
                data[j].append(rp.data)
        pad = Const(self.pad_value, self.elem_bits)
        pad_pix = Cat(*([pad] * self.c))
        words = []
        for j in range(lanes):
            for ky in range(k):
                slot = sel_r[ky * len(rslot0):(ky + 1) * len(rslot0)] if len(rslot0) else 0
                picked = Array(data[j])[slot] if r > 1 else data[j][0]
                words.append(Mux(inside_r[ky] & inside_r[k + j], picked, pad_pix))
        out_valid = Signal()
        out_word = Signal(len(o.payload))
        with m.If(en):
            m.d.sync += [out_valid.eq(valid_r), out_word.eq(Cat(*words))]
        m.d.comb += [o.valid.eq(out_valid), o.payload.eq(out_word)]
