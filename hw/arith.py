"""Arithmetic building blocks of the MVUs: LUT-friendly adders, wires and pipeline registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, Value

__all__ = ["add", "adder_trees", "as_signed", "bits_on_wire", "reg", "wire"]


def as_signed(v: Value) -> Value:
    """``v`` as a signed value of the same numeric value (one more bit when unsigned)."""
    return v if v.shape().signed else Cat(v, Const(0, 1)).as_signed()


def add(m: Module, a: Value, b: Value) -> Value:
    """``a + b``; unsigned operands of at most two bits as logic, not a carry chain.

    The first two levels of a popcount add 1- and 2-bit values: as logic, each sum
    bit is one LUT4 of at most four inputs (the first level's XNORs included), where
    a carry chain would spend a carry cell on every bit.
    """
    if a.shape().signed or b.shape().signed or max(len(a), len(b)) > 2:
        return wire(m, a + b, keep=True)
    if len(a) == 1 and len(b) == 1:
        return wire(m, Cat(a ^ b, a & b))
    a, b = Cat(a, Const(0, 2 - len(a))), Cat(b, Const(0, 2 - len(b)))
    c0 = a[0] & b[0]
    return wire(m, Cat(a[0] ^ b[0], a[1] ^ b[1] ^ c0, (a[1] & b[1]) | (c0 & (a[1] ^ b[1]))))


def bits_on_wire(m: Module, bits: list[Value]) -> list[Value]:
    """One-bit values as the bits of one wire (:func:`wire`)."""
    out = wire(m, Cat(*bits))
    return [out[i] for i in range(len(bits))]


def wire(m: Module, value: Value, keep: bool = False) -> Signal:
    """``value`` on a wire of its own: later uses read the wire instead of re-emitting the
    expression (each use of an expression is a copy in the netlist, so a tree of
    expressions used more than once grows exponentially). ``keep`` stops yosys from
    merging a chain of additions into one multi-operand adder, which it maps to LUT full
    adders instead of carry chains."""
    out = Signal(value.shape(), attrs={"keep": 1} if keep else {})
    m.d.comb += out.eq(value)
    return out


def reg(m: Module, value: Value, en: Value, name: str, control: bool = False) -> Signal:
    """``value`` registered when ``en``; reset only where it is ``control`` (valid bits and
    the like): datapath registers have no reset, which on the iCE40 (whose flip-flops reset
    only when enabled) saves a LUT each and keeps the reset's fan-out small."""
    sig = Signal(value.shape(), name=name, reset_less=not control)
    with m.If(en):
        m.d.sync += sig.eq(value)
    return sig


def adder_trees(m: Module, lanes: list[list[Value]], ctl: Value, en: Value, levels_per_stage: int
                ) -> tuple[list[Value], Value]:
    """Pairwise adder trees over every lane's terms, registered (with ``en``) every
    ``levels_per_stage`` levels and at the root, the control word ``ctl`` beside them; the
    lanes' sums and the control word.

    Lanes with fewer terms (pruned sparse ones) are padded with constant zeros, so
    every lane has the same pipeline depth; synthesis removes the additions of zero.
    """
    longest = max(len(t) for t in lanes)
    lanes = [t + [Const(0, 1)] * (longest - len(t)) for t in lanes]
    # one-bit terms feed the logic half adders, which read each input twice: on a wire
    lanes = [bits_on_wire(m, t) if all(len(v) == 1 for v in t) else t for t in lanes]
    level = 0
    while len(lanes[0]) > 1:
        lanes = [[add(m, t[i], t[i + 1]) if i + 1 < len(t) else t[i]
                  for i in range(0, len(t), 2)] for t in lanes]
        level += 1
        if level % levels_per_stage == 0 or len(lanes[0]) == 1:
            lanes = [[reg(m, v, en, f"tree{level}_p{p}_{i}") for i, v in enumerate(t)]
                     for p, t in enumerate(lanes)]
            ctl = reg(m, ctl, en, f"tree{level}_ctl", control=True)
    return [t[0] for t in lanes], ctl
