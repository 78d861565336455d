"""``hourglass-hw``: a binary hourglass for pose on the IR's integer residual stream.

The units are :mod:`.residual`'s (``sign(r - tau)``, a binary 3x3 convolution, batch
norm onto the int8 stream, the saturating skip add). Built for synthetic-pose's 64x64
images, heatmaps at a quarter of the resolution:

    stem (binary 3x3 on the pixels) -> avg pool -> unit -> avg pool -> unit -> hourglass
    hourglass(d)(x) = sat(unit(x) + up(unit(inner(unit(avg_pool(x))))))
    inner = hourglass(d - 1), or a unit at the bottom
    head = sign(r - tau) -> binary 1x1 convolution -> batch norm -> heatmaps

The way down is a floor average pool on the stream's grid, the way up nearest
upsampling, the join ``Add``; the heatmaps are a ``Requantize`` of the head (16 bits, 8 of
them fractional), so torch's exact eval and the golden model produce the same integers
and the same argmax per joint, ties included (the first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bitfold.compiler.encodings import Binary
from bitfold.compiler.ir import (
    Add,
    AvgPool2d,
    Graph,
    Input,
    Layer,
    Node,
    Requantize,
    Upsample2d,
    Window,
)
from bitfold.compiler.verify import build_graph

from .layers import BinaryConv2d
from .residual import (
    MULT_SHIFT,
    STREAM_BITS,
    ResidualUnit,
    _conv_bits,
    _popcounts,
    _requant_exact,
    _requant_train,
    _sign_node,
    _sign_weight,
    _Stem,
    requant_ints,
    stream_add,
    stream_down,
)

__all__ = ["HEAT_BITS", "HEAT_FRAC", "HourglassHW", "lower_hourglass"]

HEAT_BITS, HEAT_FRAC = 16, 8  # the heatmaps: int16 with 8 fractional bits


class _Level(nn.Module):
    """One level of the hourglass: ``sat(skip(x) + up(up_unit(inner(down_unit(pool(x))))))``."""

    def __init__(self, depth: int, c: int) -> None:
        super().__init__()
        self.skip, self.down, self.up = (ResidualUnit(c, c) for _ in range(3))
        self.inner: nn.Module = _Level(depth - 1, c) if depth > 1 else ResidualUnit(c, c)

    def forward(self, x: Tensor, exact: bool) -> Tensor:
        low = self.up(self.inner(self.down(stream_down(x), exact), exact), exact)
        return stream_add(self.skip(x, exact), low.repeat_interleave(2, 2).repeat_interleave(2, 3))


class HourglassHW(nn.Module):
    """The hourglass above; ``num_outputs`` heatmaps at a quarter of the input size."""

    hardware = True

    def __init__(self, input_shape: Sequence[int], joints: int, width: int = 16,
                 depth: int = 2) -> None:
        super().__init__()
        c, h, w = input_shape
        if h % (4 << depth) or w % (4 << depth):
            raise ValueError(f"hourglass-hw needs sides divisible by {4 << depth}, not {h}x{w}")
        self.input_shape, self.num_outputs = tuple(input_shape), joints
        self.input_scale: float | None = None  # set for exact eval (as ResNet8's)
        self.stem = _Stem(c, width)
        self.pre = nn.ModuleList([ResidualUnit(width, width), ResidualUnit(width, width)])
        self.hourglass = _Level(depth, width)
        self.tau = nn.Parameter(torch.zeros(width))
        self.head = BinaryConv2d(width, joints, 1)
        self.bn = nn.BatchNorm2d(joints)

    def forward(self, x: Tensor) -> Tensor:
        exact = not self.training and self.input_scale is not None
        r = self.stem(x, self.input_scale if exact else None)
        for unit in self.pre:
            r = unit(stream_down(r), exact)
        r = self.hourglass(r, exact) - self.tau.view(1, -1, 1, 1)
        if not exact or self.head.binarizer is None:
            return _requant_train(self.bn(self.head(r)), HEAT_FRAC, HEAT_BITS) / 2.0 ** HEAT_FRAC
        acc, alpha, fan_in = _popcounts(r, self.head)
        mult, bias = requant_ints(alpha, self.bn, 2.0, -fan_in, HEAT_FRAC)
        return (_requant_exact(acc, mult, bias, HEAT_BITS) / 2.0 ** HEAT_FRAC).float()


class _Lowering:
    """Node names and the current stream while walking the hourglass."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def unit(self, unit: ResidualUnit, src: str) -> str:
        sign, alpha = _sign_weight(unit.conv)
        a, conv, q, r = (self._name(k) for k in ("a", "conv", "q", "r"))
        mult, bias = requant_ints(alpha, unit.bn, 2.0, -unit.c_in * 9)
        self.nodes += [_sign_node(a, src, unit.tau),
                       Layer(conv, a, Binary(_conv_bits(sign)),
                             Window(3, 1, 1, 2 * int(unit.conv.pad_value > 0) - 1)),
                       Requantize(q, conv, mult, bias, MULT_SHIFT, STREAM_BITS),
                       Add(r, q, src, STREAM_BITS)]
        return r

    def down(self, src: str) -> str:
        name = self._name("down")
        self.nodes.append(AvgPool2d(name, src, 2, 2))
        return name

    def level(self, level: _Level, src: str) -> str:
        skip = self.unit(level.skip, src)
        low = self.unit(level.down, self.down(src))
        low = self.level(level.inner, low) if isinstance(level.inner, _Level) else \
            self.unit(level.inner, low)
        up = self._name("up")
        self.nodes.append(Upsample2d(up, self.unit(level.up, low), 2))
        join = self._name("join")
        self.nodes.append(Add(join, skip, up, STREAM_BITS))
        return join


def lower_hourglass(model: HourglassHW, input_bits: int, input_scale: float,
                    name: str = "hourglass_hw") -> tuple[Graph, dict[str, str]]:
    """The IR graph of a trained :class:`HourglassHW`; its output ``heatmaps`` is
    ``(H/4, W/4, joints)`` int16 with 8 fractional bits."""
    c, h, w = model.input_shape
    low = _Lowering()
    sign, alpha = _sign_weight(model.stem.conv)
    mult, bias = requant_ints(alpha, model.stem.bn, input_scale, 0.0)
    low.nodes += [Input("x", (h, w, c), input_bits),
                  Layer("stem", "x", Binary(_conv_bits(sign)), Window(3, 1, 1, 0)),
                  Requantize("r0", "stem", mult, bias, MULT_SHIFT, STREAM_BITS)]
    cur = "r0"
    for unit in model.pre:
        cur = low.unit(unit, low.down(cur))
    cur = low.level(model.hourglass, cur)
    sign, alpha = _sign_weight(model.head)
    fan_in = sign.shape[1]
    mult, bias = requant_ints(alpha, model.bn, 2.0, -fan_in, HEAT_FRAC)
    low.nodes += [_sign_node("a_head", cur, model.tau),
                  Layer("head", "a_head", Binary(_conv_bits(sign)), Window(1, 1, 0, 1)),
                  Requantize("heatmaps", "head", mult, bias, MULT_SHIFT, HEAT_BITS)]
    return build_graph(name, low.nodes, ["heatmaps"]), {}


def heatmaps_nchw(values: np.ndarray) -> Tensor:
    """The IR's ``(N, h, w, J)`` integer heatmaps as torch's ``(N, J, h, w)`` values."""
    return torch.from_numpy(values.transpose(0, 3, 1, 2).astype(np.float64) / 2.0 ** HEAT_FRAC)

