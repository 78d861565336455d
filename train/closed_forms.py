"""The closed forms behind :mod:`bitfold.train.quantizers`' links, and their straight-through
estimators.

Plain functions of a latent weight tensor, no modules, no state: the optimal
``{0, b}`` rows at a fixed sparsity, flat or N:G (:func:`quantize_sparse`), the
optimal ``{a, b}`` rows (:func:`quantize_domain`), greedy residual binary planes
(:func:`greedy_planes`); the checks of the sparse options; and the STEs that give
their 0/1 and +-1 outputs a gradient (clipped identity, as for sign). The
parametrization links in :mod:`~bitfold.train.quantizers` call them in every
forward pass.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .quant import sign_ste

__all__ = [
    "check_sparse_group",
    "greedy_planes",
    "groupable",
    "mask_ste",
    "nonzeros",
    "quantize_domain",
    "quantize_sparse",
    "round_ste",
    "split_ste",
]


def _rows(w: Tensor) -> Tensor:
    return w.reshape(w.shape[0], -1)


def _per_channel(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


class _MaskSTE(torch.autograd.Function):
    """The given 0/1 mask forward; clipped identity backward to the latent weight."""

    @staticmethod
    def forward(ctx, w: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(w)
        return mask.to(w.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype), None


def mask_ste(w: Tensor, mask: Tensor) -> Tensor:
    """``mask`` (0/1) in the forward pass, a straight-through gradient to ``w``."""
    return _MaskSTE.apply(w, mask)


class _SplitSTE(torch.autograd.Function):
    """``+1`` where ``upper`` else ``-1`` forward; clipped identity backward (as for sign)."""

    @staticmethod
    def forward(ctx, w: Tensor, upper: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(w)
        return (2 * upper - 1).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype), None


def split_ste(w: Tensor, upper: Tensor) -> Tensor:
    """``+-1`` by the 0/1 split ``upper`` in the forward pass, a straight-through gradient to ``w``."""
    return _SplitSTE.apply(w, upper)


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` forward (half to even), identity backward."""
    return x + (torch.round(x) - x).detach()


# --------------------------------------------------------------------------- closed forms


def nonzeros(fan_in: int, sparsity: float) -> int:
    """Non-zero weights per output channel at ``sparsity``: ``fan_in - round(S fan_in)``, >= 1."""
    if not 0 < sparsity < 1:
        raise ValueError(f"sparsity must be in (0, 1), not {sparsity!r}")
    return max(1, fan_in - round(sparsity * fan_in))


def _grouped(w: Tensor, group: int, channels: int | None = None) -> Tensor:
    """``w`` as ``(C_out, groups, G)``: ``G`` consecutive input channels at one kernel
    position of a convolution, or ``G`` consecutive inputs of a dense layer -- of a dense
    layer fed by a flattened ``(channels, H, W)`` map, ``G`` consecutive channels at one
    pixel. The IR's columns are ``(ky, kx, C_in)`` and ``(H, W, C)``, so a group is
    consecutive in hardware too."""
    if w.dim() == 4:
        w = w.permute(0, 2, 3, 1)
    elif channels:
        w = w.reshape(w.shape[0], channels, -1).permute(0, 2, 1)
    return w.reshape(w.shape[0], -1, group)


def _ungrouped(g: Tensor, like: Tensor, channels: int | None = None) -> Tensor:
    if like.dim() == 4:
        c_out, c_in, kh, kw = like.shape
        return g.reshape(c_out, kh, kw, c_in).permute(0, 3, 1, 2)
    if channels:
        return g.reshape(like.shape[0], -1, channels).permute(0, 2, 1).reshape(like.shape)
    return g.reshape(like.shape)


def groupable(shape: tuple[int, ...], group: int, channels: int | None = None) -> bool:
    """Whether a weight of ``shape`` splits into groups of ``group``: a convolution's input
    channels, a flattened map's ``channels`` or a dense layer's fan-in divisible by it."""
    if len(shape) == 4:
        return shape[1] % group == 0
    if channels:
        return channels % group == 0 and shape[1] % channels == 0
    return math.prod(shape[1:]) % group == 0


def check_sparse_group(sparsity: float | None, group: int | None) -> None:
    """Raise ``ValueError`` unless ``--sparse-group G`` keeps a whole number of every ``G``."""
    if group is None:
        return
    if sparsity is None:
        raise ValueError("--sparse-group applies to --quantizer sparse only")
    if not isinstance(group, int) or group < 2 or group & (group - 1):
        raise ValueError(f"--sparse-group must be a power of two >= 2, not {group!r}")
    kept = (1 - sparsity) * group
    if abs(kept - round(kept)) > 1e-6 or round(kept) < 1:
        raise ValueError(f"--sparsity {sparsity} keeps {kept:g} of every {group} weights; choose "
                         f"a sparsity that is a multiple of 1/{group} below 1 (e.g. "
                         f"{1 - 1 / group:g})")


