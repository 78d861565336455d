"""Arithmetic building blocks of the MVUs: LUT-friendly adders, wires and pipeline registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, Value

__all__ = ["add", "as_signed", "bits_on_wire", "reg", "wire"]


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
