"""A binary ResNet whose shortcut is the IR's integer stream, trained that way.

``resnet8`` (Bulat et al.'s pre-activation unit, sized for 28x28 or 32x32 images):
a binary 3x3 stem on the multi-bit pixels, then six units

    r' = sat(q + skip),  q = sat(floor(BN(conv(sign(r - tau))) * 2**FRAC + 1/2)) / 2**FRAC

in three stages of two (``width``, ``2 width``, ``4 width`` channels; the first unit of
the second and third stage has stride 2, its skip the stream average-pooled on the
stream's grid and zero-extended to the new channels), then ``sign(r - tau)``, a binary
dense layer and batch norm for the class scores. The stream ``r`` is a signed fixed-point
value of :data:`STREAM_BITS` bits, :data:`STREAM_FRAC` of them fractional, in training as
in the IR (docs/ir.md, "Residual streams"): every rounding and saturation of the
hardware is in the forward pass, with straight-through gradients.

In eval mode, once ``input_scale`` is set (``bitfold golden`` and ``compile`` set it),
each unit computes its stream exactly as the IR's ``Requantize`` and ``Add`` do, from the
integer accumulator and the integer ``mult``/``bias`` of :func:`requant_ints`, which
:func:`lower_resnet` writes into the graph: torch and golden then agree on every stream
value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitfold.compiler.encodings import Binary
from bitfold.compiler.ir import (
    Add,
    AffineArgMax,
    AffineSign,
    AvgPool2d,
    Graph,
    Input,
    Layer,
    Node,
    Requantize,
    Window,
)
from bitfold.compiler.verify import build_graph

from .layers import BinaryConv2d, BinaryLayer, BinaryLinear, binary_weight

__all__ = ["MULT_SHIFT", "STREAM_BITS", "STREAM_FRAC", "ResNet8", "lower_resnet", "requant_ints",
           "stream_add", "stream_down"]

STREAM_BITS = 8  # the residual stream: int8 ...
STREAM_FRAC = 4  # ... with 4 fractional bits: -8 .. 7.9375 in steps of 1/16
MULT_SHIFT = 16  # Requantize's shift: mult and bias hold the affine to 2**-16 of a step


def _floor_ste(x: Tensor) -> Tensor:
    return x + (torch.floor(x) - x).detach()


def _clamp_ste(x: Tensor, lo: float, hi: float) -> Tensor:
    """Saturation; the gradient passes inside the range and stops outside, as a clamp's."""
    return torch.clamp(x, lo, hi)


def _limits(bits: int = STREAM_BITS) -> tuple[int, int]:
    """The range of a ``bits``-bit signed integer: where the stream saturates."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _requant_train(z: Tensor, frac: int = STREAM_FRAC, bits: int = STREAM_BITS) -> Tensor:
    """``sat(floor(z * 2**frac + 1/2))``, the training forward of a ``Requantize`` (an integer
    value; straight-through gradients)."""
    return _clamp_ste(_floor_ste(z * 2.0 ** frac + 0.5), *_limits(bits))


def stream_down(r: Tensor) -> Tensor:
    """``AvgPool2d`` 2x2 on the stream: the floor of the mean, on the stream's grid."""
    return torch.floor(F.avg_pool2d(r, 2) * 2.0 ** STREAM_FRAC) / 2.0 ** STREAM_FRAC


def _popcounts(x: Tensor, conv: BinaryConv2d) -> tuple[Tensor, np.ndarray, int]:
    """A binary convolution's exact accumulators on ``sign(x)``, the popcount of xnor (pads
    counting), with its alpha and fan-in: float64, exact."""
    sign, alpha = _sign_weight(conv)
    bits = torch.where(x >= 0, 1.0, -1.0).double()
    if conv.padding:
        bits = F.pad(bits, (conv.padding,) * 4, value=conv.pad_value)
    fan_in = sign[0].numel()
    dot = F.conv2d(bits, sign.double(), stride=conv.stride)
    return (dot + fan_in) / 2, alpha, fan_in


def _sign_weight(layer: BinaryLayer) -> tuple[Tensor, np.ndarray]:
    """The layer's binary weight as +-1 floats and its alpha per output channel."""
    sign, alpha = binary_weight(layer)
    return torch.from_numpy(sign.astype(np.float32)), alpha


