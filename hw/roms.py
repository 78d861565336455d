"""The memories of a matrix-vector unit: its weight memory and its per-neuron ROMs
(thresholds, polarities, domain offsets), placed as the folding's cost decided."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Shape, Value, unsigned
from amaranth.lib import memory

from bitfold.compiler.memlayout import fold_words, rom_in_block_ram

from .arith import reg

__all__ = ["fold_rom", "weight_memory"]


def weight_memory(m: Module, words: list[int], width: int, kind: str, forced: int, addr: Value,
                  en: Value) -> Value:
    """The ``width``-bit weight word at ``addr`` of ``words``: a constant, a LUT ROM (its output
    registered with ``en``) or a synchronous read (``kind``, the folding's); with ``forced``,
    the low ``forced`` bits in a memory of their own forced into block RAM
    (``rom_style = "block"``) and the rest in Yosys' hands."""
    if kind == "constant":
        return Const(words[0], width)
    if forced:  # two memories: the low bits forced into block RAM, the rest Yosys' choice
        parts = []
        for name, lo, hi, attrs in (("weights_block", 0, forced, {"rom_style": "block"}),
                                    ("weights", forced, width, None)):
            if hi > lo:
                mask = (1 << (hi - lo)) - 1
                m.submodules[name] = part = memory.Memory(
                    shape=unsigned(hi - lo), depth=len(words),
                    init=[(w >> lo) & mask for w in words], attrs=attrs)
                rd = part.read_port()
                m.d.comb += [rd.addr.eq(addr), rd.en.eq(en)]
                parts.append(rd.data)
        return Cat(*parts)
    m.submodules.weights = mem = memory.Memory(shape=unsigned(width), depth=len(words),
                                                init=words)
    if kind == "lutrom":
        rd = mem.read_port(domain="comb")
        m.d.comb += rd.addr.eq(addr)
        return reg(m, rd.data, en, "w_lut")
    rd = mem.read_port()
    m.d.comb += [rd.addr.eq(addr), rd.en.eq(en)]
    return rd.data


def fold_rom(m: Module, name: str, values, shape: Shape, nf: Value, folds: int, pe: int,
             lutrom_max_depth: int, en: Value | None = None) -> list[Value]:
    """Each of ``pe`` lanes' value for fold ``nf`` of a per-neuron ROM of ``folds`` words
    (:func:`~bitfold.compiler.memlayout.fold_words`); constants when there is one fold. Read
    combinationally, or with ``en`` synchronously: the values of the ``nf`` of this cycle
    appear in the next cycle the pipeline advances."""
    values = [int(v) for v in np.asarray(values).reshape(-1)]
    if folds == 1:
        return [Const(v, shape) for v in values]
    # read synchronously and deeper than a LUT ROM: a block RAM (yosys would build a
    # few-kbit ROM from LUTs, a LUT4 per 16 bits plus the multiplexers)
    block = en is not None and rom_in_block_ram(folds, lutrom_max_depth)
    m.submodules[name] = mem = memory.Memory(shape=unsigned(pe * shape.width), depth=folds,
                                             init=fold_words(values, pe, shape.width),
                                             attrs={"rom_style": "block"} if block else None)
    if en is None:
        rd = mem.read_port(domain="comb")
    else:
        rd = mem.read_port()
        m.d.comb += rd.en.eq(en)
    m.d.comb += rd.addr.eq(nf)
    lanes = [rd.data.word_select(p, shape.width) for p in range(pe)]
    return [v.as_signed() for v in lanes] if shape.signed else lanes
