"""The golden model's fast executor: bits packed into uint64 words, ``np.bitwise_count``.

It runs folded graphs only (integer node kinds) and must agree exactly with
the reference interpreter :func:`bitfold.compiler.golden.run_reference`; tests
compare the two on thousands of random graphs.

* Bipolar layers: inputs and weight rows are packed 64 bits to a word (bit
  ``i`` of word ``j`` is element ``64 j + i``; the tail is zero in both, so it
  never mismatches) and ``popcount(xnor) = fan_in - popcount(x ^ w)``.
* Multi-bit layers (the first layer, whose input is pixels) are a float64
  matrix product with the +-1 weights: exact, since every partial sum is an
  integer below ``2**53``. With ``bit_serial=True`` they run over the input's
  bit planes ``q`` instead:
  ``sum_i (w_i ? x_i : -x_i) = sum_q 2^q (2 popcount(x_q & w) - popcount(x_q))``.
* Sparse layers count the masked inputs equal to the row's polarity,
  ``popcount(x & mask)`` or ``nnz - popcount(x & mask)``; composite layers add
  their planes' accumulators times the integer plane scales; domain layers
  ``scale`` times the binary accumulator plus each row's offset times the
  input's sum.
* Convolutions gather each ``(k, k, C_in)`` window (im2col) and reuse the above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import CompilerError
from .golden import check_inputs, pad_bit
from .ir import (
    CONV_KINDS,
    DENSE_KINDS,
    FOLDED_KINDS,
    MVU_KINDS,
    ArgMax,
    CompositeConv2d,
    CompositeDense,
    ConvNode,
    DenseNode,
    DomainConv2d,
    DomainDense,
    Graph,
    MaxPool2d,
    ScoreAffine,
    SparseConv2d,
    SparseDense,
    TensorType,
    Threshold,
    mvu_matrix,
)

__all__ = ["PackedExecutor", "pack_bits", "run_packed"]


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack 0/1 values along the last axis into little-endian uint64 words (zero tail)."""
    packed = np.packbits(bits.astype(np.uint8, copy=False), axis=-1, bitorder="little")
    tail = (-packed.shape[-1]) % 8
    if tail:
        packed = np.concatenate(
            [packed, np.zeros(packed.shape[:-1] + (tail,), dtype=np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view("<u8")


def _popcount(op, x: np.ndarray, w_t: np.ndarray, count_dtype) -> np.ndarray:
    """``sum_j popcount(op(x[:, j], w_t[j]))``: packed rows ``x (N, W)``, weights ``w_t (W, C)``.

    The weights are stored word-major so each step reads a contiguous row;
    counts accumulate in the narrowest unsigned type that holds the fan-in.
    """
    out = np.zeros((len(x), w_t.shape[1]), dtype=count_dtype)
    for j in range(x.shape[1]):
        out += np.bitwise_count(op(x[:, j, None], w_t[j][None, :]))
    return out


@dataclass(frozen=True)
class _Mvu:
    """A binary layer's weights, packed once (word-major: ``(W, C_out)`` uint64).

    ``signs_t`` (``(fan_in, C_out)`` float64 of +-1) is set for a multi-bit layer
    whose accumulator is computed as a float64 matrix product instead of bit-serially.
    """

    words_t: np.ndarray
    fan_in: int
    bipolar: bool
    input_bits: int
    signs_t: np.ndarray | None = None

    @classmethod
    def of(cls, flat_w: np.ndarray, t_in: TensorType, bit_serial: bool) -> _Mvu:
        words = np.ascontiguousarray(pack_bits(flat_w).T)
        # exact: every partial sum is an integer of magnitude <= fan_in * max input < 2**53
        exact = flat_w.shape[1] * t_in.hi < 2**53
        signs = None if t_in.bipolar or bit_serial or not exact else \
            np.ascontiguousarray(np.where(flat_w == 1, 1.0, -1.0).T)
        return cls(words, flat_w.shape[1], t_in.bipolar, t_in.bits, signs)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Accumulators of ``rows (N, fan_in)`` (bits or unsigned ints) -> ``(N, C_out)``."""
        count = np.uint16 if self.fan_in < (1 << 16) else np.uint32
        if self.bipolar:
            mismatches = _popcount(np.bitwise_xor, pack_bits(rows), self.words_t, count)
            return self.fan_in - mismatches.astype(np.int64)
        if self.signs_t is not None:
            return (rows.astype(np.float64) @ self.signs_t).astype(np.int64)
        acc = np.zeros((len(rows), self.words_t.shape[1]), dtype=np.int64)
        for q in range(self.input_bits):
            plane = pack_bits((rows >> q) & 1)
            ones = np.bitwise_count(plane).sum(axis=1, dtype=np.int64)[:, None]
            pos = _popcount(np.bitwise_and, plane, self.words_t, count).astype(np.int64)
            acc += (2 * pos - ones) << q
        return acc


@dataclass(frozen=True)
class _SparseMvu:
    """A sparse layer: ``p = popcount(x & mask)`` per row, then ``p`` or ``nnz - p`` by polarity.

    Multi-bit input is the exact float64 product with the masked +-1 rows.
    """

    mask_t: np.ndarray
    nnz: np.ndarray
    polarity: np.ndarray
    fan_in: int
    bipolar: bool
    signs_t: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray, polarity: np.ndarray, t_in: TensorType) -> _SparseMvu:
        if not t_in.bipolar and mask.shape[1] * t_in.hi >= 2**53:
            raise CompilerError(f"a sparse layer of fan-in {mask.shape[1]} over {t_in.bits}-bit "
                                "input is too wide for the packed executor")
        signs = mask * np.where(polarity == 1, 1.0, -1.0)[:, None]
        return cls(np.ascontiguousarray(pack_bits(mask).T), mask.sum(axis=1).astype(np.int64),
                   polarity.astype(bool), mask.shape[1], t_in.bipolar,
                   np.ascontiguousarray(signs.T))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if not self.bipolar:
            return (rows.astype(np.float64) @ self.signs_t).astype(np.int64)
        count = np.uint16 if self.fan_in < (1 << 16) else np.uint32
        ones = _popcount(np.bitwise_and, pack_bits(rows), self.mask_t, count).astype(np.int64)
        return np.where(self.polarity, ones, self.nnz - ones)


@dataclass(frozen=True)
class _CompositeMvu:
    """A composite layer: the plane scales times each plane's :class:`_Mvu` accumulator."""

    planes: tuple[_Mvu, ...]
    scales: tuple[int, ...]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.sum([m * mvu(rows) for m, mvu in zip(self.scales, self.planes, strict=True)],
                      axis=0)


@dataclass(frozen=True)
class _DomainMvu:
    """A domain layer: ``scale`` times the binary :class:`_Mvu` accumulator plus
    ``offset`` times the input's sum (bipolar: its number of 1 bits)."""

    signs: _Mvu
    scale: int
    offset: np.ndarray

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        x_sum = rows.sum(axis=1, dtype=np.int64)[:, None]
        return self.scale * self.signs(rows) + self.offset[None, :] * x_sum


def _mvu_of(node, t_in: TensorType, bit_serial: bool
            ) -> _Mvu | _SparseMvu | _CompositeMvu | _DomainMvu:
    planes = mvu_matrix(node)
    if isinstance(node, DomainDense | DomainConv2d):
        return _DomainMvu(_Mvu.of(planes[0], t_in, bit_serial), int(node.scale),
                          np.asarray(node.offset, dtype=np.int64))
    if isinstance(node, SparseDense | SparseConv2d):
        return _SparseMvu.of(planes[0], node.polarity, t_in)
    if isinstance(node, CompositeDense | CompositeConv2d):
        return _CompositeMvu(tuple(_Mvu.of(p, t_in, bit_serial) for p in planes),
                             tuple(int(m) for m in node.plane_scale))
    return _Mvu.of(planes[0], t_in, bit_serial)


class PackedExecutor:
    """A folded graph prepared for fast execution (weights packed once).

    Parameters
    ----------
    graph : Graph
        A verified, folded graph (see ``compiler.passes.fold``).
    bit_serial : bool
        Compute multi-bit layers over bit planes with ``bitwise_count`` (default:
        an exact float64 matrix product, several times faster).
    """

    def __init__(self, graph: Graph, bit_serial: bool = False) -> None:
        if not graph.folded:
            kinds = sorted({n.kind for n in graph.nodes if n.kind not in FOLDED_KINDS})
            raise CompilerError(f"graph {graph.name!r} is not folded (has {', '.join(kinds)}); "
                                "run compiler.passes.fold first")
        self.graph = graph
        self._mvus: dict[str, _Mvu | _SparseMvu | _CompositeMvu | _DomainMvu] = {}
        for node in graph.nodes:
            if isinstance(node, MVU_KINDS):
                self._mvus[node.name] = _mvu_of(node, graph.types[node.input], bit_serial)

    def _dense(self, node: DenseNode, x: np.ndarray, t_in: TensorType) -> np.ndarray:
        return self._mvus[node.name](x.reshape(len(x), -1))

    def _conv(self, node: ConvNode, x: np.ndarray, t_in: TensorType) -> np.ndarray:
        n, h, w, c = x.shape
        k, s, p = node.kernel, node.stride, node.pad
        if p:
            padded = np.full((n, h + 2 * p, w + 2 * p, c), pad_bit(node, t_in), dtype=x.dtype)
            padded[:, p:p + h, p:p + w, :] = x
            x = padded
        # windows: (N, OH, OW, C, k, k) -> (N, OH, OW, k, k, C), the weight's order
        win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
        oh, ow = win.shape[1:3]
        rows = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, k * k * c)
        return self._mvus[node.name](rows).reshape(n, oh, ow, -1)

    def _run_node(self, node, x: np.ndarray, t_in: TensorType) -> np.ndarray:
        if isinstance(node, DENSE_KINDS):
            return self._dense(node, x, t_in)
        if isinstance(node, CONV_KINDS):
            return self._conv(node, x, t_in)
        if isinstance(node, Threshold):
            return (x >= node.thresholds).astype(np.uint8)
        if isinstance(node, MaxPool2d):
            win = sliding_window_view(x, (node.kernel, node.kernel), axis=(1, 2))
            return win[:, ::node.stride, ::node.stride].max(axis=(-2, -1))
        if isinstance(node, ScoreAffine):
            return x * node.scale + node.bias
        if isinstance(node, ArgMax):
            return np.argmax(x, axis=1).astype(np.int64)
        raise CompilerError(f"node {node.name!r}: the packed executor cannot run {node.kind}")

    def run(self, x: np.ndarray | Mapping[str, np.ndarray], keep: Iterable[str] | None = None,
            batch: int = 128) -> dict[str, np.ndarray]:
        """Execute on frames ``x`` in batches of ``batch``; return the tensors in ``keep``.

        ``keep`` defaults to every tensor; pass ``graph.outputs`` for speed.
        """
        inputs = check_inputs(self.graph, x)
        keep = set(self.graph.types) if keep is None else set(keep)
        unknown = keep - set(self.graph.types)
        if unknown:
            raise CompilerError(f"graph {self.graph.name!r} has no tensors {sorted(unknown)}")
        n = len(next(iter(inputs.values())))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in keep}
        for start in range(0, n, batch):
            values = {k: v[start:start + batch] for k, v in inputs.items()}
            for node in self.graph.nodes:
                if node.name not in values:
                    src = node.inputs[0]
                    values[node.name] = self._run_node(node, values[src], self.graph.types[src])
            for name in keep:
                parts[name].append(values[name])
        return {name: (np.concatenate(p) if p else np.zeros((0,) + self.graph.types[name].shape,
                                                            np.int64))
                for name, p in parts.items()}


def run_packed(graph: Graph, x: np.ndarray | Mapping[str, np.ndarray],
               keep: Iterable[str] | None = None, batch: int = 128,
               bit_serial: bool = False) -> dict[str, np.ndarray]:
    """Execute a folded graph with :class:`PackedExecutor`; see :meth:`PackedExecutor.run`."""
    return PackedExecutor(graph, bit_serial).run(x, keep, batch)
