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
* Each layer's weight encoding packs its weights once (``Encoding.packed``, in the
  encoding's module): sparse layers count the masked inputs equal to the row's
  polarity, ``popcount(x & mask)`` or ``nnz - popcount(x & mask)``; composite layers add
  their planes' accumulators times the integer plane scales; domain layers
  ``scale`` times the binary accumulator plus each row's offset times the
  input's sum.
* Convolutions gather each ``(k, k, C_in)`` window (im2col) into rows, which the
  encoding accumulates as a dense layer's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .bitpack import pack_bits
from .encoding import Accumulate
from .errors import CompilerError
from .geometry import Window
from .golden import check_inputs
from .ir import (
    FOLDED_KINDS,
    Add,
    ArgMax,
    AvgPool2d,
    Graph,
    Layer,
    MaxPool2d,
    Node,
    Requantize,
    ScoreAffine,
    TensorType,
    Threshold,
    Upsample2d,
)

__all__ = ["PackedExecutor", "pack_bits", "run_packed"]


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
            kinds = sorted({n.op for n in graph.nodes if n.op not in FOLDED_KINDS})
            raise CompilerError(f"graph {graph.name!r} is not folded (has {', '.join(kinds)}); "
                                "run compiler.passes.fold first")
        self.graph = graph
        # each layer's encoding packs its weights once
        self._mvus: dict[str, Accumulate] = {
            n.name: n.encoding.packed(graph.types[n.input], bit_serial)
            for n in graph.nodes if isinstance(n, Layer)}

    def _layer(self, node: Layer, x: np.ndarray, t_in: TensorType) -> np.ndarray:
        geo = node.geometry
        if not isinstance(geo, Window):
            return self._mvus[node.name](x.reshape(len(x), -1))
        n, c, k, s = len(x), x.shape[3], geo.kernel, geo.stride
        # windows: (N, OH, OW, C, k, k) -> (N, OH, OW, k, k, C), the weight's order
        win = sliding_window_view(geo.padded(x, t_in), (k, k), axis=(1, 2))[:, ::s, ::s]
        oh, ow = win.shape[1:3]
        rows = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, k * k * c)
        return self._mvus[node.name](rows).reshape(n, oh, ow, -1)

    def _run_node(self, node: Node, x: np.ndarray, t_in: TensorType) -> np.ndarray:
        run = _KERNELS.get(type(node))
        if run is None:
            raise CompilerError(f"node {node.name!r}: the packed executor cannot run {node.kind}")
        return run(self, node, x, t_in)

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
                if isinstance(node, Add):
                    values[node.name] = _add(node, values[node.input], values[node.skip])
                elif node.name not in values:
                    src = node.inputs[0]
                    values[node.name] = self._run_node(node, values[src], self.graph.types[src])
            for name in keep:
                parts[name].append(values[name])
        return {name: (np.concatenate(p) if p else np.zeros((0,) + self.graph.types[name].shape,
                                                            np.int64))
                for name, p in parts.items()}


def _windows(node: MaxPool2d | AvgPool2d, x: np.ndarray) -> np.ndarray:
    """A pool's windows of ``(N, H, W, C)`` maps, ``(N, OH, OW, C, k, k)`` (a view)."""
    win = sliding_window_view(x, (node.kernel, node.kernel), axis=(1, 2))
    return win[:, ::node.stride, ::node.stride]


def _max_pool(node: MaxPool2d, x: np.ndarray) -> np.ndarray:
    return _windows(node, x).max(axis=(-2, -1))


def _avg_pool(node: AvgPool2d, x: np.ndarray) -> np.ndarray:
    return _windows(node, x).sum(axis=(-2, -1)) // (node.kernel ** 2)


def _clip(v: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _requantize(node: Requantize, x: np.ndarray) -> np.ndarray:
    return _clip((x * node.mult + node.bias) >> node.shift, node.bits)


def _add(node: Add, x: np.ndarray, skip: np.ndarray) -> np.ndarray:
    missing = x.shape[-1] - skip.shape[-1]  # channels the skip lacks add zero
    if missing:
        skip = np.concatenate([skip, np.zeros(skip.shape[:-1] + (missing,), np.int64)], axis=-1)
    return _clip(x + skip, node.bits)


# one kernel per node kind: (executor, node, input values, input type) -> output values
_KERNELS: dict[type[Node], Callable[..., np.ndarray]] = {
    Layer: lambda ex, node, x, t: ex._layer(node, x, t),
    Threshold: lambda ex, node, x, t: (x >= node.thresholds).astype(np.uint8),
    MaxPool2d: lambda ex, node, x, t: _max_pool(node, x),
    ScoreAffine: lambda ex, node, x, t: x * node.scale + node.bias,
    ArgMax: lambda ex, node, x, t: np.argmax(x, axis=1).astype(np.int64),
    Requantize: lambda ex, node, x, t: _requantize(node, x),
    AvgPool2d: lambda ex, node, x, t: _avg_pool(node, x),
    Upsample2d: lambda ex, node, x, t: x.repeat(node.factor, axis=1).repeat(node.factor, axis=2),
}


def run_packed(graph: Graph, x: np.ndarray | Mapping[str, np.ndarray],
               keep: Iterable[str] | None = None, batch: int = 128,
               bit_serial: bool = False) -> dict[str, np.ndarray]:
    """Execute a folded graph with :class:`PackedExecutor`; see :meth:`PackedExecutor.run`."""
    return PackedExecutor(graph, bit_serial).run(x, keep, batch)
