"""Binary layers and the parametrization of their weights.

A binary layer binarizes its input (unless it is a first layer taking
unsigned multi-bit input) and uses ``weight``, which after
:func:`parametrize_model` is ``alpha * sign(reconstruction)``. Padding of binary
feature maps uses a constant binary value (default -1, DESIGN.md §3), applied
explicitly so training and hardware agree exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .factorize import (
    PARAMS,
    CPWeight,
    HolisticSlice,
    HolisticTucker,
    SVDWeight,
    TuckerWeight,
)
from .quant import BinarizeWeight, sign_ste
from .quantizers import (
    QUANTIZER_LINKS,
    CompositeWeight,
    LowRankWeight,
    SparseWeight,
    check_quantizer,
)

__all__ = [
    "INPUT_MODES",
    "BinaryConv2d",
    "BinaryLayer",
    "BinaryLinear",
    "binary_layers",
    "low_rank_layers",
    "parametrize_model",
]

INPUT_MODES = ("binary", "multibit")


class BinaryLayer(nn.Module):
    """Common part of binary layers: input mode, latent weight, parametrization hooks.

    Parameters
    ----------
    weight_shape : tuple of int
        Shape of the weight, output channels first.
    input_mode : {"binary", "multibit"}
        ``binary`` binarizes the input with :func:`sign_ste`; ``multibit``
        takes unsigned multi-bit input as is (the first layer).
    """

    def __init__(self, weight_shape: tuple[int, ...], input_mode: str) -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, not {input_mode!r}")
        self.input_mode = input_mode
        self.weight = nn.Parameter(torch.empty(weight_shape))
        fan_in = math.prod(weight_shape[1:])
        nn.init.uniform_(self.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def binarize_input(self, x: Tensor) -> Tensor:
        return sign_ste(x) if self.input_mode == "binary" else x

    @property
    def quantizer(self) -> nn.Module | None:
        """The last link of the weight's chain when it is a sparse, composite or low-rank one."""
        if not parametrize.is_parametrized(self, "weight"):
            return None
        chain = self.parametrizations.weight
        return chain[-1] if isinstance(chain[-1], QUANTIZER_LINKS) else None

    @property
    def binarizer(self) -> BinarizeWeight | None:
        """The :class:`BinarizeWeight` link of the weight's parametrization chain."""
        if not parametrize.is_parametrized(self, "weight"):
            return None
        chain = self.parametrizations.weight
        return chain[-1] if isinstance(chain[-1], BinarizeWeight) else None

    def real_weight(self) -> Tensor:
        """The real-valued reconstruction before binarization."""
        if not parametrize.is_parametrized(self, "weight"):
            return self.weight
        chain = self.parametrizations.weight
        if chain.is_tensor:
            w = chain.original
            links = list(chain)[:-1]
        else:
            w = chain[0](*(getattr(chain, f"original{i}") for i in range(chain.ntensors)))
            links = list(chain)[1:-1]
        for link in links:
            w = link(w)
        return w


class BinaryLinear(BinaryLayer):
    """Fully connected layer with binary weights (and binary input unless ``multibit``).

    ``dropout`` drops binarized inputs during training only.
    """

    def __init__(
        self, in_features: int, out_features: int, input_mode: str = "binary",
        dropout: float = 0.0,
    ) -> None:
        super().__init__((out_features, in_features), input_mode)
        self.in_features, self.out_features = in_features, out_features
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = self.binarize_input(x)
        if self.dropout:
            x = F.dropout(x, self.dropout, self.training)
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, input_mode={self.input_mode}"


class BinaryConv2d(BinaryLayer):
    """2-D convolution with binary weights; padding with a constant binary value.

    Parameters
    ----------
    pad_value : float
        Value the (binarized) input is padded with: -1 or +1 for binary input.
        Multi-bit input is always padded with 0.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        padding: int = 0, pad_value: float = -1.0, input_mode: str = "binary",
    ) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), input_mode)
        if input_mode == "binary" and pad_value not in (-1.0, 1.0):
            raise ValueError(f"pad_value of a binary input must be -1 or +1, not {pad_value!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.pad_value = pad_value if input_mode == "binary" else 0.0

    def forward(self, x: Tensor) -> Tensor:
        x = self.binarize_input(x)
        if self.padding:
            x = F.pad(x, (self.padding,) * 4, value=self.pad_value)
        return F.conv2d(x, self.weight, stride=self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, pad_value={self.pad_value}, "
            f"input_mode={self.input_mode}"
        )


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """The model's binary layers with their qualified names, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BinaryLayer)]


