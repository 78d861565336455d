"""The importer's node handlers on binary activations and on accumulators.

:func:`act_step` handles a node reading binary activations (a binary layer,
max pooling, padding, layout changes, scalar arithmetic on the levels);
:func:`acc_step` a node reading a layer's accumulator (the elementwise chain,
max pooling before the sign, the quantizer, a final softmax). Both return the
new tensor's description, or ``None`` for a node they do not take.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from bitfold.compiler.encodings import Binary
from bitfold.compiler.ir import AffineSign, Layer, MaxPool2d, TensorType, Window
from bitfold.compiler.verify import channel_ranges

from .chain import Chain, Step, attr
from .errors import UnsupportedNodeError
from .layout import binary_weight, canonical, is_canonical, per_channel, scalar
from .quantizers import quantizer_level
from .values import FINAL_OPS, LAYOUT_OPS, MVU_OPS, _Acc, _Act, _Final

__all__ = ["acc_step", "act_step"]

ARITH_OPS = ("Add", "Sub", "Mul", "Div")
QUANTIZERS = ("BipolarQuant", "Quant", "MultiThreshold", "Sign")


def _ir_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def _pool(node: Any) -> tuple[int, int]:
    """``(kernel, stride)`` of a square, unpadded, floor-mode ``MaxPool``."""
    k = list(attr(node, "kernel_shape", []))
    s = list(attr(node, "strides", k[:1] * len(k)) or [1, 1])
    pads, dil = list(attr(node, "pads", [0] * 4)), list(attr(node, "dilations", [1, 1]))
    if len(k) != 2 or k[0] != k[1] or len(set(s)) != 1 or any(pads) or set(dil) != {1} \
            or attr(node, "ceil_mode", 0) or attr(node, "auto_pad", "NOTSET") not in (
                "NOTSET", b"NOTSET", "VALID", b"VALID"):
        raise UnsupportedNodeError(node, "only square, unpadded, floor-mode max pooling maps to "
                                   "the IR's MaxPool2d")
    return int(k[0]), int(s[0])


def _pooled(shape: tuple[int, ...], k: int, s: int) -> tuple[int, int, int]:
    c, h, w = shape
    return c, (h - k) // s + 1, (w - k) // s + 1


# --------------------------------------------------------------------------- activations


def act_step(imp: Any, node: Any, x: _Act) -> Any:
    op = node.op_type
    if x.pad is not None and op != "Conv":
        raise UnsupportedNodeError(node, "a constant Pad must feed a Conv directly")
    if op in LAYOUT_OPS:
        return _Act(x.ir, imp.layout(node, x.perm), x.bipolar, x.alpha, x.beta)
    if op in ARITH_OPS:
        const = next(i for i in node.input if imp.const(i) is not None)
        c, first = Fraction(scalar(node, imp.const(const))), imp.const(node.input[0]) is None
        a, b = x.alpha, x.beta
        if op == "Add":
            b += c
        elif op == "Sub":
            a, b = (a, b - c) if first else (-a, c - b)
        elif op == "Mul":
            a, b = a * c, b * c
        elif first and c != 0:
            a, b = a / c, b / c
        else:
            raise UnsupportedNodeError(node, "only division by a non-zero constant keeps "
                                       "binary values binary")
        if a == 0:
            raise UnsupportedNodeError(node, "it makes the activations constant")
        return _Act(x.ir, x.perm, x.bipolar, a, b)
    if op == "Pad":
        return _pad(imp, node, x)
    if op == "MaxPool":
        if not x.bipolar or x.alpha <= 0 or x.perm.ndim != 3 or not is_canonical(x.perm):
            raise UnsupportedNodeError(node, "max pooling needs binary activations (rising "
                                       "levels) of a feature map in its own layout")
        k, s = _pool(node)
        name = imp.ir_name(node)
        shape = _pooled(x.perm.shape, k, s)
        imp.add(MaxPool2d(name, x.ir, k, s), TensorType(_ir_shape(shape), 1, True))
        return _Act(name, canonical(shape), True, x.alpha, x.beta)
    if op in MVU_OPS:
        return _conv(imp, node, x) if op == "Conv" else _dense(imp, node, x)
    return None


def _ir_value(node: Any, x: _Act, value: float, top: int) -> int:
    """The IR value whose ONNX value is ``value`` (a padding constant)."""
    v = (Fraction(value) - x.beta) / x.alpha
    ok = v in (-1, 1) if x.bipolar else (v.denominator == 1 and 0 <= v <= top)
    if not ok:
        raise UnsupportedNodeError(node, f"it pads with {value:g}, which is not one of the "
                                   "input's levels (the IR pads binary maps with -1 or +1)")
    return int(v)


def _pad(imp: Any, node: Any, x: _Act) -> _Act:
    pads = attr(node, "pads", None)
    if pads is None and len(node.input) > 1:
        pads = imp.const(node.input[1])
    value = attr(node, "value", 0.0)
    if len(node.input) > 2 and node.input[2]:
        value = scalar(node, imp.const(node.input[2]), "constant value")
    mode = attr(node, "mode", "constant")
    pads = [int(p) for p in (pads if pads is not None else [])]
    if mode not in ("constant", b"constant") or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) \
            or len(set(pads[2:4] + pads[6:8])) != 1 or x.perm.ndim != 3:
        raise UnsupportedNodeError(node, "only constant padding of a feature map, the same on "
                                   "every side, maps to a convolution's padding")
    top = imp.types[x.ir].hi
    return _Act(x.ir, x.perm, x.bipolar, x.alpha, x.beta, (pads[2], _ir_value(node, x, value, top)))


def _chain(x: _Act, scales: np.ndarray, rowsum: np.ndarray, fan_in: int) -> Chain:
    """The ONNX value of the layer's outputs as ``mul * acc + add`` of the IR accumulator."""
    mul, add = [], []
    for s, r in zip(scales, rowsum, strict=True):
        s = Fraction(float(s))
        if x.bipolar:  # sum (a b + c) s w = a s (2 p - F) + c s rowsum
            mul.append(2 * x.alpha * s)
            add.append(-x.alpha * s * fan_in + x.beta * s * int(r))
        else:  # sum (a q + c) s w = a s acc + c s rowsum
            mul.append(x.alpha * s)
            add.append(x.beta * s * int(r))
    return Chain(mul, add)


