"""Binary network architectures.

Hardware-expressible models (``mlp-digits``, ``cnn-digits``, ``tfc``, ``sfc``,
``lfc``, ``cnv``) are a plain ``body`` of binary layers, batch norms, max
pools and one flatten, in the order the compiler lowers them: a binary layer
computes ``alpha * dot(sign(x), sign(W))``, the batch norm after it and the
sign inside the next binary layer fold into one integer threshold. Max pooling
sits after the batch norm, which equals OR on the binary maps since sign is
monotone. The last batch norm produces the class scores.

With ``input_threshold`` (``bitfold train --input-bits 1``) the network
binarizes its input first, as FINN's SFC/LFC do: :class:`BinarizeInput` gives
``+1`` where ``pixel >= t`` and ``-1`` elsewhere, and the first layer is an
ordinary binary-input layer.

``resnet18`` and ``hourglass`` are the paper's networks with real-valued
shortcuts, built from the pre-activation basic block of Bulat et al. Fig. 1
(BN -> sign -> binary conv, real shortcut); they train but are not lowered to
hardware.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .hourglass_hw import HourglassHW
from .layers import BinaryConv2d, BinaryLinear
from .residual import ResNet8

__all__ = ["BINARIZED_INPUT_MODELS", "MODELS", "BinarizeInput", "BinaryNet", "build_model"]


class BinarizeInput(nn.Module):
    """``+1`` where the pixel is at least ``threshold``, ``-1`` elsewhere.

    The module sees pixels already scaled (``pixel * scale``) and cuts halfway
    between the levels ``threshold - 1`` and ``threshold``, so float rounding of
    the scaled pixels cannot move a pixel across. It holds no state: the
    threshold comes from the run's configuration.

    Parameters
    ----------
    threshold : int
        The smallest pixel value that becomes ``+1`` (at least 1).
    scale : float
        The data set's input scale (the network's input is ``pixel * scale``).
    """

    def __init__(self, threshold: int, scale: float) -> None:
        super().__init__()
        if threshold < 1:
            raise ValueError(f"the input threshold must be at least 1, not {threshold!r}")
        self.threshold, self.scale = int(threshold), float(scale)
        self.cut = (self.threshold - 0.5) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.where(x >= self.cut, one, -one)

    def extra_repr(self) -> str:
        return f"pixel >= {self.threshold}"


class BinaryNet(nn.Module):
    """A feed-forward binary network: ``body`` applied to ``x`` (float, already scaled).

    ``input_binarizer``, when set, binarizes ``x`` before the body.
    """

    hardware = True

    def __init__(self, body: nn.Sequential, input_shape: Sequence[int], num_outputs: int) -> None:
        super().__init__()
        self.body = body
        self.input_binarizer: BinarizeInput | None = None  # a submodule once set
        self.input_shape = tuple(input_shape)
        self.num_outputs = num_outputs

    def forward(self, x: Tensor) -> Tensor:
        if self.input_binarizer is not None:
            x = self.input_binarizer(x)
        return self.body(x)


def _mlp(hidden: Sequence[int], input_shape: Sequence[int], classes: int, dropout: float,
         first_mode: str = "multibit", input_dropout: float = 0.0) -> BinaryNet:
    in_features = int(torch.tensor(input_shape).prod())
    layers: list[nn.Module] = [nn.Flatten()]
    widths = [in_features, *hidden]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        mode = first_mode if i == 0 else "binary"
        layers += [BinaryLinear(n_in, n_out, mode, dropout=dropout if i else input_dropout),
                   nn.BatchNorm1d(n_out)]
    layers += [BinaryLinear(widths[-1], classes, dropout=dropout), nn.BatchNorm1d(classes)]
    return BinaryNet(nn.Sequential(*layers), input_shape, classes)


def _conv_bn(c_in: int, c_out: int, padding: int, mode: str = "binary") -> list[nn.Module]:
    return [BinaryConv2d(c_in, c_out, 3, padding=padding, input_mode=mode), nn.BatchNorm2d(c_out)]


def cnn_digits(input_shape: Sequence[int], classes: int, dropout: float,
               first_mode: str = "multibit") -> BinaryNet:
    """Three 3x3 convolutions (32 channels) and one dense layer, for 8x8 inputs."""
    c, h, w = input_shape
    body = nn.Sequential(
        *_conv_bn(c, 32, 1, first_mode),
        *_conv_bn(32, 32, 1), nn.MaxPool2d(2),
        *_conv_bn(32, 32, 1), nn.MaxPool2d(2),
        nn.Flatten(),
        BinaryLinear(32 * (h // 4) * (w // 4), classes, dropout=dropout), nn.BatchNorm1d(classes),
    )
    return BinaryNet(body, input_shape, classes)


def cnv(input_shape: Sequence[int], classes: int, dropout: float,
        first_mode: str = "multibit") -> BinaryNet:
    """The BNN-PYNQ CNV network (CIFAR-10): 6 unpadded 3x3 convolutions, 3 dense layers."""
    c, h, w = input_shape
    body = nn.Sequential(
        *_conv_bn(c, 64, 0, first_mode), *_conv_bn(64, 64, 0), nn.MaxPool2d(2),
        *_conv_bn(64, 128, 0), *_conv_bn(128, 128, 0), nn.MaxPool2d(2),
        *_conv_bn(128, 256, 0), *_conv_bn(256, 256, 0),
        nn.Flatten(),
    )
    with torch.no_grad():  # eval mode: no batch statistics are touched
        flat = body.eval()(torch.zeros(1, c, h, w)).shape[1]
    body.train()
    body.extend([
        BinaryLinear(flat, 512, dropout=dropout), nn.BatchNorm1d(512),
        BinaryLinear(512, 512, dropout=dropout), nn.BatchNorm1d(512),
        BinaryLinear(512, classes, dropout=dropout), nn.BatchNorm1d(classes),
    ])
    return BinaryNet(body, input_shape, classes)


class PreActBinaryBlock(nn.Module):
    """Bulat et al. Fig. 1: ``BN -> sign -> binary 3x3 conv``, plus a real-valued shortcut.

    A shortcut that changes resolution or width is average pooling and a real
    1x1 convolution with batch norm; the pooling rounds an odd size up, as the strided
    convolution does (28x28 inputs: 28, 14, 7, 4).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = BinaryConv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
                if stride != 1 else nn.Identity(),
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.bn(x)) + self.shortcut(x)