def quantize_sparse(w: Tensor, sparsity: float, direction: Tensor | None = None,
                    group: int | None = None, channels: int | None = None
                    ) -> tuple[Tensor, Tensor]:
    """Optimal ``{0, b}`` quantization of each row (output channel) at a fixed sparsity.

    With ``k`` non-zeros, ``||w - b m||^2 = ||w||^2 - k b^2`` once ``b`` is the
    mean of the kept values, so the optimum keeps the ``k`` largest values or the
    ``k`` smallest, whichever mean is larger in magnitude.

    Parameters
    ----------
    direction : Tensor, optional
        Per-row sign forcing the choice (``+1``: largest values), e.g. the sign
        of a learned scale.
    group : int, optional
        N:G structured sparsity: exactly ``N = (1 - S) G`` kept in every group of
        ``G`` (see :func:`_grouped`); the same argument keeps each group's ``N``
        largest (or smallest), ``b`` their mean over the row. ``channels``: the
        dense layer takes a flattened map of that many channels.

    Returns
    -------
    (b, mask, direction)
        ``b`` of shape ``(C_out,)`` (differentiable in ``w``), ``mask`` 0/1 of ``w``'s
        shape, and the per-row direction (+-1) that chose it: raising
        ``direction * w`` is what brings a value into the mask.
    """
    if group is not None:
        check_sparse_group(sparsity, group)
        rows = _grouped(w, group, channels)  # (C_out, groups, G): top-k per group
        k = round((1 - sparsity) * group)
    else:
        rows = _rows(w)[:, None, :]  # one group: the whole row
        k = nonzeros(rows.shape[2], sparsity)
    if direction is None:
        top = rows.detach().topk(k, dim=2).values.mean(dim=(1, 2))
        bottom = (-rows.detach()).topk(k, dim=2).values.mean(dim=(1, 2))
        direction = torch.where(top.abs() >= bottom.abs(), 1.0, -1.0).to(rows.dtype)
    direction = torch.where(direction >= 0, 1.0, -1.0).to(rows.dtype).reshape(-1, 1, 1)
    idx = (rows.detach() * direction).topk(k, dim=2).indices
    mask = torch.zeros_like(rows).scatter_(2, idx, 1.0)
    b = (rows * mask).sum(dim=(1, 2)) / (k * rows.shape[1])
    mask = _ungrouped(mask, w, channels) if group is not None else mask.reshape(w.shape)
    return b, mask, direction.reshape(-1)


def quantize_domain(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Optimal ``{a, b}`` quantization (``a <= b``) of each row: exact 1-D two-means.

    The best split of a row's sorted values is the one maximizing
    ``S_lo^2 / k + S_hi^2 / (n - k)`` (prefix sums), ``a`` and ``b`` the means
    of the two sides. Returns ``(a, b, upper)``; ``upper`` (0/1) marks the
    values quantized to ``b``. Rows with all values equal give ``a = b``.
    """
    rows = _rows(w.detach()).double()
    n = rows.shape[1]
    if n == 1:
        return rows[:, 0], rows[:, 0], torch.ones_like(w)
    sorted_rows, order = rows.sort(dim=1)
    prefix = sorted_rows.cumsum(dim=1)[:, :-1]  # sums of the k lowest, k = 1 .. n-1
    total = sorted_rows.sum(dim=1, keepdim=True)
    k = torch.arange(1, n, dtype=rows.dtype)
    gain = prefix**2 / k + (total - prefix) ** 2 / (n - k)
    split = gain.argmax(dim=1) + 1  # values of rank >= split go to b
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(n).expand_as(order))
    upper = (ranks >= split[:, None]).to(w.dtype)
    lo_sum = prefix.gather(1, (split - 1)[:, None])[:, 0]
    a = lo_sum / split
    b = (total[:, 0] - lo_sum) / (n - split)
    return a.to(w.dtype), b.to(w.dtype), upper.reshape(w.shape)


def greedy_planes(w: Tensor, bases: int) -> tuple[Tensor, Tensor]:
    """Greedy residual binarization: ``B_k = sign(R_k)``, ``a_k = mean |R_k|``, ``R_{k+1} = R_k - a_k B_k``.

    Returns ``(planes, scales)``: planes ``(K, *w.shape)`` of +-1 (straight-through
    gradients to ``w``), scales ``(K, C_out)``.
    """
    if not isinstance(bases, int) or bases < 1:
        raise ValueError(f"bases must be a positive integer, not {bases!r}")
    residual, planes, scales = w, [], []
    for _ in range(bases):
        plane = sign_ste(residual)
        scale = _rows(residual).abs().mean(dim=1)
        planes.append(plane)
        scales.append(scale)
        residual = residual - _per_channel(scale, w) * plane
    return torch.stack(planes), torch.stack(scales)
