"""The stages of a hardware plan: one frozen dataclass per kind of unit, plain data.

Every stage has its stream formats (``in_elems`` elements of ``in_bits`` bits in,
``out_elems`` of ``out_bits`` out) and the depth of the FIFO in front of it; each kind
adds its unit's parameters, builds its Amaranth component (:meth:`Stage.component`,
which imports Amaranth only when called) and lists its memories (:meth:`Stage.memories`,
the layouts of :mod:`bitfold.compiler.memlayout`). :func:`~.plan.build_plan` makes them.

======================  ==========  =====================================================
stage                   ``kind``    unit
======================  ==========  =====================================================
:class:`WindowStage`    ``swu``     :class:`~.swu.SlidingWindow`
:class:`PoolStage`      ``pool``    :class:`~.pool.MaxPool`
:class:`MVUStage`       ``mvu``     :class:`~.mvu.MVU` (dense, mask, parallel planes)
:class:`IndexMVUStage`  ``mvu``     :class:`~.index_mvu.IndexMVU` (index layout)
:class:`GroupMVUStage`  ``mvu``     :class:`~.group_mvu.GroupMVU` (group layout)
:class:`SerialMVUStage` ``mvu``     :class:`~.serial_mvu.SerialCompositeMVU` (serial)
:class:`ScoreStage`     ``score``   :class:`~.score.ScoreArgMax`
:class:`RequantStage`   ``requant`` :class:`~.residual.RequantAdd` (a ``Requantize`` alone)
:class:`SignStage`      ``sign``    :class:`~.residual.StreamThreshold`
:class:`ResidualStage`  ``residual`` :class:`~.residual.ResidualBlock` (a residual unit)
======================  ==========  =====================================================
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from bitfold.compiler.memlayout import (
    group_words,
    index_words,
    line_buffer_rows,
    offset_bits,
    threshold_bits,
    weight_geometry,
)

from .weights import CompositeWeights, SparseWeights, UnitWeights

__all__ = ["GroupMVUStage", "IndexMVUStage", "MVUStage", "MemorySpec", "PoolStage",
           "RequantStage", "ResidualStage", "ScoreStage", "SerialMVUStage", "SignStage", "Stage",
           "WindowStage"]


@dataclass(frozen=True)
class MemorySpec:
    """One memory of a unit: ``depth`` words of ``width`` bits; ``kind`` is where it lives
    (``"constant"``, ``"lutrom"``, ``"bram"``, or ``"ram"`` for written buffers)."""

    name: str
    depth: int
    width: int
    kind: str


@dataclass(frozen=True, kw_only=True)
class Stage(abc.ABC):
    """One hardware stage: its node, its stream formats and the FIFO in front of it."""

    kind: ClassVar[str]  # "mvu" | "swu" | "pool" | "score" (the manifest's)
    name: str  # sanitized, unique
    node: str  # the IR node it implements
    in_elems: int
    in_bits: int
    out_elems: int
    out_bits: int
    fifo_depth: int = 2  # FIFO in front of this stage

    @abc.abstractmethod
    def component(self) -> Any:
        """The stage's Amaranth component."""

    def memories(self) -> tuple[MemorySpec, ...]:
        """The unit's memories (none by default)."""
        return ()

    def fifo_depth_at(self, fifo_min: int) -> int:
        """The FIFO in front of the stage, given the least depth of any (``fifo_min``)."""
        return fifo_min

    def describe(self) -> dict[str, Any]:
        """What ``manifest.json`` says of the stage beside its formats."""
        return {}


@dataclass(frozen=True, kw_only=True)
class WindowStage(Stage):
    """A convolution's sliding window over a ``(h, w, c)`` map (:class:`~.swu.SlidingWindow`)."""

    kind: ClassVar[str] = "swu"
    h: int
    w: int
    c: int
    elem_bits: int
    kernel: int
    stride: int
    pad: int
    pad_value: int
    lanes: int

    def component(self) -> Any:
        from .swu import SlidingWindow

        return SlidingWindow(self.h, self.w, self.c, self.elem_bits, self.kernel, self.stride,
                             self.pad, self.pad_value, self.lanes)

    def memories(self) -> tuple[MemorySpec, ...]:
        rows = line_buffer_rows(self.h, self.kernel, self.stride, self.pad)
        return tuple(MemorySpec(f"row{n}", self.w, self.c * self.elem_bits, "ram")
                     for n in range(rows))


@dataclass(frozen=True, kw_only=True)
class PoolStage(Stage):
    """A max pool of a binary ``(h, w, c)`` map (:class:`~.pool.MaxPool`)."""

    kind: ClassVar[str] = "pool"
    h: int
    w: int
    c: int
    kernel: int
    stride: int

    def component(self) -> Any:
        from .pool import MaxPool

        return MaxPool(self.h, self.w, self.c, self.kernel, self.stride)


