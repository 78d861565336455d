"""Memory layouts of the accelerator's units and their widths: one home for the cost model
(:mod:`.cost`), the hardware plan (``hw/plan.py``) and the units (``hw/``). Numpy only.

A matrix-vector unit (MVU) of ``MH`` neurons folded at ``(PE, SIMD)`` reads one weight
word per cycle; what a word holds depends on the layout (:func:`weight_geometry`):

* ``"dense"`` / ``"mask"``: ``PE * SIMD`` weight bits (``K`` planes of a composite layer
  side by side), address ``nf*SF + sf`` (:func:`weight_words`);
* ``"serial"``: one plane's ``PE * SIMD`` bits, plane-major per word position
  (:func:`serial_weight_words`);
* ``"index"``: ``PE * SIMD`` slots, each a kept input's position (:func:`index_bits`)
  and a valid bit when rows are ragged (:func:`index_words`);
* ``"group"``: ``PE * SIMD * N`` slots, positions inside groups of ``G``
  (:func:`group_words`).

Per-neuron ROMs (thresholds, polarities, domain offsets) hold fold ``nf`` at address
``nf`` (:func:`fold_words`). Every word is packed by :func:`~.bitpack.pack_ints`.
"""

from __future__ import annotations

import math

import numpy as np

from .bitpack import pack_ints

__all__ = ["fold_words", "group_slot_bits", "group_words", "index_bits", "index_slot_bits",
           "index_window_lanes", "index_words", "line_buffer_rows", "offset_bits",
           "offset_words", "rom_in_block_ram", "serial_weight_words", "signed_bits", "threshold_bits",
           "threshold_words", "vector_beats", "weight_geometry", "weight_memory_kind",
           "weight_words", "window_lanes", "window_order"]


def signed_bits(value: int) -> int:
    """Bits of the smallest two's-complement shape holding ``value``."""
    return (value if value >= 0 else -value - 1).bit_length() + 1


def weight_memory_kind(depth: int, lutrom_max_depth: int) -> str:
    """Where a ``depth``-word weight memory lives: ``"constant"`` (one word), ``"lutrom"``
    (LUT ROM, up to ``lutrom_max_depth`` words) or ``"bram"`` (a synchronous read)."""
    if depth == 1:
        return "constant"
    return "lutrom" if depth <= lutrom_max_depth else "bram"


def rom_in_block_ram(depth: int, lutrom_max_depth: int) -> bool:
    """Whether a per-neuron ROM read synchronously (thresholds) of ``depth`` words is block
    RAM (``rom_style = "block"``): deeper than a LUT ROM."""
    return depth > lutrom_max_depth


# ----------------------------------------------------------------------------- geometry


def weight_geometry(layout: str, mh: int, cols: int, pe: int, simd: int, planes: int = 1,
                    slot_bits: int = 1, kept: int = 1) -> tuple[int, int, int, int]:
    """``(NF, SF, depth, width)`` of an MVU's weight memory.

    ``cols`` is what ``SIMD`` folds (``MW``, the kept inputs ``K`` of the index layout, the
    groups ``MW / G`` of the group layout); ``slot_bits`` and ``kept`` (``N``) are the
    index and group layouts' slots.
    """
    nf, sf = math.ceil(mh / pe), math.ceil(cols / simd)
    if layout == "serial":
        return nf, sf, nf * sf * planes, pe * simd
    if layout == "index":
        return nf, sf, nf * sf, pe * simd * slot_bits
    if layout == "group":
        return nf, sf, nf * sf, pe * simd * kept * slot_bits
    return nf, sf, nf * sf, pe * simd * planes


def index_bits(mw: int) -> int:
    """Bits of an input position ``0 .. mw - 1`` in the index layout of a sparse layer."""
    return max(1, (mw - 1).bit_length())


