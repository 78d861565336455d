"""Real-valued factorizations of binary layers' latent weights.

Each class here is a ``torch.nn.utils.parametrize`` parametrization: its
``forward(*factors)`` rebuilds the real weight and its ``right_inverse(W)``
decomposes a real weight into factors, so a layer can start from pretrained
weights. The binarization (:class:`~bitfold.train.quant.BinarizeWeight`) is
chained after it: reconstruct, then binarize (Bulat et al. §4.2).

The holistic variant shares one higher-order Tucker tensor between a group of
same-shaped layers: :class:`HolisticTucker` owns the shared core and factors,
and each layer's :class:`HolisticSlice` owns only its row of the layer-mode
factor, so the group's reconstruction sliced at layer ``l`` is that layer's
weight (§4.2.3).

The reconstructions run at every training step. They go through
:func:`mode_dot` and :func:`tucker_to_tensor`, which issue exactly the torch
operations tensorly's functions of the same names issue with its pytorch
backend, in the same order (so the weights, and everything trained from them,
are bit-identical to tensorly's), without tensorly's per-call backend dispatch:
that dispatch was a quarter of holistic Tucker's step overhead on
``mlp-digits``. Matrices (dense layers' weights) take :func:`matrix_tucker`
instead, one autograd function with the same values and gradients bit for bit
and fewer, cheaper operations. The decompositions (``right_inverse``) still
call tensorly.

``product_dtype`` of :class:`SVDWeight`, :class:`TuckerWeight` and
:class:`HolisticTucker` (None: the factors' own dtype; set by ``parametrize_model(...,
factor_dtype=...)``) is the dtype of a matrix reconstruction's products. The weight is
binarized after the reconstruction, so it can be built from operands rounded to
bfloat16 (the products about 4x faster on CPUs with AMX or AVX512-BF16; about 0.1% of
the signs differ from a float32 reconstruction of the same factors). Training,
evaluation and export all reconstruct this way, so the exported signs are the ones the
network was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorly as tl
import torch
from tensorly.decomposition import parafac, tucker
from torch import Tensor, nn

from .catalog import PARAMS

__all__ = [
    "PARAMS",
    "CPWeight",
    "HolisticSlice",
    "HolisticTucker",
    "SVDWeight",
    "TuckerWeight",
    "matrix_tucker",
    "mode_dot",
    "resolve_ranks",
    "tucker_to_tensor",
]


def mode_dot(tensor: Tensor, matrix_or_vector: Tensor, mode: int) -> Tensor:
    """``tensor`` times a matrix ``(J, I_mode)`` or a vector ``(I_mode,)`` along ``mode``.

    The operations of ``tensorly.tenalg.mode_dot`` with the pytorch backend, one
    for one: unfold (``moveaxis`` + ``reshape``), ``matmul``, fold; a vector
    removes the mode.
    """
    rest = tensor.shape[:mode] + tensor.shape[mode + 1:]
    unfolded = torch.reshape(torch.moveaxis(tensor, mode, 0), (tensor.shape[mode], -1))
    res = torch.matmul(matrix_or_vector, unfolded)
    if matrix_or_vector.dim() == 1:
        return torch.reshape(res, rest)
    return torch.moveaxis(torch.reshape(res, (matrix_or_vector.shape[0], *rest)), 0, mode)


def tucker_to_tensor(core: Tensor, factors: Sequence[Tensor]) -> Tensor:
    """``core x_0 factors[0] x_1 factors[1] ...``, as ``tensorly.tucker_to_tensor`` computes it."""
    for mode, factor in enumerate(factors):
        core = mode_dot(core, factor, mode)
    return core


class _MatrixTucker(torch.autograd.Function):
    """``U1 (row . core) U2^T`` for a matrix (or ``U1 core U2^T`` without ``row``), forward and backward.

    The same values, bit for bit, as autograd through ``tucker_to_tensor(mode_dot(core,
    row, 0), [U1, U2])``, and the same layout: the weight is the transpose of a
    contiguous ``(C_in, C_out)`` product, so the binarization and its gradients see the
    strides they saw (a contiguous weight changes the bits of the scales' gradients).
    MKL's forward product gives the same bits for a transposed operand as for tensorly's
    contiguous copy of it (Intel Xeon and AMD EPYC), so that copy is skipped; the backward's
    ``d_a`` is made contiguous as autograd's is, since on AMD EPYC its transposed view sums
    in another order for some shapes. Fewer and cheaper operations: the
    layer mode is a matrix-vector product forward (``mv``, 2.5x faster than the
    ``1 x L`` matrix product), its gradient for the core an outer product written as a
    broadcast multiply (one product per element, as the ``L x 1`` times ``1 x N`` matrix
    product it replaces; 3-4x faster), and one autograd node replaces a dozen views,
    reshapes and products. The layer row's gradient keeps its matrix product: a faster
    ``mv`` sums in another order.
    """

    @staticmethod
    def forward(ctx, core: Tensor, u1: Tensor, u2: Tensor, row: Tensor | None,  # noqa: D102
                dtype: torch.dtype | None) -> Tensor:
        if row is None:
            m = core
        else:
            m = torch.mv(core.reshape(core.shape[0], -1).t(), row).reshape(core.shape[1:])
        if dtype is not None:  # the products in ``dtype``; the layer mode stays as it is
            m, u1, u2 = m.to(dtype), u1.to(dtype), u2.to(dtype)
        a = torch.mm(u1, m)  # (C_out, R_in)
        ctx.save_for_backward(core, u1, u2, row, m, a)
        return torch.mm(u2, a.t()).t().to(core.dtype)  # (C_out, C_in), strides (1, C_out), as mode_dot's

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        core, u1, u2, row, m, a = ctx.saved_tensors
        need_core, need_u1, need_u2, need_row, _ = ctx.needs_input_grad
        home = core.dtype
        grad_t = grad.t().to(u2.dtype)  # (C_in, C_out)
        d_u2 = grad_t.mm(a).to(home) if need_u2 else None
        # contiguous, as autograd's reshape hands it on (the class docstring)
        d_a = u2.t().mm(grad_t).t().contiguous() if need_core or need_u1 or need_row else None
        d_u1 = d_a.mm(m.t()).to(home) if need_u1 else None
        d_core = d_row = None
        if need_core or need_row:
            d_m = u1.t().mm(d_a).to(home)
            if row is None:
                d_core = d_m
            else:
                flat = d_m.reshape(1, -1)
                if need_row:
                    d_row = flat.mm(core.reshape(core.shape[0], -1).t()).reshape(row.shape)
                if need_core:
                    d_core = (row[:, None] * flat).reshape(core.shape)
        return d_core, d_u1, d_u2, d_row, None


def matrix_tucker(core: Tensor, u1: Tensor, u2: Tensor, row: Tensor | None = None,
                  dtype: torch.dtype | None = None) -> Tensor:
    """``tucker_to_tensor(core, [u1, u2])``, or with ``row`` ``tucker_to_tensor(mode_dot(core,
    row, 0), [u1, u2])``, bit for bit (values, layout and gradients) and faster
    (:class:`_MatrixTucker`). With ``dtype`` (e.g. ``torch.bfloat16``) its six matrix
    products, forward and backward, take operands rounded to ``dtype``; the layer mode,
    the result and every gradient stay in the factors' dtype."""
    return _MatrixTucker.apply(core, u1, u2, row, dtype)


def resolve_ranks(shape: Sequence[int], rank: float | None, fixed: Sequence[int] = ()) -> list[int]:
    """Ranks per mode: ``None`` is full rank, a float in (0, 1] a fraction of each mode.

    ``fixed`` ranks are prepended as they are (the layer mode of a holistic
    group). A mode's rank never exceeds the product of the other modes' ranks,
    the largest rank that mode of the core can have, so the decomposition
    never pads its factors with random columns.
    """
    if rank is not None and not 0 < rank <= 1:
        raise ValueError(f"rank must be a fraction in (0, 1], not {rank!r}")
    ranks = [*fixed, *(d if rank is None else max(1, math.ceil(rank * d)) for d in shape)]
    if len(ranks) < 2:
        return ranks
    for _ in range(len(ranks)):  # each pass only lowers ranks; a fixed point is reached fast
        capped = [min(r, math.prod(ranks[:i] + ranks[i + 1:])) for i, r in enumerate(ranks)]
        if capped == ranks:
            break
        ranks = capped
    return ranks


class SVDWeight(nn.Module):
    """``W.reshape(C_out, -1) = U diag(S) V^T`` with U, S and V all learned (§4.2.1)."""

    product_dtype: torch.dtype | None = None  # the module docstring, last paragraph

    def __init__(self, shape: Sequence[int], rank: float | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        rows, cols = self.shape[0], math.prod(self.shape[1:])
        self.rank = resolve_ranks([min(rows, cols)], rank)[0]

    def forward(self, u: Tensor, s: Tensor, v: Tensor) -> Tensor:
        dtype = self.product_dtype
        if dtype is None:
            return ((u * s) @ v.T).reshape(self.shape)
        return ((u * s).to(dtype) @ v.T.to(dtype)).to(u.dtype).reshape(self.shape)

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u, s, vh = torch.linalg.svd(w.reshape(w.shape[0], -1), full_matrices=False)
        r = self.rank
        return u[:, :r].contiguous(), s[:r].contiguous(), vh[:r].T.contiguous()


class TuckerWeight(nn.Module):
    """Layer-wise Tucker: ``W = G x_1 U_1 x_2 U_2 ...``, full-rank core by default (§4.2.2)."""

    product_dtype: torch.dtype | None = None  # the module docstring, last paragraph

    def __init__(self, shape: Sequence[int], rank: float | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.ranks = resolve_ranks(self.shape, rank)

    def forward(self, core: Tensor, *factors: Tensor) -> Tensor:
        if len(factors) == 2:
            return matrix_tucker(core, *factors, dtype=self.product_dtype)
        return tucker_to_tensor(core, factors)

    def right_inverse(self, w: Tensor) -> tuple[Tensor, ...]:
        with tl.backend_context("pytorch"):
            core, factors = tucker(w.detach(), rank=self.ranks, init="svd", n_iter_max=100,
                                   random_state=0)
        return (core.contiguous(), *(f.contiguous() for f in factors))


class CPWeight(nn.Module):
    """CP (CANDECOMP/PARAFAC): ``W = sum_r a_r o b_r o ...`` with learned factors."""

    def __init__(self, shape: Sequence[int], rank: int | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        # Default: the rank of the output-channel unfolding (exact for matrices).
        self.rank = rank if rank is not None else min(self.shape[0], math.prod(self.shape[1:]))
        if self.rank < 1:
            raise ValueError(f"cp rank must be a positive integer, not {rank!r}")

    def forward(self, *factors: Tensor) -> Tensor:
        with tl.backend_context("pytorch"):
            return tl.cp_to_tensor((None, list(factors)))

    def right_inverse(self, w: Tensor) -> tuple[Tensor, ...]:
        with tl.backend_context("pytorch"):
            weights, factors = parafac(
                w.detach(), rank=self.rank, n_iter_max=500, tol=1e-10, normalize_factors=False,
                init="svd" if self.rank <= min(self.shape) else "random", random_state=0,
            )
            # Fold the CP weights into the first factor so forward needs only factors.
            factors = [f.clone() for f in factors]
            factors[0] = factors[0] * weights
        if not all(torch.isfinite(f).all() for f in factors):
            raise ValueError(
                f"CP decomposition of a {list(self.shape)} weight at rank {self.rank} diverged; "
                "choose a smaller --rank"
            )
        return tuple(f.contiguous() for f in factors)


class HolisticTucker(nn.Module):
    """One Tucker tensor of shape ``(L, *layer_shape)`` shared by ``L`` same-shaped layers.

    The module owns the core and the factors of the layer dimensions; the
    layer-mode factor has one row per layer and those rows live in the layers'
    own :class:`HolisticSlice` parametrizations.

    Parameters
    ----------
    weights : Tensor
        The group's stacked real weights, shape ``(L, *layer_shape)``; the
        decomposition starts from them.
    rank : float, optional
        Fraction of each layer dimension kept; full rank when omitted. The
        layer mode is always kept at full rank ``L``.
    """

    product_dtype: torch.dtype | None = None  # the module docstring, last paragraph

    def __init__(self, weights: Tensor, rank: float | None = None) -> None:
        super().__init__()
        self.layer_shape = tuple(weights.shape[1:])
        self.num_layers = weights.shape[0]
        ranks = resolve_ranks(self.layer_shape, rank, fixed=[self.num_layers])
        with tl.backend_context("pytorch"):
            core, factors = tucker(weights.detach(), rank=ranks, init="svd", n_iter_max=100,
                                   random_state=0)
        self.core = nn.Parameter(core.contiguous())
        self.factors = nn.ParameterList([nn.Parameter(f.contiguous()) for f in factors[1:]])

    def reconstruct(self, row: Tensor) -> Tensor:
        """The weight of the layer whose layer-mode factor row is ``row``."""
        if len(self.layer_shape) == 2:
            return matrix_tucker(self.core, self.factors[0], self.factors[1], row,
                                 self.product_dtype)
        return tucker_to_tensor(mode_dot(self.core, row, 0), self.factors)

    def project(self, w: Tensor) -> Tensor:
        """The layer-mode row that best reconstructs ``w`` with the shared core and factors."""
        with tl.backend_context("pytorch"):
            # Factors are orthonormal (HOSVD/HOOI), so projecting onto them is their transpose.
            p = tl.tenalg.multi_mode_dot(w, list(self.factors), transpose=True)
        g = self.core.detach().reshape(self.core.shape[0], -1)  # (L, prod R)
        # driver gelsd (SVD), not the CPU default gelsy: torch hands gelsy an uninitialized
        # pivot array (jpvt = at::empty), and LAPACK reads a non-zero entry as "keep this
        # column first", so the same inputs gave a solution differing in the last bit from
        # call to call and process to process, and training diverged from there.
        sol = torch.linalg.lstsq(g.T, p.reshape(-1, 1), driver="gelsd").solution
        # A fresh tensor: lstsq's solution is a strided view of a larger buffer, and a
        # 1-element view keeps its odd stride through clone() (DDP then warns).
        return torch.empty(sol.shape[0], dtype=sol.dtype).copy_(sol.reshape(-1))


class HolisticSlice(nn.Module):
    """A layer's view of a :class:`HolisticTucker` group: its own row of the layer factor.

    The group is held by reference, outside this module's parameters: the
    model registers it once (``model.factor_groups``) so its parameters are one
    set, saved once and updated by every layer of the group.
    """

    def __init__(self, group: HolisticTucker, index: int) -> None:
        super().__init__()
        object.__setattr__(self, "group", group)
        self.index = index

    def forward(self, row: Tensor) -> Tensor:
        return self.group.reconstruct(row)

    def right_inverse(self, w: Tensor) -> Tensor:
        return self.group.project(w).to(w.dtype)