def requant_ints(alpha: np.ndarray, bn: nn.BatchNorm2d | nn.BatchNorm1d, per_acc: float,
                 offset_dots: float, frac: int = STREAM_FRAC) -> tuple[np.ndarray, np.ndarray]:
    """``Requantize``'s ``mult`` and ``bias`` (shift :data:`MULT_SHIFT`) of a binary layer.

    The stream value is ``floor(z * 2**frac + 1/2)`` with
    ``z = BN(alpha * dot)`` and ``dot = per_acc * acc + offset_dots`` (bipolar input:
    ``2 acc - F``; multi-bit input: ``input_scale * acc``). Both torch's exact eval and
    the IR use these integers, so they agree bit for bit.
    """
    inv = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    k = alpha * inv * 2.0 ** frac  # per unit of dot
    c = (bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * inv) \
        * 2.0 ** frac + 0.5
    scale = 2.0 ** MULT_SHIFT
    mult = np.round(k * per_acc * scale).astype(np.int64)
    bias = np.round((c + k * offset_dots) * scale).astype(np.int64)
    return mult, bias


def _requant_exact(acc: Tensor, mult: np.ndarray, bias: np.ndarray,
                   bits: int = STREAM_BITS) -> Tensor:
    """``sat(floor((mult * acc + bias) / 2**MULT_SHIFT))`` in float64 (exact: below 2**53)."""
    shape = (1, -1) + (1,) * (acc.dim() - 2)
    m = torch.from_numpy(mult.astype(np.float64)).view(shape)
    b = torch.from_numpy(bias.astype(np.float64)).view(shape)
    return torch.clamp(torch.floor((acc.double() * m + b) / 2.0 ** MULT_SHIFT), *_limits(bits))


class _Stem(nn.Module):
    """Binary 3x3 convolution on the pixels, batch norm, onto the stream."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = BinaryConv2d(c_in, c_out, 3, padding=1, input_mode="multibit")
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor, input_scale: float | None) -> Tensor:
        if self.training or input_scale is None or self.conv.binarizer is None:
            return _requant_train(self.bn(self.conv(x))) / 2.0 ** STREAM_FRAC
        sign, alpha = _sign_weight(self.conv)
        x_int = torch.round(x.double() / input_scale)
        acc = F.conv2d(F.pad(x_int, (1,) * 4), sign.double())
        mult, bias = requant_ints(alpha, self.bn, input_scale, 0.0)
        return (_requant_exact(acc, mult, bias) / 2.0 ** STREAM_FRAC).float()


class ResidualUnit(nn.Module):
    """``r' = sat(sat(floor(BN(conv(sign(r - tau))) * 2**FRAC + 1/2)) + skip)`` on the grid."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        if c_out < c_in or stride not in (1, 2):
            raise ValueError(f"a unit widens (c_out >= c_in) with stride 1 or 2, not "
                             f"{c_in}->{c_out} stride {stride}")
        self.tau = nn.Parameter(torch.zeros(c_in))
        self.conv = BinaryConv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.stride, self.c_in, self.c_out = stride, c_in, c_out

    def _skip(self, r: Tensor) -> Tensor:
        if self.stride == 2:
            r = stream_down(r)
        if self.c_out > self.c_in:
            r = F.pad(r, (0, 0, 0, 0, 0, self.c_out - self.c_in))
        return r

    def forward(self, r: Tensor, exact: bool) -> Tensor:
        x = r - self.tau.view(1, -1, 1, 1)
        if not exact or self.conv.binarizer is None:
            q = _requant_train(self.bn(self.conv(x)))
        else:
            acc, alpha, fan_in = _popcounts(x, self.conv)
            q = _requant_exact(acc, *requant_ints(alpha, self.bn, 2.0, -fan_in)).float()
        return stream_add(q / 2.0 ** STREAM_FRAC, self._skip(r))


def stream_add(a: Tensor, b: Tensor) -> Tensor:
    """``Add`` on the stream: ``a + b`` saturated (both on the grid)."""
    return _clamp_ste((a + b) * 2.0 ** STREAM_FRAC, *_limits()) / 2.0 ** STREAM_FRAC