@dataclass(frozen=True, kw_only=True)
class ScoreStage(Stage):
    """The integer class scores and their running argmax (:class:`~.score.ScoreArgMax`)."""

    kind: ClassVar[str] = "score"
    scale: tuple[int, ...]
    bias: tuple[int, ...]
    acc_bits: int
    acc_signed: bool
    score_bits: int
    split_products: bool

    def component(self) -> Any:
        from .score import ScoreArgMax

        return ScoreArgMax(list(self.scale), list(self.bias),
                           _shape(self.acc_bits, self.acc_signed), self.score_bits,
                           split_products=self.split_products)


@dataclass(frozen=True, kw_only=True, eq=False)
class MVUStage(Stage):
    """A matrix-vector unit (:class:`~.mvu.MVU`): a binary, sparse (mask layout), composite
    (parallel planes) or domain layer, as its ``unit`` says: the weight encoding's strategy
    (:mod:`.weights`), made once by the plan from the encoding's parameters
    (``Encoding.unit_params``, :func:`~.weights.unit_weights`), its columns in stream
    order. ``register_reads``, ``credit`` and ``block_pes`` are this unit's: the index,
    group and serial units register their reads and stall on one enable on every fabric.

    A subclass whose unit builds one encoding alone narrows ``unit`` to its class
    (``UNIT``, checked when the stage is made)."""

    kind: ClassVar[str] = "mvu"
    UNIT: ClassVar[type[UnitWeights]] = UnitWeights  # the encodings its unit builds
    layout: str  # the folding's (LayerCost.layout)
    unit: UnitWeights  # the weight encoding (bits or planes, polarity, scales, offsets)
    pe: int
    simd: int
    nf: int
    sf: int
    acc_bits: int
    acc_signed: bool
    input_bits: int
    bipolar: bool
    thresholds: np.ndarray | None
    weight_memory: str  # the folding's (LayerCost.weight_memory)
    register_reads: bool = True
    credit: bool = False
    block_pes: int = 0
    lutrom_max_depth: int = 16  # the device's (ResourceModel.lutrom_max_depth)
    frames: int = 1  # frames a pass (hw.frames)

    def __post_init__(self) -> None:
        if not isinstance(self.unit, self.UNIT):
            raise ValueError(f"{type(self).__name__} {self.name!r} needs "
                             f"{self.UNIT.__name__}, not {type(self.unit).__name__}")

    @property
    def acc_shape(self) -> Any:
        return _shape(self.acc_bits, self.acc_signed)

    def component(self) -> Any:
        from .mvu import MVU

        return MVU(self.unit, self.pe, self.simd, self.acc_shape, thresholds=self.thresholds,
                   input_bits=self.input_bits, bipolar=self.bipolar,
                   weight_memory=self.weight_memory, register_reads=self.register_reads,
                   credit=self.credit, block_pes=self.block_pes,
                   lutrom_max_depth=self.lutrom_max_depth, frames=self.frames)

    def describe(self) -> dict[str, Any]:
        return {"weight_memory": self.weight_memory, "layout": self.layout,
                **({"frames": self.frames} if self.frames > 1 else {})}

    def _weight_memory(self) -> MemorySpec:
        mh, mw = self.unit.shape
        *_, depth, width = weight_geometry(self.layout, mh, mw, self.pe, self.simd,
                                           self.unit.planes)
        return MemorySpec("weights", depth, width, self.weight_memory)

    def memories(self) -> tuple[MemorySpec, ...]:
        """The weights and, with more than one neuron fold, the per-neuron ROMs."""
        out = [self._weight_memory()]
        if self.nf > 1:
            if self.thresholds is not None:
                out.append(MemorySpec("thresholds", self.nf,
                                      self.pe * threshold_bits(self.thresholds), "rom"))
            if self.unit.polarity is not None:
                out.append(MemorySpec("polarity", self.nf, self.pe, "rom"))
            if self.unit.offset is not None:
                out.append(MemorySpec("offsets", self.nf,
                                      self.pe * offset_bits(self.unit.offset), "rom"))
        return tuple(out)


@dataclass(frozen=True, kw_only=True, eq=False)
class IndexMVUStage(MVUStage):
    """A sparse layer in the index layout (:class:`~.index_mvu.IndexMVU`): the kept inputs'
    positions; it takes its input vector in words of ``in_elems`` elements."""

    UNIT = SparseWeights
    unit: SparseWeights

    def component(self) -> Any:
        from .index_mvu import IndexMVU

        return IndexMVU(self.unit.bits, self.pe, self.simd, self.acc_shape,
                        polarity=self.unit.signs, thresholds=self.thresholds,
                        input_bits=self.input_bits, bipolar=self.bipolar, in_elems=self.in_elems,
                        weight_memory=self.weight_memory, lutrom_max_depth=self.lutrom_max_depth)

    def _weight_memory(self) -> MemorySpec:
        _, slot, words = index_words(self.unit.bits, self.pe, self.simd)
        return MemorySpec("weights", len(words), self.pe * self.simd * slot, self.weight_memory)


