"""A composite layer's MVU with its ``K`` binary planes bit-serial: one set of lanes, ``K`` passes.

The parallel unit (:class:`~bitfold.hw.mvu.MVU` with ``plane_scale``) gives every
plane its own ``PE x SIMD`` XNOR-popcount lanes and adder trees; this one has a
single set and spends ``K`` cycles on each weight word position ``(nf, sf)``,
cycle ``k`` counting plane ``k``'s bits and accumulating ``plane_scale[k]``
times the sum. It takes ``K`` times the cycles (``NF * SF * K`` per vector) for
about ``1 / K`` of the adder trees; the folding (``compiler.cost``, layout
``"serial"``) prices both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import memory

from bitfold.compiler.memlayout import serial_weight_words

from .arith import reg
from .mvu import MVU
from .ranges import LUTROM_MAX_DEPTH
from .weights import CompositeWeights

__all__ = ["SerialCompositeMVU"]


class SerialCompositeMVU(MVU):
    """A composite layer's MVU processing its ``K`` planes one after another.

    Parameters are :class:`~bitfold.hw.mvu.MVU`'s, with ``weights`` of shape
    ``(K, mh, mw)`` and ``plane_scale`` required. For each word position
    ``(nf, sf)`` the unit spends ``K`` cycles: cycle ``k`` reads plane ``k``'s
    ``PE * SIMD`` weight bits (a ``PE * SIMD``-wide, ``NF * SF * K``-deep memory,
    :func:`serial_weight_words`) and the same input word, and the accumulator
    adds ``plane_scale[k]`` times the adder tree's sum (one of ``K`` constant
    products, selected by the plane, registered). In the first fold the input
    word is read from the stream on all ``K`` cycles and taken (``ready``) on the
    last; later folds read the input buffer, as :class:`MVU`'s do. An
    accumulation starts at ``sf == 0, k == 0`` and ends at
    ``sf == SF - 1, k == K - 1``, so one output vector takes ``NF * SF * K`` cycles.
    """

    LAYOUT = "serial"
    GATED_INPUTS = False  # its lanes take +-x terms (no input-sum lane)

    def __init__(self, weights: np.ndarray, pe: int, simd: int, acc_shape: Shape, *,
                 plane_scale: Sequence[int], thresholds: np.ndarray | None = None,
                 input_bits: int = 1, bipolar: bool = True, levels_per_stage: int = 2,
                 weight_memory: str | None = None,
                 lutrom_max_depth: int = LUTROM_MAX_DEPTH) -> None:
        if plane_scale is None:
            raise ValueError("a serial composite MVU needs plane_scale")
        planes = CompositeWeights(weights, plane_scale)
        super().__init__(planes, pe, simd, acc_shape, thresholds=thresholds,
                         input_bits=input_bits, bipolar=bipolar,
                         levels_per_stage=levels_per_stage, weight_memory=weight_memory,
                         lutrom_max_depth=lutrom_max_depth)
        self.serial_scales = planes.scales

    def weight_words(self) -> list[int]:
        """Weight memory words (:func:`serial_weight_words`): address ``(nf*SF + sf)*K + k``."""
        return serial_weight_words(self.weights, self.pe, self.simd)

    def _front(self, m: Module, en: Value) -> tuple[list[list[Value]], Value]:
        """Counters ``nf, sf, k`` (``k`` innermost), plane ``k``'s weights and the input word."""
        nf_n, sf_n, k_n = self.nf, self.sf, self.planes
        depth = nf_n * sf_n * k_n
        i = self.i_stream

        # stage 0: counters; the first fold reads the stream (taken on the last plane),
        # later ones the buffer
        k = Signal(range(k_n))
        sf = Signal(range(sf_n))
        nf = Signal(range(nf_n))
        addr = Signal(range(depth))
        first_fold = nf == 0
        last_plane = k == k_n - 1
        active = first_fold & i.valid | ~first_fold
        go = en & active
        m.d.comb += i.ready.eq(en & first_fold & last_plane)
        with m.If(go):
            m.d.sync += [k.eq(Mux(last_plane, 0, k + 1)),
                         addr.eq(Mux(addr == depth - 1, 0, addr + 1))]
            with m.If(last_plane):
                m.d.sync += sf.eq(Mux(sf == sf_n - 1, 0, sf + 1))
                with m.If(sf == sf_n - 1):
                    m.d.sync += nf.eq(Mux(nf == nf_n - 1, 0, nf + 1))

        # stage 1: weights and input word; ctl: valid, first, last, fold, plane
        w = self._weights(m, addr, en)
        x_in = reg(m, i.payload, en, "x_in")
        ctl = Cat(active, (sf == 0) & (k == 0), (sf == sf_n - 1) & last_plane, nf, k)
        ctl1 = reg(m, ctl, en, "ctl1", control=True)
        if nf_n > 1:
            m.submodules.inbuf = buf = memory.Memory(shape=unsigned(len(i.payload)), depth=sf_n,
                                                     init=[])
            wr, rd = buf.write_port(), buf.read_port()
            m.d.comb += [wr.addr.eq(sf), wr.data.eq(i.payload),
                         wr.en.eq(go & first_fold & last_plane),
                         rd.addr.eq(sf), rd.en.eq(en)]
            from_stream = reg(m, first_fold, en, "from_stream", control=True)
            x = Mux(from_stream, x_in, rd.data)
        else:
            x = x_in
        return [self.enc.terms(self, m, x, w, p, None) for p in range(self.pe)], ctl1

    def _tree(self, m: Module, lanes: list[list[Value]], ctl: Value, en: Value
              ) -> tuple[list[Value], Value]:
        """:class:`MVU`'s adder trees, then ``plane_scale[k] * sum`` (registered) per lane."""
        sums, ctl = super()._tree(m, lanes, ctl, en)
        nf_bits = Shape.cast(range(self.nf)).width
        plane = ctl[3 + nf_bits:]
        scaled = []
        for p, s in enumerate(sums):
            value = s * self.serial_scales[0]
            for k in range(1, self.planes):
                value = Mux(plane == k, s * self.serial_scales[k], value)
            scaled.append(reg(m, value, en, f"scaled{p}"))
        return scaled, reg(m, ctl, en, "scaled_ctl", control=True)

    def _combine(self, m: Module, sums: list[Value], nf: Value) -> list[Value]:
        """The planes are scaled one a cycle in :meth:`_tree` and added by the accumulator."""
        return sums
