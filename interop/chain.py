"""The elementwise ONNX nodes between an integer accumulator and the next quantizer.

Between a binary layer's accumulator and the next quantizer a QONNX graph
holds elementwise float32 arithmetic (batch norm, ``Add``/``Mul`` of constants,
a FINN ``MultiThreshold``). The importer keeps those nodes as a :class:`Chain`
of per-channel :class:`Step` s and turns them into integers in two ways:

* :meth:`Chain.affine` composes them in exact rationals into one real affine per
  channel, ``slope * acc + offset`` (batch norm's square root is the float64 one),
  for the class scores (``AffineArgMax``);
* :meth:`Chain.thresholds` settles each channel's sign *by executing the nodes
  themselves* with qonnx on integer accumulator values: the threshold is the
  least accumulator (the greatest, for a falling channel) for which the model's
  own float32 arithmetic gives ``+1``, found by bisection (every step is
  monotone, in float32 too). So an imported threshold agrees with the ONNX
  execution on every accumulator value, including the ties and roundings where
  exact arithmetic would differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import UnsupportedNodeError
from .onnx_model import run_nodes

__all__ = ["AFFINE_OPS", "QUANTIZER_OPS", "Chain", "Step", "attr"]

AFFINE_OPS = ("Add", "Sub", "Mul", "Div", "BatchNormalization")
QUANTIZER_OPS = ("BipolarQuant", "MultiThreshold", "Sign", "Quant")


@dataclass
class Step:
    """One elementwise node: ``op`` with its attributes and operands, constants per channel.

    ``operands`` are ``None`` for the running value or a float32 array ``(C,)``
    (``(C, B)`` thresholds of a ``MultiThreshold``); ``node`` is the original node
    (for error messages and its attributes).
    """

    node: Any
    operands: list[np.ndarray | None]


@dataclass
class Chain:
    """Elementwise steps applied to ``mul[c] * acc + add[c]``, the ONNX value of an accumulator.

    ``mul`` and ``add`` are exact rationals per channel: what the ONNX ``MatMul``
    or ``Conv`` computes from the IR's integer accumulator ``acc`` (a popcount or
    a signed sum), exactly so whenever float32 holds those integers.
    """

    mul: list[Fraction]
    add: list[Fraction]
    steps: list[Step] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return len(self.mul)

    # ----------------------------------------------------------------- exact composition

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(slope, offset)`` float64 per channel: the steps composed in exact rationals."""
        k, c = list(self.mul), list(self.add)
        for step in self.steps:
            op, ops = step.node.op_type, step.operands
            if op == "BatchNormalization":
                eps = Fraction(attr(step.node, "epsilon", 1e-5))
                gamma, beta, mean, var = ops[1:]
                for i in range(self.channels):
                    m = Fraction(float(gamma[i])) / Fraction(
                        math.sqrt(float(Fraction(float(var[i])) + eps)))
                    k[i], c[i] = k[i] * m, (c[i] - Fraction(float(mean[i]))) * m + \
                        Fraction(float(beta[i]))
                continue
            if op == "Cast":
                continue
            const = next(o for o in ops if o is not None)
            first = ops[0] is None
            for i in range(self.channels):
                a = Fraction(float(const[i]))
                if op == "Add":
                    c[i] += a
                elif op == "Sub":
                    k[i], c[i] = (k[i], c[i] - a) if first else (-k[i], a - c[i])
                elif op == "Mul":
                    k[i], c[i] = k[i] * a, c[i] * a
                elif op == "Div" and first and a != 0:
                    k[i], c[i] = k[i] / a, c[i] / a
                else:
                    raise UnsupportedNodeError(step.node, "only division by a non-zero "
                                               "constant is an affine map")
        return (np.array([float(v) for v in k]), np.array([float(v) for v in c]))

    # ----------------------------------------------------------------- executed thresholds

    def values(self, acc: np.ndarray) -> np.ndarray:
        """The ONNX values ``mul * acc + add`` (float32) of integer accumulators ``acc (R, C)``."""
        return np.array([[float(self.mul[c] * int(a) + self.add[c]) for c, a in enumerate(row)]
                         for row in acc], dtype=np.float32)

    def execute(self, values: np.ndarray, quantizer: Step) -> np.ndarray:
        """Run the steps and ``quantizer`` with qonnx on float32 ``values (R, C)``."""
        from onnx import helper

        nodes, constants = [], {}
        current = "v0"
        for i, step in enumerate([*self.steps, quantizer]):
            names = []
            for j, operand in enumerate(step.operands):
                if operand is None:
                    names.append(current)
                    continue
                key = f"c{i}_{j}"
                keep = operand.ndim != 1 or step.node.op_type == "BatchNormalization"
                shape = operand.shape if keep else (1, len(operand))
                constants[key] = np.asarray(operand, np.float32).reshape(shape)
                names.append(key)
            out = f"v{i + 1}"
            node = helper.make_node(step.node.op_type, names, [out], domain=step.node.domain)
            node.attribute.extend(a for a in step.node.attribute if a.name != "data_layout")
            nodes.append(node)
            current = out
        return run_nodes(nodes, constants, {"v0": values}, current)

    def thresholds(self, quantizer: Step, lo: list[int], hi: list[int],
                   level: tuple[float, float]) -> list[tuple[int, int | None]]:
        """Each channel's sign as ``(direction, boundary)``, decided by executing the steps.

        ``level`` is ``(alpha, beta)``: the quantizer outputs ``alpha * b + beta``
        for the bipolar ``b``. Returns per channel ``(+1, T)`` (``b = +1`` exactly
        where ``acc >= T``), ``(-1, R)`` (exactly where ``acc <= R``) or
        ``(0, +1 / -1)`` (constant on ``lo .. hi``).
        """
        alpha, beta = level
        lo_a, hi_a = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)

        def bipolar(acc: np.ndarray) -> np.ndarray:
            out = self.execute(self.values(acc[None]), quantizer)[0].astype(np.float64)
            return (out - beta) / alpha

        b_lo, b_hi = bipolar(lo_a), bipolar(hi_a)
        rising = (b_lo <= 0) & (b_hi > 0)
        falling = (b_lo > 0) & (b_hi <= 0)
        below, above = lo_a.copy(), hi_a.copy()  # invariant: the sign changes within (below, above]
        for _ in range(64):  # bisection; 64 halvings cover every int64 range
            open_ = (rising | falling) & (above - below > 1)
            if not open_.any():
                break
            mid = np.where(open_, (below + above) // 2, below)
            pos = bipolar(mid) > 0
            up = open_ & (pos == rising)  # the change is at or below mid
            above = np.where(up, mid, above)
            below = np.where(open_ & ~up, mid, below)
        # The boundary values must be +-1 exactly: Sign(0) = 0 is no binary value.
        edge = np.where(rising, above, np.where(falling, below, lo_a))
        other = np.where(rising, below, np.where(falling, above, hi_a))
        for values in (bipolar(edge), bipolar(other)):
            bad = ~np.isclose(np.abs(values), 1.0)
            if bad.any():
                c = int(np.argmax(bad))
                raise UnsupportedNodeError(
                    quantizer.node, f"channel {c} gives {values[c] * alpha + beta:g}, neither of "
                    "its two binary levels (Sign(0) is 0 in ONNX)")
        out: list[tuple[int, int | None]] = []
        for c in range(self.channels):
            if rising[c]:
                out.append((1, int(above[c])))
            elif falling[c]:
                out.append((-1, int(below[c])))
            else:
                out.append((0, 1 if b_lo[c] > 0 else -1))
        return out


def attr(node: Any, name: str, default: Any) -> Any:
    """The value of ``node``'s attribute ``name``, or ``default``."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default