class ResNet8(nn.Module):
    """The binary ResNet above: a stem, 3 stages of 2 units, a binary classifier."""

    hardware = True

    def __init__(self, input_shape: Sequence[int], classes: int, width: int = 16,
                 dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = input_shape
        self.input_shape, self.num_outputs = tuple(input_shape), classes
        self.input_scale: float | None = None  # set for exact eval (bitfold golden, compile)
        self.stem = _Stem(c, width)
        units, c_in = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for unit in range(2):
                stride = 2 if stage and not unit else 1
                units.append(ResidualUnit(c_in, c_out, stride))
                c_in = c_out
                if stride == 2:
                    h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.units = nn.ModuleList(units)
        self.tau = nn.Parameter(torch.zeros(c_in))
        self.fc = BinaryLinear(c_in * h * w, classes, dropout=dropout)
        self.bn = nn.BatchNorm1d(classes)

    def forward(self, x: Tensor) -> Tensor:
        exact = not self.training and self.input_scale is not None
        r = self.stem(x, self.input_scale if exact else None)
        for unit in self.units:
            r = unit(r, exact)
        return self.bn(self.fc((r - self.tau.view(1, -1, 1, 1)).flatten(1)))


def _bits(sign: Tensor) -> np.ndarray:
    return (sign.numpy() > 0).astype(np.uint8)


def _conv_bits(sign: Tensor) -> np.ndarray:
    return _bits(sign).transpose(0, 2, 3, 1)  # (C_out, C_in, k, k) -> (C_out, k, k, C_in)


def _sign_node(name: str, src: str, tau: nn.Parameter) -> AffineSign:
    """``sign(r - tau)`` on the integer stream ``q = r 2**FRAC``: ``q - tau 2**FRAC >= 0``."""
    t = tau.detach().double().numpy()
    return AffineSign(name, src, np.ones(len(t)), -t * 2.0 ** STREAM_FRAC)


def lower_resnet(model: ResNet8, input_bits: int, input_scale: float,
                 name: str = "resnet8") -> tuple[Graph, dict[str, str]]:
    """The pre-fold IR graph of a trained :class:`ResNet8`, and IR node -> torch module names."""
    c, h, w = model.input_shape
    nodes: list[Node] = [Input("x", (h, w, c), input_bits)]
    sources = {}
    sign, alpha = _sign_weight(model.stem.conv)
    nodes.append(Layer("stem", "x", Binary(_conv_bits(sign)), Window(3, 1, 1, 0)))
    mult, bias = requant_ints(alpha, model.stem.bn, input_scale, 0.0)
    nodes.append(Requantize("r0", "stem", mult, bias, MULT_SHIFT, STREAM_BITS))
    sources.update(stem="stem.conv", r0="stem.bn")
    cur = "r0"
    for i, unit in enumerate(model.units):
        sign, alpha = _sign_weight(unit.conv)
        pad_bit = int(unit.conv.pad_value > 0)
        nodes += [_sign_node(f"a{i}", cur, unit.tau),
                  Layer(f"conv{i}", f"a{i}", Binary(_conv_bits(sign)),
                        Window(3, unit.stride, 1, 2 * pad_bit - 1))]
        mult, bias = requant_ints(alpha, unit.bn, 2.0, -unit.c_in * 9)
        nodes.append(Requantize(f"q{i}", f"conv{i}", mult, bias, MULT_SHIFT, STREAM_BITS))
        skip = cur
        if unit.stride == 2:
            nodes.append(AvgPool2d(f"down{i}", cur, 2, 2))
            skip = f"down{i}"
        nodes.append(Add(f"r{i + 1}", f"q{i}", skip, STREAM_BITS))
        sources.update({f"a{i}": f"units.{i}.tau", f"conv{i}": f"units.{i}.conv",
                        f"q{i}": f"units.{i}.bn", f"r{i + 1}": f"units.{i}"})
        cur = f"r{i + 1}"
    nodes.append(_sign_node("a_out", cur, model.tau))
    sign, alpha = _sign_weight(model.fc)
    c_last = model.units[-1].c_out
    hw = sign.shape[1] // c_last
    # torch flattens (C, H, W); the IR's dense layer reads (H, W, C)
    bits = _bits(sign).reshape(-1, c_last, hw).transpose(0, 2, 1).reshape(len(sign), -1)
    nodes.append(Layer("fc", "a_out", Binary(bits)))
    bn = model.bn
    inv = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    fan_in = bits.shape[1]
    slope = 2 * alpha * inv  # dot = 2 popcount - F
    offset = bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * inv \
        - alpha * inv * fan_in
    nodes.append(AffineArgMax("class", "fc", slope, offset))
    sources.update({"a_out": "tau", "fc": "fc", "class": "bn"})
    return build_graph(name, nodes, ["class"]), sources