def index_slot_bits(mw: int, ragged: bool) -> int:
    """Bits of one slot of the index layout: a position, plus a valid bit when padded."""
    return index_bits(mw) + (1 if ragged else 0)


def group_slot_bits(group: int, ragged: bool) -> int:
    """Bits of one slot of the group layout: a position in the group, and a valid bit if padded."""
    return max(1, (group - 1).bit_length()) + (1 if ragged else 0)


def threshold_bits(thresholds: np.ndarray) -> int:
    """Bits of a threshold ROM's entries: as few as the values need, at least 2."""
    t = np.asarray(thresholds, dtype=np.int64)
    return max(2, signed_bits(int(t.min(initial=0))), signed_bits(int(t.max(initial=0))))


def offset_bits(offset) -> int:
    """Bits of a domain layer's offsets (two's complement), at least 2."""
    return max(2, int(np.abs(np.asarray(offset, dtype=np.int64)).max(initial=0)).bit_length() + 1)


def vector_beats(mw: int, cycles: int) -> int:
    """Elements per input word of an index-layout unit: the fewest dividing ``mw`` whose
    ``mw / in_elems`` words arrive within ``cycles`` (a vector's compute cycles)."""
    return next(b for b in range(1, mw + 1) if mw % b == 0 and mw // b <= cycles)


def window_lanes(kernel: int, c: int, simd: int) -> int:
    """Window columns per sliding-window word: the fewest giving at least ``simd`` elements."""
    for lanes in range(1, kernel + 1):
        if kernel % lanes == 0 and lanes * kernel * c >= simd:
            return lanes
    return kernel


def index_window_lanes(kernel: int, cycles: int) -> int:
    """Window columns per word in front of an index-layout unit: whole columns, as few as
    load a window within the unit's ``cycles`` per window."""
    return next(n for n in range(1, kernel + 1) if kernel % n == 0 and kernel // n <= cycles)


def line_buffer_rows(h: int, kernel: int, stride: int, pad: int) -> int:
    """Row slots a line buffer needs: ``k + s`` (capped at ``h``), or the frame's tail rows."""
    oh = (h + 2 * pad - kernel) // stride + 1
    tail = h - max(0, (oh - 1) * stride - pad)
    return max(1, min(h, max(kernel + stride, tail)))


def window_order(kernel: int, channels: int) -> np.ndarray:
    """Indices into a ``(ky, kx, c)``-flattened window giving the unit's ``(kx, ky, c)`` order."""
    idx = np.arange(kernel * kernel * channels).reshape(kernel, kernel, channels)
    return idx.transpose(1, 0, 2).ravel()


# ----------------------------------------------------------------------------- words


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
    return pack_ints(w.reshape(nf * sf, pe * simd), 1)


def serial_weight_words(weights: np.ndarray, pe: int, simd: int) -> list[int]:
    """Weight words of ``(K, mh, mw)`` planes, plane-major per word position.

    Plane ``k`` of position ``nf*SF + sf`` is at address ``(nf*SF + sf)*K + k``,
    bit ``p*simd + s`` (as :func:`weight_words` of one plane).
    """
    planes = [weight_words(plane, pe, simd) for plane in np.asarray(weights)]
    return [w for words in zip(*planes, strict=True) for w in words]


def fold_words(values, pe: int, width: int) -> list[int]:
    """A per-neuron ROM's words: fold ``nf`` at address ``nf``, neuron ``nf*pe + p`` at bits
    ``p*width ..``, two's complement (thresholds, polarities, domain offsets)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    return [pack_ints(v[i:i + pe][None], width)[0] for i in range(0, len(v), pe)]


def threshold_words(thresholds: np.ndarray, pe: int) -> tuple[int, list[int]]:
    """``(bits per threshold, words)`` (:func:`fold_words`): as few bits as the values need.

    The compiler's thresholds lie in ``lo .. hi + 1`` of the accumulator's range
    (``compiler.passes.exact_threshold``), so they are sized to that range.
    """
    width = threshold_bits(thresholds)
    return width, fold_words(thresholds, pe, width)


def offset_words(offset, pe: int) -> tuple[int, list[int]]:
    """``(bits per offset, words)`` of a domain layer's offsets (:func:`fold_words`)."""
    width = offset_bits(offset)
    return width, fold_words(offset, pe, width)


def index_words(mask: np.ndarray, pe: int, simd: int) -> tuple[int, int, list[int]]:
    """``(position bits, slot bits, words)`` of a sparse layer's index layout.

    Row ``r``'s kept inputs (where ``mask`` is 1), ascending, are its slots
    ``0 .. K - 1`` (``K`` the most in a row, at least 1); a shorter row's last
    slots are padding. Slot ``t`` of row ``nf*pe + p`` is at address
    ``nf*SF + t // simd`` (``SF = K / simd``), bits ``(p*simd + t % simd) * slot``:
    the position, then a valid bit when some row has fewer than ``K`` (padding is 0 with
    valid 0).
    """
    mask = np.asarray(mask)
    mh, mw = mask.shape
    rows = [np.flatnonzero(r) for r in mask]
    k = max(1, max(len(r) for r in rows))
    ragged = min(len(r) for r in rows) < k  # some slots are padding
    ib, slot = index_bits(mw), index_slot_bits(mw, ragged)
    if mh % pe or k % simd:
        raise ValueError(f"pe must divide {mh} and simd the {k} kept inputs of the fullest row, "
                         f"not pe={pe!r}, simd={simd!r}")
    nf, sf = mh // pe, k // simd
    words = [0] * (nf * sf)
    for r, kept in enumerate(rows):
        n, p = divmod(r, pe)
        for t, pos in enumerate(kept):
            f, s_ = divmod(t, simd)
            value = int(pos) | ((1 << ib) if ragged else 0)
            words[n * sf + f] |= value << ((p * simd + s_) * slot)
    return ib, slot, words


def group_words(mask: np.ndarray, group: int, pe: int, simd: int
                ) -> tuple[int, int, bool, list[int]]:
    """``(kept N, slot bits, ragged, words)`` of a sparse layer's group layout.

    Group ``g`` of row ``r`` holds columns ``g*G .. g*G + G - 1``; its kept
    positions in the group, ascending, fill slots ``0 .. N - 1`` (``N`` the most
    kept in any group, at least 1), padding last, each slot a position then a
    valid bit when some group keeps fewer than ``N``. Row ``nf*pe + p``, group
    ``sf*simd + s``, slot ``j`` is at address ``nf*SF + sf`` (``SF = MW / (G simd)``),
    bits ``((p*simd + s)*N + j) * slot``.
    """
    mask = np.asarray(mask)
    mh, mw = mask.shape
    if group < 2 or group & (group - 1) or mw % group:
        raise ValueError(f"group must be a power of two >= 2 dividing the {mw} inputs, "
                         f"not {group!r}")
    groups = mask.reshape(mh, mw // group, group)
    counts = groups.sum(axis=2)
    n = max(1, int(counts.max()))
    ragged = bool(counts.min() < n)
    slot = group_slot_bits(group, ragged)
    pos_bits = slot - (1 if ragged else 0)
    if mh % pe or (mw // group) % simd:
        raise ValueError(f"pe must divide {mh} and simd the {mw // group} groups, "
                         f"not pe={pe!r}, simd={simd!r}")
    nf, sf = mh // pe, mw // group // simd
    words = [0] * (nf * sf)
    for r in range(mh):
        f, p = divmod(r, pe)
        for g in range(mw // group):
            a, s = divmod(g, simd)
            for j, pos in enumerate(np.flatnonzero(groups[r, g])):
                value = int(pos) | ((1 << pos_bits) if ragged else 0)
                words[f * sf + a] |= value << (((p * simd + s) * n + j) * slot)
    return n, slot, ragged, words
