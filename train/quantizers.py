"""Weight quantizers beyond ``alpha * sign(W)``: sparse binary, composite binary, low-rank binary.

Each is a ``torch.nn.utils.parametrize`` link chained after the factorization
("reconstruct, then quantize"), like :class:`~bitfold.train.quant.BinarizeWeight`,
and every forward pass returns exactly what the compiler represents in integers:

* :class:`SparseWeight` -- Schiavone et al.'s sparse binary domain ``{0, b}``:
  per output channel, a mask of exactly ``round((1 - S) * fan_in)`` non-zero
  positions and one real value ``b_c``. The closed-form optimum for a real row
  (:func:`quantize_sparse`) keeps the largest (or the smallest) values and sets
  ``b`` to their mean. :func:`quantize_domain` is the general ``{a, b}`` case.
* :class:`DomainWeight` -- the general binary domain ``{a, b}`` per output channel
  (:func:`quantize_domain`'s closed form), written as an offset plus a scaled
  binary weight, ``d_c (s + m_c / 2**FRAC_BITS)`` with ``s`` +-1 and an integer
  offset ``m_c``, so a layer is a popcount plus a multiple of its input's popcount.
* :class:`CompositeWeight` -- CBDNet's ``W ~ sum_k alpha_k B_k``: ``K`` binary
  planes from greedy residual binarization, combined as
  ``alpha_c * sum_k (m_k / 2**FRAC_BITS) B_k`` with per-layer integer plane
  scales ``m_k`` (``m_0 = 2**FRAC_BITS``) learned through a rounding STE, so the
  hardware needs only shifts and adds of per-plane popcounts.
* :class:`LowRankWeight` -- a binary matrix replaced by the product of two
  binary matrices, ``alpha_c * sign(A) @ sign(B)`` with ``A`` of ``R`` columns;
  it owns its latent factors (it is the whole chain of its layer).

The gradients are straight-through estimators: clipped identity, as for sign.
The closed forms and the estimators are :mod:`~bitfold.train.closed_forms`'
(re-exported here).

``float`` (:func:`check_quantizer` accepts it) is no link at all: the float
baseline keeps the real reconstruction as its weight and uses hard-tanh for
sign (:func:`~bitfold.train.layers.parametrize_model`); it has no binary form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .catalog import ALPHA_MODES, QUANTIZERS
from .closed_forms import (
    _per_channel,
    _rows,
    check_sparse_group,
    greedy_planes,
    groupable,
    mask_ste,
    nonzeros,
    quantize_domain,
    quantize_sparse,
    round_ste,
    split_ste,
)
from .quant import sign_ste

__all__ = [
    "FRAC_BITS",
    "QUANTIZER_LINKS",
    "QUANTIZERS",
    "CompositeWeight",
    "DomainWeight",
    "LowRankWeight",
    "SparseWeight",
    "check_quantizer",
    "check_sparse_group",
    "groupable",
    "greedy_planes",
    "mask_ste",
    "nonzeros",
    "quantize_domain",
    "quantize_sparse",
    "round_ste",
    "split_ste",
]

FRAC_BITS = 8  # fractional bits of the composite plane scales the IR stores


def _check_alpha(alpha: str) -> None:
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, not {alpha!r}")


# --------------------------------------------------------------------------- parametrizations


class _Scale(nn.Module):
    """Per-output-channel scale: ``none`` (1), ``analytic`` (given), ``learned`` (a parameter)."""

    def __init__(self, alpha: str, init: Tensor) -> None:
        super().__init__()
        _check_alpha(alpha)
        self.mode = alpha
        if alpha == "learned":
            self.alpha = nn.Parameter(init.detach().clone())

    def value(self, analytic: Tensor) -> Tensor:
        if self.mode == "none":
            return torch.ones_like(analytic)
        if self.mode == "analytic":
            return analytic
        return self.alpha


class SparseWeight(nn.Module):
    """``b_c * mask_c``: the sparse binary domain ``{0, b}`` at a target sparsity.

    ``analytic``: ``b_c`` is the closed-form optimum (:func:`quantize_sparse`)
    in the direction (largest or smallest values kept) chosen at
    initialization; ``learned``: a parameter initialized to it, whose sign
    chooses the direction; ``none``: ``b_c = 1``, the largest values kept.
    """

    def __init__(self, alpha: str, weight: Tensor, sparsity: float,
                 group: int | None = None, channels: int | None = None) -> None:
        super().__init__()
        nonzeros(_rows(weight).shape[1], sparsity)  # checks sparsity
        self.sparsity = float(sparsity)
        # N:G groups where the weight splits into them (a first convolution of 1 or 3
        # channels does not; it stays unstructured, and its fan-in is small)
        self.group = group if group is not None and \
            groupable(tuple(weight.shape), group, channels) else None
        self.channels = channels
        b, _, direction = quantize_sparse(weight.detach(), self.sparsity, group=self.group,
                                          channels=channels)
        self.scale = _Scale(alpha, b)
        # Kept values: the largest (+1) or smallest (-1) per channel, the closed form's choice at
        # initialization (a choice re-made every step flips channels back and forth).
        self.register_buffer("direction", direction if alpha == "analytic" else
                             torch.ones_like(direction))

    def quantize(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(b, mask, direction)`` of the real weight ``w``: see :func:`quantize_sparse`."""
        direction = self.scale.alpha.detach() if self.scale.mode == "learned" else self.direction
        b, mask, direction = quantize_sparse(w, self.sparsity, direction, self.group,
                                             self.channels)
        return self.scale.value(b), mask, direction

    def forward(self, w: Tensor) -> Tensor:
        b, mask, direction = self.quantize(w)
        # the straight-through gradient goes to direction * w, the values the mask ranks
        return _per_channel(b, w) * mask_ste(_per_channel(direction, w) * w, mask)

    def right_inverse(self, w: Tensor) -> Tensor:
        return w


