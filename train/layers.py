"""Binary layers and the parametrization of their weights.

A binary layer binarizes its input (unless it is a first layer taking
unsigned multi-bit input) and uses ``weight``, which after
:func:`parametrize_model` is ``alpha * sign(reconstruction)``. Padding of binary
feature maps uses a constant binary value (default -1, docs/architecture.md), applied
explicitly so training and hardware agree exactly.

The float baseline (``quantizer="float"``) is the same network with the sign
replaced: real weights (the reconstruction as is) and ``activation =
"hardtanh"`` on every input the binary network binarizes.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
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
from .quant import BinarizeWeight, binary_sign, sign_ste
from .quantizers import (
    QUANTIZER_LINKS,
    CompositeWeight,
    DomainWeight,
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
    "binary_weight",
    "low_rank_layers",
    "parametrize_model",
]

INPUT_MODES = ("binary", "multibit")
_WEIGHT_QUANTIZERS = (BinarizeWeight, *QUANTIZER_LINKS)


class BinaryLayer(nn.Module):
    """Common part of binary layers: input mode, latent weight, parametrization hooks.

    Parameters
    ----------
    weight_shape : tuple of int
        Shape of the weight, output channels first.
    input_mode : {"binary", "multibit"}
        ``binary`` binarizes the input with :func:`sign_ste`; ``multibit``
        takes unsigned multi-bit input as is (the first layer).

    Attributes
    ----------
    activation : {"sign", "hardtanh"}
        What a ``binary`` input goes through: :func:`sign_ste` (the binary
        network), or ``hardtanh`` in the float baseline (set by
        :func:`parametrize_model` with ``quantizer="float"``; a module
        attribute, not saved in the state_dict).
    """

    activation = "sign"

    def __init__(self, weight_shape: tuple[int, ...], input_mode: str) -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, not {input_mode!r}")
        self.input_mode = input_mode
        self.weight = nn.Parameter(torch.empty(weight_shape))
        fan_in = math.prod(weight_shape[1:])
        nn.init.uniform_(self.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def binarize_input(self, x: Tensor) -> Tensor:
        if self.input_mode != "binary":
            return x
        return F.hardtanh(x) if self.activation == "hardtanh" else sign_ste(x)

    def _activation_repr(self) -> str:
        return ", activation=hardtanh" if self.is_float and self.input_mode == "binary" else ""

    @property
    def is_float(self) -> bool:
        """Whether the layer is part of the float baseline (hard-tanh input, real weights)."""
        return self.activation == "hardtanh"

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
        """The real-valued reconstruction before binarization (the weight itself in a float model)."""
        if not parametrize.is_parametrized(self, "weight"):
            return self.weight
        chain = self.parametrizations.weight
        links = list(chain)
        if chain.is_tensor:
            w = chain.original
        else:
            w = links.pop(0)(*(getattr(chain, f"original{i}") for i in range(chain.ntensors)))
        if links and isinstance(links[-1], _WEIGHT_QUANTIZERS):
            links.pop()  # the binarizer or quantizer; a float model's chain has none
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
        return (f"{self.in_features}, {self.out_features}, input_mode={self.input_mode}"
                + self._activation_repr())


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
            f"input_mode={self.input_mode}{self._activation_repr()}"
        )


@torch.no_grad()
def binary_weight(layer: BinaryLayer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's inference weight as ``(sign(reconstruction) as int8, alpha as float64)``."""
    real = layer.real_weight().detach().double()
    binarizer = layer.binarizer
    if binarizer is None:
        alpha = torch.ones(real.shape[0], dtype=torch.float64)
    else:
        alpha = binarizer.scale(real.float()).detach().double()
    return binary_sign(real).to(torch.int8).numpy(), alpha.numpy()


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """The model's binary layers with their qualified names, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BinaryLayer)]


def low_rank_layers(model: nn.Module, rank: int | None) -> list[BinaryLayer]:
    """The layers ``--low-rank R`` replaces: dense, binary input, ``R < min(C_out, fan_in)``."""
    if rank is None:
        return []
    return [m for _, m in binary_layers(model) if isinstance(m, BinaryLinear)
            and m.input_mode == "binary" and rank < min(m.in_features, m.out_features)]


def _flattened_channels(model: nn.Module) -> dict[int, int]:
    """``{id(layer): C}`` for each dense layer that takes a flattened ``(C, H, W)`` map: the
    first dense layer after a convolution (``C`` its output channels)."""
    out, channels = {}, None
    for _, layer in binary_layers(model):
        if isinstance(layer, BinaryConv2d):
            channels = layer.out_channels
        elif channels is not None:
            if layer.in_features % channels == 0:
                out[id(layer)] = channels
            channels = None
    return out


def parametrize_model(
    model: nn.Module, param: str = "dense", alpha: str = "analytic",
    rank: float | None = None, quantizer: str = "binary", sparsity: float | None = None,
    bases: int | None = None, low_rank: int | None = None, sparse_group: int | None = None,
    sparse_first: bool = False, factor_dtype: str | None = None,
) -> nn.Module:
    """Parametrize every binary layer's weight: factorize, then binarize (or quantize).

    The factorization starts from each layer's current real weight
    (``right_inverse``), so a float model loaded beforehand becomes a
    factorized binary one. For ``holistic-tucker`` the groups of same-shaped
    layers are registered on the model as ``model.factor_groups``.
    ``quantizer="float"`` builds the float baseline instead: the factorization
    only (the reconstruction is the weight; nothing at all with ``dense``) and
    hard-tanh in place of sign on the layers' inputs (``alpha`` does not apply).

    Parameters
    ----------
    param : {"dense", "svd", "tucker", "holistic-tucker", "cp"}
    alpha : {"none", "analytic", "learned"}
    rank : float, optional
        Fraction of each mode's size kept (svd, tucker, holistic-tucker); for
        ``cp`` an integer rank. Full rank when omitted.
    quantizer : {"binary", "sparse", "composite", "domain", "float"}
        The last link: ``alpha * sign(W)`` (:class:`BinarizeWeight`),
        :class:`SparseWeight` at ``sparsity``, :class:`CompositeWeight` with
        ``bases`` planes or :class:`DomainWeight` (every layer, the first too)
        (``bitfold.train.quantizers``); none for ``float``.
    low_rank : int, optional
        Composite only: dense layers with binary input and ``low_rank <
        min(C_out, fan_in)`` become :class:`LowRankWeight` (their whole
        chain; they take no part in the factorization).
    sparse_group : int, optional
        Sparse only: N:G structured masks (:func:`~bitfold.train.closed_forms.quantize_sparse`),
        grouped along input channels (the first dense layer after a convolution: the
        flattened map's channels), where they divide.
    sparse_first : bool
        Sparse only: the first layer (unsigned multi-bit input) too. By default it stays
        ``alpha * sign(W)``: ``{0, b}`` weights can only add up non-negative pixels.
    factor_dtype : {"float32", "bfloat16"}, optional
        The dtype of the factorization's matrix products, in training and evaluation
        (``product_dtype`` in :mod:`~bitfold.train.factorize`); None or float32: the factors' own.
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
    _factorize(model, layers, param, rank)
    _set_factor_dtype(model, factor_dtype)
    _quantize(model, layers, quantizer, alpha, sparsity, bases, sparse_group, sparse_first)
    return model


def _set_factor_dtype(model: nn.Module, factor_dtype: str | None) -> None:
    """Every factorization's ``product_dtype`` (:mod:`~bitfold.train.factorize`)."""
    if factor_dtype in (None, "float32"):
        return
    dtype = getattr(torch, factor_dtype)
    for link in model.modules():
        if isinstance(link, (SVDWeight, TuckerWeight, HolisticTucker)):
            link.product_dtype = dtype


def _factorize(model: nn.Module, layers: list[BinaryLayer], param: str,
               rank: float | None) -> None:
    """The first link of each layer's chain: ``param``'s factorization (none for dense)."""
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


def _quantize(model: nn.Module, layers: list[BinaryLayer], quantizer: str, alpha: str,
              sparsity: float | None, bases: int | None, sparse_group: int | None,
              sparse_first: bool) -> None:
    """The last link of each layer's chain: ``quantizer``'s (hard-tanh inputs for float)."""
    flattened = _flattened_channels(model)
    for layer in layers:
        if quantizer == "float":
            layer.activation = "hardtanh"
            continue
        w = layer.weight.detach()
        if quantizer == "sparse" and (sparse_first or layer.input_mode == "binary"):
            link: nn.Module = SparseWeight(alpha, w, sparsity, sparse_group,
                                           flattened.get(id(layer)))
        elif quantizer == "composite":
            link = CompositeWeight(alpha, w, bases)
        elif quantizer == "domain":  # every layer, the first too: {a, b} can be signed
            link = DomainWeight(alpha, w)
        else:
            link = BinarizeWeight(alpha, w)
        parametrize.register_parametrization(layer, "weight", link)