def low_rank_layers(model: nn.Module, rank: int | None) -> list[BinaryLayer]:
    """The layers ``--low-rank R`` replaces: dense, binary input, ``R < min(C_out, fan_in)``."""
    if rank is None:
        return []
    return [m for _, m in binary_layers(model) if isinstance(m, BinaryLinear)
            and m.input_mode == "binary" and rank < min(m.in_features, m.out_features)]


def parametrize_model(
    model: nn.Module, param: str = "dense", alpha: str = "analytic",
    rank: float | None = None, quantizer: str = "binary", sparsity: float | None = None,
    bases: int | None = None, low_rank: int | None = None,
) -> nn.Module:
    """Parametrize every binary layer's weight: factorize, then binarize (or quantize).

    The factorization starts from each layer's current real weight
    (``right_inverse``), so a float model loaded beforehand becomes a
    factorized binary one. For ``holistic-tucker`` the groups of same-shaped
    layers are registered on the model as ``model.factor_groups``.

    Parameters
    ----------
    param : {"dense", "svd", "tucker", "holistic-tucker", "cp"}
    alpha : {"none", "analytic", "learned"}
    rank : float, optional
        Fraction of each mode's size kept (svd, tucker, holistic-tucker); for
        ``cp`` an integer rank. Full rank when omitted.
    quantizer : {"binary", "sparse", "composite"}
        The last link: ``alpha * sign(W)`` (:class:`BinarizeWeight`),
        :class:`SparseWeight` at ``sparsity`` or :class:`CompositeWeight` with
        ``bases`` planes (``bitfold.train.quantizers``).
    low_rank : int, optional
        Composite only: dense layers with binary input and ``low_rank <
        min(C_out, fan_in)`` become :class:`LowRankWeight` (their whole
        chain; they take no part in the factorization).
    """
    if param not in PARAMS:
        raise ValueError(f"param must be one of {PARAMS}, not {param!r}")
    check_quantizer(quantizer, sparsity, bases, low_rank)
    low = low_rank_layers(model, low_rank)
    for layer in low:
        parametrize.register_parametrization(
            layer, "weight", LowRankWeight(alpha, layer.weight.detach(), low_rank))
    layers = [m for _, m in binary_layers(model) if all(m is not x for x in low)]
    if not layers and not low:
        raise ValueError(f"{type(model).__name__} has no binary layers to parametrize")
    if param == "holistic-tucker":
        by_shape: dict[tuple[int, ...], list[BinaryLayer]] = defaultdict(list)
        for layer in layers:
            by_shape[tuple(layer.weight.shape)].append(layer)
        groups = nn.ModuleList()
        for members in by_shape.values():
            stacked = torch.stack([m.weight.detach() for m in members])
            group = HolisticTucker(stacked, rank)
            groups.append(group)
            for i, layer in enumerate(members):
                parametrize.register_parametrization(layer, "weight", HolisticSlice(group, i))
        model.factor_groups = groups
    elif param != "dense":
        for layer in layers:
            shape = tuple(layer.weight.shape)
            if param == "svd":
                link = SVDWeight(shape, rank)
            elif param == "tucker":
                link = TuckerWeight(shape, rank)
            else:
                link = CPWeight(shape, None if rank is None else int(rank))
            parametrize.register_parametrization(layer, "weight", link)
    for layer in layers:
        w = layer.weight.detach()
        if quantizer == "sparse":
            link: nn.Module = SparseWeight(alpha, w, sparsity)
        elif quantizer == "composite":
            link = CompositeWeight(alpha, w, bases)
        else:
            link = BinarizeWeight(alpha, w)
        parametrize.register_parametrization(layer, "weight", link)
    return model