@dataclass(frozen=True, kw_only=True, eq=False)
class GroupMVUStage(MVUStage):
    """A sparse layer in the group layout (:class:`~.group_mvu.GroupMVU`): ``N`` positions in
    every group of ``group`` inputs, ``SIMD`` groups a word."""

    UNIT = SparseWeights
    unit: SparseWeights
    group: int

    def component(self) -> Any:
        from .group_mvu import GroupMVU

        return GroupMVU(self.unit.bits, self.group, self.pe, self.simd, self.acc_shape,
                        polarity=self.unit.signs, thresholds=self.thresholds,
                        input_bits=self.input_bits, bipolar=self.bipolar,
                        weight_memory=self.weight_memory, lutrom_max_depth=self.lutrom_max_depth)

    def _weight_memory(self) -> MemorySpec:
        kept, slot, _, words = group_words(self.unit.bits, self.group, self.pe, self.simd)
        return MemorySpec("weights", len(words), self.pe * self.simd * kept * slot,
                          self.weight_memory)


@dataclass(frozen=True, kw_only=True, eq=False)
class SerialMVUStage(MVUStage):
    """A composite layer with its planes one a cycle (:class:`~.serial_mvu.SerialCompositeMVU`)."""

    UNIT = CompositeWeights
    unit: CompositeWeights

    def fifo_depth_at(self, fifo_min: int) -> int:
        """One input vector plus two: the unit re-reads a one-bank buffer (every other MVU
        takes the next vector into its second bank while it computes)."""
        return max(fifo_min, self.unit.shape[1] // self.in_elems + 2)

    def component(self) -> Any:
        from .serial_mvu import SerialCompositeMVU

        return SerialCompositeMVU(self.unit.bits, self.pe, self.simd, self.acc_shape,
                                  plane_scale=self.unit.scales,
                                  thresholds=self.thresholds,
                                  input_bits=self.input_bits, bipolar=self.bipolar,
                                  weight_memory=self.weight_memory,
                                  lutrom_max_depth=self.lutrom_max_depth)


@dataclass(frozen=True, kw_only=True)
class RequantStage(Stage):
    """A ``Requantize`` of an MVU's accumulators onto the residual stream
    (:class:`~.residual.RequantAdd` without a skip), the MVU's ``in_elems`` lanes a beat."""

    kind: ClassVar[str] = "requant"
    c: int
    acc_bits: int
    acc_signed: bool
    mult: tuple[int, ...]
    bias: tuple[int, ...]
    shift: int

    def component(self) -> Any:
        from .residual import RequantAdd

        return RequantAdd(self.c, _shape(self.acc_bits, self.acc_signed), self.mult, self.bias,
                          self.shift, self.out_bits, lanes=self.in_elems)


@dataclass(frozen=True, kw_only=True)
class SignStage(Stage):
    """A ``Threshold`` on the residual stream, a pixel a beat (:class:`~.residual.StreamThreshold`)."""

    kind: ClassVar[str] = "sign"
    thresholds: tuple[int, ...]

    def component(self) -> Any:
        from .residual import StreamThreshold

        return StreamThreshold(self.in_elems, self.in_bits, self.thresholds)


@dataclass(frozen=True, kw_only=True, eq=False)
class ResidualStage(Stage):
    """A residual unit (:class:`~.residual.ResidualBlock`): its sign, its convolution's
    sliding window and MVU (stages of their own kinds, placed inside the block), the
    ``Requantize`` and ``Add`` of the join, and its skip FIFO of ``skip_depth`` pixels."""

    kind: ClassVar[str] = "residual"
    thresholds: tuple[int, ...]
    window: WindowStage
    mvu: MVUStage
    c_out: int
    mult: tuple[int, ...]
    bias: tuple[int, ...]
    shift: int
    skip_depth: int

    def component(self) -> Any:
        from .residual import RequantAdd, ResidualBlock, StreamThreshold

        join = RequantAdd(self.c_out, self.mvu.acc_shape, self.mult, self.bias, self.shift,
                          self.in_bits, self.in_elems, lanes=self.mvu.pe)
        return ResidualBlock(StreamThreshold(self.in_elems, self.in_bits, self.thresholds),
                             self.window.component(), self.mvu.component(), join,
                             self.skip_depth)

    def memories(self) -> tuple[MemorySpec, ...]:
        inner = tuple(replace(m, name=f"{s.name}.{m.name}") for s in (self.window, self.mvu)
                      for m in s.memories())
        return (*inner, MemorySpec("skip", self.skip_depth, self.in_elems * self.in_bits, "ram"))

    def describe(self) -> dict[str, Any]:
        return {"skip_depth": self.skip_depth, "mvu": self.mvu.name, "window": self.window.name,
                **self.mvu.describe()}


def _shape(bits: int, is_signed: bool) -> Any:
    from amaranth.hdl import signed, unsigned

    return signed(bits) if is_signed else unsigned(bits)