def _bias(node: Any, imp: Any, chain: Chain, index: int) -> None:
    """A Gemm/Conv bias as an ``Add`` step of the chain (as the model adds it, in float32)."""
    from onnx import helper

    if len(node.input) > index and node.input[index]:
        bias = imp.const(node.input[index])
        if bias is None:
            raise UnsupportedNodeError(node, "its bias is computed, not a constant")
        add = helper.make_node("Add", ["x", "b"], ["y"], name=f"{node.name}_bias")
        vector = np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (chain.channels,))
        chain.steps.append(Step(add, [None, np.ascontiguousarray(vector)]))


def _dense(imp: Any, node: Any, x: _Act) -> _Acc:
    op = node.op_type
    w = imp.const(node.input[1])
    if op == "Gemm":
        if attr(node, "transA", 0) or attr(node, "alpha", 1.0) != 1 or attr(node, "beta", 1.0) != 1:
            raise UnsupportedNodeError(node, "only Gemm with transA=0, alpha=1, beta=1")
        if w is not None and attr(node, "transB", 0):
            w = np.asarray(w).T
    if x.perm.ndim != 1:
        raise UnsupportedNodeError(node, f"its input has shape {list(x.perm.shape)}; flatten it "
                                   "(Flatten or Reshape) before a dense layer")
    if w is None or np.ndim(w) != 2 or w.shape[0] != x.perm.size:
        raise UnsupportedNodeError(node, f"its weights must be a constant ({x.perm.size}, outputs)")
    if op == "XnorPopcountMatMul":
        if not (x.bipolar and x.alpha == x.beta == Fraction(1, 2)) or not np.isin(w, (0, 1)).all():
            raise UnsupportedNodeError(node, "XnorPopcountMatMul needs binary {0, 1} inputs and "
                                       "weights")
        bits, chain = np.asarray(w, np.uint8), None
    else:
        bits, scales = binary_weight(node, w, axis=1)
    weight = np.zeros((bits.shape[1], bits.shape[0]), np.uint8)
    weight[:, x.perm] = bits.T  # column j of the ONNX input is the IR's element perm[j]
    name = imp.ir_name(node)
    imp.add(Layer(name, x.ir, Binary(weight)))
    if op == "XnorPopcountMatMul":  # the popcount itself
        chain = Chain([Fraction(1)] * bits.shape[1], [Fraction(0)] * bits.shape[1])
    else:
        chain = _chain(x, scales, (2 * bits.astype(int) - 1).sum(axis=0), bits.shape[0])
        _bias(node, imp, chain, 2)
    return _Acc(name, chain, (bits.shape[1],), tensor=node.output[0])


