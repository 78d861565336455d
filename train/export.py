"""Export a trained binary network without its factors: binary weights, alphas, the rest.

Inference uses only ``alpha * sign(reconstruction)`` (Bulat et al.): the
factors, cores and latent weights stay behind. :func:`export_network` walks a
hardware-expressible model's ``body`` and returns plain numpy records in
execution order, which the compiler lowers to its IR (``bitfold compile``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .layers import BinaryConv2d, BinaryLayer, BinaryLinear, binary_weight
from .models import BinaryNet
from .quantizers import DomainWeight, LowRankWeight, SparseWeight

__all__ = [
    "ExportError",
    "ExportedBatchNorm",
    "ExportedBinaryLayer",
    "ExportedFlatten",
    "ExportedMaxPool",
    "ExportedNetwork",
    "binary_weight",
    "export_network",
    "quantized_weight",
]


class ExportError(ValueError):
    """The model has a part the hardware cannot express; the message names it."""


@dataclass(frozen=True)
class ExportedBinaryLayer:
    """A binary layer: ``y = dot(x, effective_weight())``, ``alpha * dot(x, weight)`` when binary.

    ``weight`` is int8 in {-1, +1}, shape ``(C_out, C_in)`` or
    ``(C_out, C_in, k, k)``; ``alpha`` float64 ``(C_out,)``, possibly negative.
    Other ``scheme`` values change what ``weight`` holds (see :meth:`effective_weight`).
    ``input_mode`` is ``binary`` (x = sign(previous)) or ``multibit`` (x the
    scaled unsigned input). Convolutions pad with ``pad_value`` before a
    stride-``stride`` valid convolution.
    """

    name: str
    kind: str  # "dense" | "conv2d"
    weight: np.ndarray
    alpha: np.ndarray
    input_mode: str
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pad_value: int = -1
    scheme: str = "binary"  # "binary" | "sparse" | "composite" | "lowrank" | "domain"
    plane_scale: np.ndarray | None = None
    inner: np.ndarray | None = None
    offset: np.ndarray | None = None

    def effective_weight(self) -> np.ndarray:
        """The real weight torch uses, ``alpha`` included (float64).

        ``binary``: ``alpha * weight`` (+-1). ``sparse``: ``alpha * weight``,
        ``weight`` the 0/1 mask. ``composite``: ``weight`` holds ``K`` +-1 planes
        and ``plane_scale`` their integer scales over ``2**FRAC_BITS``:
        ``alpha * sum_k plane_scale[k] / 2**FRAC_BITS * weight[k]``.
        ``lowrank``: ``alpha * weight @ inner`` (both +-1). ``domain``: ``weight`` +-1 and
        ``offset`` the integer row offsets: ``alpha * (weight + offset / 2**FRAC_BITS)``.
        """
        from .quantizers import FRAC_BITS

        if self.scheme == "domain":
            off = self.offset.astype(np.float64) / (1 << FRAC_BITS)
            combined = self.weight.astype(np.float64) + \
                off.reshape((-1,) + (1,) * (self.weight.ndim - 1))
        elif self.scheme == "composite":
            combined = np.tensordot(self.plane_scale / (1 << FRAC_BITS),
                                    self.weight.astype(np.float64), axes=1)
        elif self.scheme == "lowrank":
            combined = self.weight.astype(np.float64) @ self.inner.astype(np.float64)
        else:
            combined = self.weight.astype(np.float64)
        return self.alpha.reshape((-1,) + (1,) * (combined.ndim - 1)) * combined


@dataclass(frozen=True)
class ExportedBatchNorm:
    """Batch norm in eval mode: ``gamma * (x - mean) / sqrt(var + eps) + beta`` (float64)."""

    name: str
    mean: np.ndarray
    var: np.ndarray
    eps: float
    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class ExportedMaxPool:
    name: str
    kernel: int
    stride: int


@dataclass(frozen=True)
class ExportedFlatten:
    """Flatten ``(C, H, W)`` to ``C*H*W`` in torch's channel-major order."""

    name: str


@dataclass(frozen=True)
class ExportedNetwork:
    """A network ready for the compiler.

    The input is unsigned ``input_bits``-bit integers of ``input_shape``; the
    first layer sees ``x_int * input_scale``, or, with ``input_threshold``, the
    binarized input: ``+1`` where ``x_int >= input_threshold``, else ``-1``.
    """

    model: str
    input_shape: tuple[int, ...]
    input_bits: int
    input_scale: float
    num_classes: int
    steps: tuple[ExportedBinaryLayer | ExportedBatchNorm | ExportedMaxPool | ExportedFlatten, ...]
    input_threshold: int | None = None