class DomainWeight(nn.Module):
    """``d_c (s + m_c / 2**FRAC_BITS)``: the general binary domain ``{a_c, b_c}`` per channel.

    Every forward pass takes the closed-form optimum of :func:`quantize_domain`
    (the split ``upper`` and ``a_c <= b_c``, recomputed differentiably as the means
    of the two sides) and writes it as an offset plus a scaled binary weight:
    ``s = +1`` where ``upper`` else ``-1`` (straight-through), the half-gap
    ``d_c = (b_c - a_c) / 2`` and the centre ``c_c = (a_c + b_c) / 2`` as the integer
    ``m_c = round(2**FRAC_BITS c_c / d_c)`` (``|m_c| <= MAX_OFFSET``).
    ``alpha`` decides the scale in place of ``d_c``: ``analytic`` (``d_c`` itself),
    ``learned`` (a parameter initialized to it) or ``none`` (1); ``m_c`` always comes
    from the closed form. The result is exactly what the compiler represents
    (``compiler.ir.DomainDense``: ``scale = 2**FRAC_BITS``, ``offset = m``).

    Like the split, ``m_c`` is re-derived from the latent weights every step and
    passes no gradient to them: straight through ``round`` (``round_ste``) it would
    add every weight of a row a share of the row's summed gradient, amplified by
    ``1 / d_c``, and on sfc/MNIST (3 epochs, learned alpha) training reached 0.930
    test accuracy with that gradient against 0.961 without it.
    """

    MAX_OFFSET = 1 << (FRAC_BITS + 4)
    MIN_GAP = 1e-8  # half-gaps below it (constant rows) are taken as it

    def __init__(self, alpha: str, weight: Tensor) -> None:
        super().__init__()
        a, b, _ = self.closed_form(weight.detach())
        self.scale = _Scale(alpha, (b - a) / 2)

    @staticmethod
    def closed_form(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, b, upper)`` of :func:`quantize_domain`, ``a`` and ``b`` differentiable in ``w``."""
        _, _, upper = quantize_domain(w)
        rows, up = _rows(w), _rows(upper)
        n_hi = up.sum(dim=1)
        n_lo = rows.shape[1] - n_hi
        b = (rows * up).sum(dim=1) / n_hi.clamp_min(1)
        a = (rows * (1 - up)).sum(dim=1) / n_lo.clamp_min(1)
        return torch.where(n_lo > 0, a, b), b, upper

    def quantize(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(scale d (C_out,), s of w's shape (+-1), integer offsets m (C_out,) as floats)``."""
        a, b, upper = self.closed_form(w)
        gap = (b - a) / 2
        centre = (a + b) / 2
        m = torch.round(centre.detach() / gap.detach().clamp_min(self.MIN_GAP)
                        * (1 << FRAC_BITS)).clamp(-self.MAX_OFFSET, self.MAX_OFFSET)
        return self.scale.value(gap), split_ste(w, upper), m

    def forward(self, w: Tensor) -> Tensor:
        d, s, m = self.quantize(w)
        return _per_channel(d, w) * (s + _per_channel(m, w) / (1 << FRAC_BITS))

    def right_inverse(self, w: Tensor) -> Tensor:
        return w


