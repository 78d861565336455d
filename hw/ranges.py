"""Where an MVU's weights live and the range its accumulators must hold."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape

from bitfold.compiler.cost import ResourceModel
from bitfold.compiler.memlayout import weight_memory_kind as _kind
from bitfold.compiler.verify import domain_range

__all__ = ["LUTROM_MAX_DEPTH", "accumulator_range", "check_accumulator",
           "weight_memory_kind"]

LUTROM_MAX_DEPTH = ResourceModel.lutrom_max_depth  # the default of units built without a folding


def weight_memory_kind(depth: int, lutrom_max_depth: int = LUTROM_MAX_DEPTH) -> str:
    """Where a ``depth``-word weight memory lives (:func:`~bitfold.compiler.memlayout.weight_memory_kind`)."""
    return _kind(depth, lutrom_max_depth)


def accumulator_range(weights: np.ndarray, input_bits: int, bipolar: bool,
                      polarity: np.ndarray | None = None,
                      plane_scale: np.ndarray | None = None,
                      offset: np.ndarray | None = None,
                      offset_scale: int = 1) -> tuple[int, int]:
    """The exact range of an MVU's accumulators (as ``compiler.verify.channel_ranges``)."""
    top = 1 if bipolar else (1 << input_bits) - 1
    weights = np.asarray(weights)
    if offset is not None:  # a domain layer: every partial sum lies in its row's range
        ranges = [domain_range(weights.shape[-1], offset_scale, int(m), top, bipolar)
                  for m in offset]
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    if polarity is not None:
        nnz = weights.sum(axis=1) * top
        if bipolar:
            return 0, int(nnz.max())
        pos = nnz[np.asarray(polarity) == 1]
        neg = nnz[np.asarray(polarity) == 0]
        return -int(neg.max(initial=0)), int(pos.max(initial=0))
    scale = 1 if plane_scale is None else int(np.sum(plane_scale))
    bound = weights.shape[-1] * top * scale
    return (0, bound) if bipolar else (-bound, bound)


def check_accumulator(acc_shape: Shape, lo: int, hi: int, thresholds, mh: int) -> np.ndarray | None:
    """Refuse an accumulator shape that cannot hold ``lo .. hi`` or thresholds not ``(mh,)``."""
    a_lo = -(1 << (acc_shape.width - 1)) if acc_shape.signed else 0
    a_hi = (1 << (acc_shape.width - (1 if acc_shape.signed else 0))) - 1
    if lo < a_lo or hi > a_hi:
        raise ValueError(f"acc_shape {acc_shape} cannot hold accumulators {lo}..{hi}")
    if thresholds is None:
        return None
    thresholds = np.asarray(thresholds, dtype=np.int64)
    if thresholds.shape != (mh,):
        raise ValueError(f"thresholds must have shape ({mh},), not {thresholds.shape}")
    return thresholds
