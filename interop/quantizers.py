"""What each QONNX / FINN quantizer node means for the IR: its levels and its operands.

A quantizer outputs ``alpha * x + beta`` for the IR value ``x``: ``x = +-1`` for a
binary quantizer (``BipolarQuant``, a 1-bit signed ``Quant``, ``Sign``, a
``MultiThreshold`` with one threshold), ``x = 0 .. 2**bits - 1`` for the unsigned
multi-bit quantizer bitfold takes on the graph input only (``Quant``, or a
``MultiThreshold`` with several thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .chain import attr
from .errors import UnsupportedNodeError
from .layout import scalar

__all__ = ["Level", "input_levels", "quantizer_level"]


@dataclass
class Level:
    """A quantizer's output ``alpha * x + beta``; ``operands`` as the chain executes it."""

    bipolar: bool
    alpha: Fraction
    beta: Fraction
    operands: list[np.ndarray | None]
    bits: int = 1


def _f(v: float) -> Fraction:
    return Fraction(float(np.float32(v)))


def _scalars(node: Any, model: Any, names: tuple[str, ...]) -> list[float]:
    return [scalar(node, model.get_initializer(i), what) for i, what in
            zip(node.input[1:], names, strict=False)]


def _quant(node: Any, model: Any, on_input: bool) -> Level:
    scale, zeropt, bits = _scalars(node, model, ("scale", "zeropt", "bitwidth"))
    signed = bool(attr(node, "signed", 1))
    operands = [None, *(np.array(v, np.float32) for v in (scale, zeropt, bits))]
    if scale <= 0:
        raise UnsupportedNodeError(node, "its scale must be positive", model=model)
    if bits == 1 and signed:
        return Level(True, _f(scale), Fraction(0), operands)
    if not on_input:
        raise UnsupportedNodeError(node, f"it quantizes activations to {bits:g} bits; bitfold's "
                                   "layers take binary (1-bit) activations, and multi-bit values "
                                   "only as the network's input", model=model)
    if signed or zeropt != 0:
        raise UnsupportedNodeError(node, "a multi-bit input must be unsigned with zero point 0 "
                                   "(the first layer takes unsigned integers)", model=model)
    return Level(False, _f(scale), Fraction(0), operands, int(bits))


def _multithreshold(node: Any, model: Any, on_input: bool) -> Level:
    thresholds = model.get_initializer(node.input[1])
    if thresholds is None or np.ndim(thresholds) != 2:
        raise UnsupportedNodeError(node, "its thresholds must be a constant (channels, steps)")
    if str(attr(node, "data_layout", "") or "") in ("NHWC", "NWC"):
        raise UnsupportedNodeError(node, "channels-last (NHWC) thresholds are not supported; "
                                   "import the graph before FINN's channels-last conversion")
    scale, bias = float(attr(node, "out_scale", 1.0)), float(attr(node, "out_bias", 0.0))
    steps = thresholds.shape[1]
    if scale == 0:
        raise UnsupportedNodeError(node, "out_scale 0 gives a constant")
    if on_input:
        if not np.all(thresholds == thresholds[:1]):
            raise UnsupportedNodeError(node, "per-channel thresholds on the input are not "
                                       "supported (the input encoding is one table for all pixels)")
        thresholds = thresholds[:1]
    operands = [None, np.asarray(thresholds, np.float32)]
    if steps == 1:
        return Level(True, _f(scale) / 2, _f(bias) + _f(scale) / 2, operands)
    if not on_input:
        raise UnsupportedNodeError(node, f"it has {steps} thresholds per channel, a multi-bit "
                                   "activation; bitfold's layers take binary activations (one "
                                   "threshold)")
    return Level(False, _f(scale), _f(bias), operands, int(steps).bit_length())


def quantizer_level(node: Any, model: Any, on_input: bool = False) -> Level:
    """The levels of quantizer ``node``; refuse what the IR cannot hold there."""
    op = node.op_type
    if op == "BipolarQuant":
        (scale,) = _scalars(node, model, ("scale",))
        if scale <= 0:
            raise UnsupportedNodeError(node, "its scale must be positive", model=model)
        return Level(True, _f(scale), Fraction(0), [None, np.array(scale, np.float32)])
    if op == "Quant":
        return _quant(node, model, on_input)
    if op == "MultiThreshold":
        return _multithreshold(node, model, on_input)
    if op == "Sign":
        return Level(True, Fraction(1), Fraction(0), [None])
    raise UnsupportedNodeError(node, "not a quantizer", model=model)


def input_levels(node: Any, model: Any) -> Level:
    """The levels of the graph input's quantizer (multi-bit unsigned allowed)."""
    return quantizer_level(node, model, on_input=True)