def _conv(imp: Any, node: Any, x: _Act) -> _Acc:
    w = imp.const(node.input[1])
    k = list(attr(node, "kernel_shape", list(np.shape(w))[2:]))
    strides = list(attr(node, "strides", [1, 1]))
    pads = list(attr(node, "pads", [0, 0, 0, 0]))
    if attr(node, "group", 1) != 1 or set(attr(node, "dilations", [1, 1])) != {1} or len(k) != 2 \
            or k[0] != k[1] or len(set(strides)) != 1 or len(set(pads)) != 1 \
            or attr(node, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        raise UnsupportedNodeError(node, "only square, ungrouped, undilated convolutions with "
                                   "equal strides and padding on every side")
    if x.perm.ndim != 3 or not is_canonical(x.perm) or np.ndim(w) != 4 or \
            np.shape(w)[1] != x.perm.shape[0]:
        raise UnsupportedNodeError(node, "a convolution needs a (C, H, W) feature map in its own "
                                   "layout and constant weights (C_out, C, k, k)")
    bits, scales = binary_weight(node, w, axis=0)
    if x.pad is not None:
        if pads[0]:
            raise UnsupportedNodeError(node, "it pads a map a Pad node padded already")
        pad, pad_value = x.pad
    else:
        pad = int(pads[0])
        pad_value = _ir_value(node, x, 0.0, imp.types[x.ir].hi) if pad else (-1 if x.bipolar
                                                                              else 0)
    name = imp.ir_name(node)
    imp.add(Layer(name, x.ir, Binary(bits.transpose(0, 2, 3, 1)),
                  Window(int(k[0]), int(strides[0]), pad, pad_value)))
    c, h, w_ = x.perm.shape
    out = (bits.shape[0], (h + 2 * pad - k[0]) // strides[0] + 1,
           (w_ + 2 * pad - k[0]) // strides[0] + 1)
    chain = _chain(x, scales, (2 * bits.astype(int) - 1).reshape(len(bits), -1).sum(axis=1),
                   int(np.prod(bits.shape[1:])))
    _bias(node, imp, chain, 2)
    return _Acc(name, chain, out, tensor=node.output[0])


# --------------------------------------------------------------------------- accumulators


def acc_step(imp: Any, node: Any, x: _Acc) -> Any:
    op = node.op_type
    if x.pool is not None and op not in QUANTIZERS:
        raise UnsupportedNodeError(node, "a MaxPool between a layer and its quantizer must be "
                                   "followed by the quantizer directly")
    if op in ARITH_OPS or op == "BatchNormalization":
        if op == "Div" and imp.const(node.input[0]) is not None:
            raise UnsupportedNodeError(node, "dividing by a tensor is not an affine map")
        if op == "BatchNormalization":  # scale, bias, mean, var: one value per channel (axis 1)
            operands = [None, *(_bn_param(node, imp.const(i), x.shape[0]) for i in node.input[1:5])]
        else:
            operands = [None if imp.const(i) is None else per_channel(node, imp.const(i), x.shape)
                        for i in node.input]
        steps = [*x.chain.steps, Step(node, operands)]
        return _Acc(x.ir, Chain(x.chain.mul, x.chain.add, steps), x.shape, tensor=node.output[0])
    if op == "Cast":  # of exact integers (an exported model's int64 scores): no change of value
        steps = [*x.chain.steps, Step(node, [None])]
        return _Acc(x.ir, Chain(x.chain.mul, x.chain.add, steps), x.shape, tensor=node.output[0])
    if op == "MaxPool":
        if len(x.shape) != 3:
            raise UnsupportedNodeError(node, "max pooling needs a feature map")
        _pool(node)
        return _Acc(x.ir, x.chain, x.shape, pool=node, tensor=node.output[0])
    if op in QUANTIZERS:
        return _quantize(imp, node, x)
    if op in FINAL_OPS:
        return _Final(x, node)
    return None


def _bn_param(node: Any, value: np.ndarray | None, channels: int) -> np.ndarray:
    if value is None or np.size(value) != channels:
        raise UnsupportedNodeError(node, f"its parameters must be {channels} constants, one per "
                                   "channel")
    return np.asarray(value, np.float32).reshape(-1)


def _quantize(imp: Any, node: Any, x: _Acc) -> _Act:
    """The sign of each channel as ``AffineSign``, settled by the model's own arithmetic."""
    level = quantizer_level(node, imp.model)
    src = next(n for n in imp.nodes if n.name == x.ir)
    ranges = channel_ranges(src, imp.types[src.input])
    signs = x.chain.thresholds(Step(node, level.operands), [r[0] for r in ranges],
                               [r[1] for r in ranges], (float(level.alpha), float(level.beta)))
    # acc >= T  <=>  acc - T + 1/2 >= 0;  acc <= R  <=>  -acc + R + 1/2 >= 0 (exact in float64)
    slope = np.array([float(d) for d, _ in signs])
    offset = np.array([0.5 - v if d > 0 else (v + 0.5 if d < 0 else float(v)) for d, v in signs])
    name = imp.ir_name(node)
    imp.add(AffineSign(name, x.ir, slope, offset), TensorType(_ir_shape(x.shape), 1, True))
    shape = x.shape
    if x.pool is not None:
        if level.alpha <= 0:
            raise UnsupportedNodeError(node, "a MaxPool before a falling quantizer is a minimum")
        k, s = _pool(x.pool)
        shape = _pooled(shape, k, s)
        pooled = imp.ir_name(x.pool)
        imp.add(MaxPool2d(pooled, name, k, s), TensorType(_ir_shape(shape), 1, True))
        name = pooled
    return _Act(name, canonical(shape), True, level.alpha, level.beta)
