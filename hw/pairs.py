"""The first layer's terms from input pairs: multi-bit input, binary weights, many PE lanes.

A lane's sum ``sum(w ? x : -x)`` is taken two inputs ``a, b`` at a time. The pair's
``S = a + b`` and ``D = a - b`` are computed once, shared by every PE lane; a lane's
term is ``S``, ``D``, ``~D`` or ``~S`` by its two weights (``~v = -v - 1``, one XOR),
one LUT4 per bit of four inputs (``S_i``, ``D_i`` and the two weights). The ``~``
terms are one less than the true ``-v``: :func:`pair_correction` counts them per
neuron, and the MVU moves its thresholds by it, so the layer computes exactly the
same bits. Against gated terms and an input-sum lane (``2 sum(w & x) - sum(x)``) this
halves a lane's adder tree and drops its AND gates, for two adders per input pair.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value, signed

from bitfold.compiler.cost import PAIR_MIN_PE  # fewer PE lanes do not pay for the pair sums

from .arith import as_signed, reg

__all__ = ["PAIR_MIN_PE", "pair_correction", "pair_terms"]

def pair_correction(weights: np.ndarray, simd: int) -> np.ndarray:
    """Per neuron, the paired terms' sum minus the true ``sum(w ? x : -x)``: minus the
    number of pairs whose first weight is 0 (their term is ``~v = -v - 1``).

    Pairs are input columns ``(2j, 2j + 1)`` of each ``simd``-wide word (a lone last
    column pairs with itself).
    """
    cols = np.arange(weights.shape[-1]) % simd
    return -(1 - weights[:, cols % 2 == 0].astype(np.int64)).sum(axis=1)


def pair_terms(m: Module, x: Value, w: Value, en: Value, pe: int, simd: int, input_bits: int
               ) -> list[list[Value]]:
    """The ``pe`` lanes' terms of input word ``x`` (``simd`` unsigned ``input_bits``-bit
    elements) and weight word ``w`` (lane ``p``: bits ``[p*simd, (p+1)*simd)``).

    The pair sums are registered (with ``en``), and so is ``w`` beside them; so is each
    lane's term (the flip-flop shares its LUT's slice), as the pair sums fan out to every
    lane across the die: two pipeline stages.
    """
    b = input_bits
    xs = [x[s * b:(s + 1) * b] for s in range(simd)]
    sd = []
    for j in range(0, simd, 2):
        if j + 1 < simd:
            pair = (xs[j] + xs[j + 1], xs[j] - xs[j + 1])
        else:  # a lone last input: its own pair, with a zero and its own weight
            pair = (xs[j], xs[j])
        sd.append(tuple(reg(m, v, en, f"pair{j // 2}_{k}") for k, v in enumerate(pair)))
    w = reg(m, w, en, "w_pair")
    lanes = []
    for p in range(pe):
        wp = w.word_select(p, simd)
        terms = []
        for j, (s_, d_) in enumerate(sd):
            wa = wp[2 * j]
            wb = wp[2 * j + 1] if 2 * j + 1 < simd else wa
            pick = Signal(signed(b + 2))  # S, or D where the weights differ; sign-extended
            m.d.comb += pick.eq(Mux(wa ^ wb, as_signed(d_), as_signed(s_)))
            term = (pick.as_unsigned() ^ (~wa).replicate(b + 2)).as_signed()
            terms.append(reg(m, term, en, f"term{p}_{j}"))
        lanes.append(terms)
    return lanes