class CompositeWeight(nn.Module):
    """``alpha_c * sum_k (m_k / 2**FRAC_BITS) B_k``: ``K`` greedy residual binary planes.

    ``m_0 = 2**FRAC_BITS``; the other plane scales are per-layer ratios
    ``r_k`` (initialized from the greedy scales, averaged over channels) rounded
    to integers ``m_k = round(r_k 2**FRAC_BITS) >= 1`` in every forward pass
    (straight-through), so training, evaluation and the IR use the same numbers.
    ``alpha`` is per output channel as for plain binary weights (``analytic``:
    the first greedy scale, ``mean |W|``).
    """

    def __init__(self, alpha: str, weight: Tensor, bases: int) -> None:
        super().__init__()
        _, scales = greedy_planes(weight.detach(), bases)
        self.bases = bases
        self.scale = _Scale(alpha, scales[0])
        ratios = (scales[1:] / scales[0].clamp_min(1e-12)).mean(dim=1)
        self.ratio = nn.Parameter(ratios.clone())

    def plane_scales(self) -> Tensor:
        """The integer plane scales ``m_k`` (float tensor, straight-through to ``ratio``)."""
        one = torch.full((1,), float(1 << FRAC_BITS), dtype=self.ratio.dtype,
                         device=self.ratio.device)
        rest = round_ste(self.ratio * (1 << FRAC_BITS)).clamp_min(1.0)
        return torch.cat([one, rest])

    def quantize(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(alpha (C_out,), planes (K, *shape) of +-1, plane scales m (K,))``."""
        planes, scales = greedy_planes(w, self.bases)
        return self.scale.value(scales[0]), planes, self.plane_scales()

    def forward(self, w: Tensor) -> Tensor:
        alpha, planes, m = self.quantize(w)
        m = m.to(w.dtype) / (1 << FRAC_BITS)
        combined = (m.reshape((-1,) + (1,) * w.dim()) * planes).sum(dim=0)
        return _per_channel(alpha, w) * combined

    def right_inverse(self, w: Tensor) -> Tensor:
        return w


class LowRankWeight(nn.Module):
    """``alpha_c * sign(A) @ sign(B)``: a binary ``(C_out, R)`` times a binary ``(R, fan_in)``.

    The layer's whole parametrization: ``right_inverse`` splits a real weight
    by truncated SVD (``A = U sqrt(S)``, ``B = sqrt(S) V^T``). ``analytic``
    alpha is the least-squares scale of the binary product against ``A @ B``.
    """

    def __init__(self, alpha: str, weight: Tensor, rank: int) -> None:
        super().__init__()
        rows = _rows(weight)
        if not isinstance(rank, int) or not 1 <= rank < min(rows.shape):
            raise ValueError(f"low rank must be 1..{min(rows.shape) - 1} for a "
                             f"{tuple(rows.shape)} weight, not {rank!r}")
        self.shape = tuple(weight.shape)
        self.rank = rank
        a, b = self._split(weight.detach())
        self.scale = _Scale(alpha, self._analytic(a, b))

    def _split(self, w: Tensor) -> tuple[Tensor, Tensor]:
        u, s, vh = torch.linalg.svd(_rows(w), full_matrices=False)
        root = s[:self.rank].sqrt()
        return (u[:, :self.rank] * root).contiguous(), (root[:, None] * vh[:self.rank]).contiguous()

    @staticmethod
    def _analytic(a: Tensor, b: Tensor) -> Tensor:
        product = sign_ste(a) @ sign_ste(b)
        real = a @ b
        return (real * product).sum(dim=1) / (product * product).sum(dim=1).clamp_min(1.0)

    def quantize(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(alpha (C_out,), sign(A), sign(B))``."""
        return self.scale.value(self._analytic(a, b)), sign_ste(a), sign_ste(b)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        alpha, sa, sb = self.quantize(a, b)
        return (alpha[:, None] * (sa @ sb)).reshape(self.shape)

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        return self._split(w)


def check_quantizer(quantizer: str, sparsity: float | None, bases: int | None,
                    low_rank: int | None) -> None:
    """Raise ``ValueError`` naming the option when a quantizer's options do not fit together.

    ``float`` takes none of them (``--sparsity``, ``--bases``, ``--low-rank``).
    """
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, not {quantizer!r}")
    if quantizer == "sparse":
        if sparsity is None or not 0 < sparsity < 1:
            raise ValueError(f"--quantizer sparse needs --sparsity S in (0, 1), not {sparsity!r}")
    elif sparsity is not None:
        raise ValueError("--sparsity applies to --quantizer sparse only")
    if quantizer == "composite":
        if not isinstance(bases, int) or bases < 1:
            raise ValueError(f"--quantizer composite needs --bases K >= 1, not {bases!r}")
    elif bases is not None:
        raise ValueError("--bases applies to --quantizer composite only")
    if low_rank is not None:
        if quantizer != "composite":
            raise ValueError("--low-rank applies to --quantizer composite only")
        if not isinstance(low_rank, int) or low_rank < 1:
            raise ValueError(f"--low-rank must be a positive integer, not {low_rank!r}")


QUANTIZER_LINKS = (SparseWeight, CompositeWeight, LowRankWeight, DomainWeight)