class ResNet18(nn.Module):
    """Binary ResNet-18 (Bulat et al. §5): real stem and classifier, binary 3x3 convolutions.

    ``width`` is the first stage's channel count (64 in the paper; ``resnet18-w8``: 8,
    the same 16 binary convolutions at 1/64 of the multiply-adds, which trains on a CPU).
    """

    hardware = False

    def __init__(self, input_shape: Sequence[int], classes: int, width: int = 64) -> None:
        super().__init__()
        self.input_shape, self.num_outputs = tuple(input_shape), classes
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        blocks: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for unit in range(4):  # 2 basic blocks x 2 binary convolutions each
                stride = 2 if stage > 0 and unit == 0 else 1
                blocks.append(PreActBinaryBlock(c_in, c_out, stride))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(c_in, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


class _Hourglass(nn.Module):
    """One recursive hourglass level of binary pre-activation blocks."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.skip = PreActBinaryBlock(channels, channels)
        self.down = nn.Sequential(nn.MaxPool2d(2), PreActBinaryBlock(channels, channels))
        self.inner = _Hourglass(depth - 1, channels) if depth > 1 else PreActBinaryBlock(channels, channels)
        self.up = PreActBinaryBlock(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        low = self.up(self.inner(self.down(x)))
        return self.skip(x) + nn.functional.interpolate(low, size=x.shape[-2:], mode="nearest")


class Hourglass(nn.Module):
    """Binary hourglass for pose estimation (Bulat et al. §5.2), 128-channel basic blocks.

    Outputs one heatmap per joint at a quarter of the input resolution.
    """

    hardware = False

    def __init__(self, input_shape: Sequence[int], joints: int, channels: int = 128,
                 depth: int = 4) -> None:
        super().__init__()
        self.input_shape, self.num_outputs = tuple(input_shape), joints
        c = input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(c, channels, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(channels),
            PreActBinaryBlock(channels, channels), nn.MaxPool2d(2),
            PreActBinaryBlock(channels, channels),
        )
        self.hourglass = _Hourglass(depth, channels)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(),
                                  nn.Conv2d(channels, joints, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.hourglass(self.stem(x)))


def _fc(hidden: Sequence[int]) -> Callable[..., BinaryNet]:
    return lambda shape, classes, dropout, **kw: _mlp(hidden, shape, classes, dropout, **kw)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp-digits": _fc([128, 128, 128]),
    "cnn-digits": cnn_digits,
    "tfc": _fc([64, 64, 64]),
    "sfc": _fc([256, 256, 256]),
    "lfc": _fc([1024, 1024, 1024]),
    "cnv": cnv,
    "resnet8": lambda shape, classes, dropout: ResNet8(shape, classes, dropout=dropout),
    "resnet18": lambda shape, classes, dropout: ResNet18(shape, classes),
    "resnet18-w8": lambda shape, classes, dropout: ResNet18(shape, classes, width=8),
    "hourglass": lambda shape, joints, dropout: Hourglass(shape, joints),
    "hourglass-hw": lambda shape, joints, dropout: HourglassHW(shape, joints),
}


BINARIZED_INPUT_MODELS = ("mlp-digits", "cnn-digits", "tfc", "sfc", "lfc", "cnv")
_MLPS = ("mlp-digits", "tfc", "sfc", "lfc")


def build_model(name: str, input_shape: Sequence[int], num_outputs: int,
                dropout: float = 0.0, input_binarizer: BinarizeInput | None = None,
                input_dropout: float = 0.0) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (C, H, W) and ``num_outputs``.

    With ``input_binarizer`` the network binarizes its input with it and its first
    layer takes binary input (only the :data:`BINARIZED_INPUT_MODELS`). ``dropout``
    drops the inputs of every binary layer but the first, ``input_dropout`` the
    first's (the MLPs only).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
    if name in ("cnn-digits", "cnv", "resnet8", "resnet18", "resnet18-w8", "hourglass",
                "hourglass-hw") and \
            len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs image input (C, H, W), not shape {tuple(input_shape)}")
    if not 0 <= input_dropout < 1:
        raise ValueError(f"input dropout must be in [0, 1), not {input_dropout!r}")
    kw = {"input_dropout": input_dropout} if input_dropout else {}
    if kw and name not in _MLPS:
        raise ValueError(f"--input-dropout applies to the MLPs ({', '.join(_MLPS)}), not {name!r}")
    if input_binarizer is None:
        return MODELS[name](tuple(input_shape), num_outputs, dropout, **kw)
    if name not in BINARIZED_INPUT_MODELS:
        raise ValueError(f"--input-bits 1 (binarized input) needs a feed-forward binary model "
                         f"({', '.join(BINARIZED_INPUT_MODELS)}), not {name!r}")
    model = MODELS[name](tuple(input_shape), num_outputs, dropout, first_mode="binary", **kw)
    model.input_binarizer = input_binarizer
    return model
