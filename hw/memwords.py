"""Memory words of the MVUs: weights and per-neuron ROMs (thresholds, polarities, offsets)."""

from __future__ import annotations

import numpy as np

__all__ = ["fold_words", "offset_words", "signed_bits", "threshold_words", "weight_words"]


def weight_words(weights: np.ndarray, pe: int, simd: int) -> list[int]:
    """Weight memory words of ``(mh, mw)`` bits: address ``nf*SF + sf``, bit ``p*simd + s``.

    ``(K, mh, mw)`` planes (a composite layer) share each word: plane ``k`` holds
    bits ``k*pe*simd ..``.
    """
    weights = np.asarray(weights)
    if weights.ndim == 3:
        width = pe * simd
        per_plane = [weight_words(plane, pe, simd) for plane in weights]
        return [sum(w << (k * width) for k, w in enumerate(words))
                for words in zip(*per_plane, strict=True)]
    mh, mw = weights.shape
    nf, sf = mh // pe, mw // simd
    w = weights.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3)
    return [int(sum(int(b) << i for i, b in enumerate(word)))
            for word in w.reshape(nf * sf, pe * simd)]


def fold_words(values, pe: int, width: int) -> list[int]:
    """A per-neuron ROM's words: fold ``nf`` at address ``nf``, neuron ``nf*pe + p`` at bits
    ``p*width ..``, two's complement (thresholds, polarities, domain offsets)."""
    mask = (1 << width) - 1
    v = [int(x) for x in np.asarray(values).reshape(-1)]
    return [sum((x & mask) << (p * width) for p, x in enumerate(v[i:i + pe]))
            for i in range(0, len(v), pe)]


def threshold_words(thresholds: np.ndarray, pe: int, acc_width: int) -> tuple[int, list[int]]:
    """``(bits per threshold, words)`` (:func:`fold_words`): as few bits as the values need.

    The compiler's thresholds lie in ``lo .. hi + 1`` of the accumulator's range
    (``compiler.passes.exact_threshold``), so they are sized to that range. ``acc_width``
    is kept for callers; the width does not depend on it.
    """
    t = np.asarray(thresholds, dtype=np.int64)
    width = max(2, *(signed_bits(int(v)) for v in (t.min(), t.max())))
    return width, fold_words(t, pe, width)


def signed_bits(value: int) -> int:
    """Bits of the smallest two's-complement shape holding ``value``."""
    return (value if value >= 0 else -value - 1).bit_length() + 1


def offset_words(offset, pe: int) -> tuple[int, list[int]]:
    """``(bits per offset, words)`` of a domain layer's offsets (:func:`fold_words`)."""
    offset = [int(v) for v in offset]
    width = max(2, max(abs(v) for v in offset).bit_length() + 1)
    return width, fold_words(offset, pe, width)