def _first_unsupported(model: nn.Module) -> str:
    """Name the first real-valued layer and the first residual block of ``model``."""
    reasons = []
    for qual, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear) and not isinstance(mod, BinaryLayer):
            reasons.append(f"layer {qual} is a real-valued {type(mod).__name__}")
            break
    for qual, mod in model.named_modules():
        if hasattr(mod, "shortcut"):
            reasons.append(f"block {qual} adds a real-valued residual shortcut")
            break
    return " and ".join(reasons) or "it is not a feed-forward BinaryNet"


@torch.no_grad()
def quantized_weight(layer: BinaryLayer) -> dict:
    """The fields of :class:`ExportedBinaryLayer` that describe the layer's inference weight.

    Computed by the layer's own quantizer on the same float32 tensors as its
    forward pass, so masks, planes and scales are the ones torch uses.
    """
    link = layer.quantizer
    if link is None:
        weight, alpha = binary_weight(layer)
        return {"scheme": "binary", "weight": weight, "alpha": alpha}
    if isinstance(link, LowRankWeight):
        chain = layer.parametrizations.weight
        alpha, a, b = link.quantize(chain.original0, chain.original1)
        return {"scheme": "lowrank", "weight": a.to(torch.int8).numpy(),
                "inner": b.to(torch.int8).numpy(), "alpha": alpha.double().numpy()}
    real = layer.real_weight().detach()
    if isinstance(link, DomainWeight):
        d, s, m = link.quantize(real)
        return {"scheme": "domain", "weight": s.to(torch.int8).numpy(),
                "alpha": d.detach().double().numpy(),
                "offset": m.detach().to(torch.int64).numpy()}
    if isinstance(link, SparseWeight):
        b, mask, _ = link.quantize(real)
        return {"scheme": "sparse", "weight": mask.to(torch.int8).numpy(),
                "alpha": b.detach().double().numpy()}
    alpha, planes, m = link.quantize(real)
    return {"scheme": "composite", "weight": planes.to(torch.int8).numpy(),
            "alpha": alpha.detach().double().numpy(),
            "plane_scale": m.detach().to(torch.int64).numpy()}


def export_network(model: nn.Module, input_bits: int, input_scale: float,
                   name: str = "model") -> ExportedNetwork:
    """Export ``model`` (a :class:`~bitfold.train.models.BinaryNet`) for the compiler.

    Raises
    ------
    ExportError
        If the model is not a plain feed-forward binary network (e.g.
        ``resnet18``'s real-valued shortcuts, or the float baseline), naming
        the layer and why.
    """
    if not isinstance(model, BinaryNet):
        raise ExportError(f"{name} ({type(model).__name__}) cannot be lowered to hardware yet: "
                          f"{_first_unsupported(model)}; the hardware supports feed-forward "
                          "binary networks (mlp-digits, cnn-digits, tfc, sfc, lfc, cnv)")
    steps = []
    for child_name, mod in model.body.named_children():
        qual = f"body.{child_name}"
        if isinstance(mod, BinaryLayer):
            if mod.is_float:
                raise ExportError(f"{qual}: a layer of the float baseline (real weights, hard-tanh "
                                  "input) has no binary form; train without --quantizer float")
            q = quantized_weight(mod)
            if isinstance(mod, BinaryConv2d):
                steps.append(ExportedBinaryLayer(qual, "conv2d", input_mode=mod.input_mode,
                                                 kernel=mod.kernel_size, stride=mod.stride,
                                                 pad=mod.padding, pad_value=int(mod.pad_value),
                                                 **q))
            elif isinstance(mod, BinaryLinear):
                steps.append(ExportedBinaryLayer(qual, "dense", input_mode=mod.input_mode, **q))
        elif isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            if not mod.affine or not mod.track_running_stats:
                raise ExportError(f"{qual}: batch norm needs affine=True and running statistics")
            steps.append(ExportedBatchNorm(
                qual, mod.running_mean.double().numpy().copy(), mod.running_var.double().numpy().copy(),
                float(mod.eps), mod.weight.detach().double().numpy().copy(),
                mod.bias.detach().double().numpy().copy()))
        elif isinstance(mod, nn.MaxPool2d):
            k, s = mod.kernel_size, mod.stride
            if not isinstance(k, int) or not isinstance(s, int) or mod.padding or mod.dilation != 1:
                raise ExportError(f"{qual}: max pool must be square, unpadded and undilated")
            steps.append(ExportedMaxPool(qual, k, s))
        elif isinstance(mod, nn.Flatten):
            steps.append(ExportedFlatten(qual))
        else:
            raise ExportError(f"{qual}: {type(mod).__name__} has no hardware equivalent")
    binarizer = model.input_binarizer
    return ExportedNetwork(name, tuple(model.input_shape), input_bits, input_scale,
                           model.num_outputs, tuple(steps),
                           None if binarizer is None else binarizer.threshold)
