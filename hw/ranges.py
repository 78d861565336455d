"""The default memory placement of units built without a folding, and the accumulator check.

The range itself is the IR's (``Encoding.channel_ranges``, :meth:`.weights.UnitWeights.acc_range`)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape

from bitfold.compiler.cost import ResourceModel

__all__ = ["LUTROM_MAX_DEPTH", "check_accumulator"]

LUTROM_MAX_DEPTH = ResourceModel.lutrom_max_depth  # the default of units built without a folding


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
