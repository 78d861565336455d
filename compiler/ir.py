"""The bitfold IR: frozen dataclasses for feed-forward binary networks (docs/ir.md).

A :class:`Graph` is an ordered tuple of nodes; every node produces one tensor
named like the node and reads tensors of earlier nodes by name. Tensors are
integers with a :class:`TensorType` (shape, bits, signedness):

* ``bits == 1 and signed`` is a *bipolar* tensor, values in {-1, +1}, held as
  bits (1 means +1, 0 means -1; docs/architecture.md, "Numerics");
* otherwise ``signed`` is two's complement of ``bits`` bits (at least 2) and
  unsigned is ``0 .. 2**bits - 1``.

Feature maps are ``(H, W, C)``, channels innermost, the order hardware streams
them in; a dense layer reads its input flattened in that row-major order.
Types are derived from the nodes exactly, from fan-in, by
:func:`bitfold.compiler.verify.infer_types`, and ``verify`` checks a graph's stored types against them.

Two node kinds exist only before folding (``compiler.passes``):
:class:`AffineSign` and :class:`AffineArgMax` hold the real per-channel affine
``slope * acc + offset`` (float64) that alpha, batch norm and the input scale
fold into, evaluated exactly. Hardware graphs hold only integers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .errors import IRError

__all__ = [
    "FOLDED_KINDS",
    "NODE_KINDS",
    "AffineArgMax",
    "AffineSign",
    "ArgMax",
    "BinaryConv2d",
    "BinaryDense",
    "CONV_KINDS",
    "ConvNode",
    "CompositeConv2d",
    "CompositeDense",
    "DENSE_KINDS",
    "DenseNode",
    "DomainConv2d",
    "DomainDense",
    "Graph",
    "Input",
    "MVU_KINDS",
    "MVUNode",
    "MaxPool2d",
    "Node",
    "ScoreAffine",
    "SparseConv2d",
    "SparseDense",
    "TensorType",
    "Threshold",
    "mvu_matrix",
]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SCORE_BITS = 62  # int64 holds every score and every product on the way to it


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class TensorType:
    """Shape (without batch), width in bits and signedness of an integer tensor."""

    shape: tuple[int, ...]
    bits: int
    signed: bool

    @property
    def bipolar(self) -> bool:
        """True for binary {-1, +1} tensors (one bit, 1 means +1)."""
        return self.bits == 1 and self.signed

    @property
    def lo(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def describe(self) -> str:
        kind = "bipolar" if self.bipolar else f"{'int' if self.signed else 'uint'}{self.bits}"
        return f"{kind}{list(self.shape)}"


def int_type(shape: tuple[int, ...], lo: int, hi: int) -> TensorType:
    """The narrowest integer type holding ``lo .. hi`` (signed ones have at least 2 bits)."""
    if lo >= 0:
        return TensorType(tuple(shape), max(1, int(hi).bit_length()), False)
    bits = max((-int(lo) - 1).bit_length(), max(int(hi), 0).bit_length()) + 1
    return TensorType(tuple(shape), max(2, bits), True)


# --------------------------------------------------------------------------- nodes


def _frozen_array(value: Any, dtype: str, ndim: int, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise IRError(f"{where} must have {ndim} dimensions, not shape {arr.shape}")
    if dtype == "bits":
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise IRError(f"{where} must hold bits 0/1 (1 means +1)")
        arr = arr.astype(np.uint8)
    elif dtype == "int64":
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise IRError(f"{where} must be integers, not {arr.dtype}")
        arr = arr.astype(np.int64)
    else:
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise IRError(f"{where} must be finite")
    arr = np.array(arr, copy=True, order="C")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Node:
    """Base of all node kinds; a node's output tensor carries the node's name.

    ``ARRAYS`` maps each array attribute to its encoding (``bits``, ``int64``,
    ``float64``) and number of dimensions.
    """

    name: str
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise IRError(f"node name {self.name!r} must match {NAME_RE.pattern} "
                          "(it becomes a hardware identifier)")
        for attr, (dtype, ndim) in self.ARRAYS.items():
            object.__setattr__(self, attr, _frozen_array(
                getattr(self, attr), dtype, ndim, f"{self.name}.{attr}"))

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the tensors this node reads."""
        return (self.input,) if hasattr(self, "input") else ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Input(Node):
    """A graph input: integers of ``shape`` (feature maps ``(H, W, C)``), ``bits`` wide."""

    shape: tuple[int, ...] = ()
    bits: int = 8
    signed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))


@dataclass(frozen=True, eq=False)
class BinaryDense(Node):
    """Matrix-vector product with binary weights ``(C_out, fan_in)`` (bits, 1 means +1).

    Bipolar input: the output is ``popcount(xnor(x, w))`` per output, in
    ``0 .. fan_in``. Unsigned multi-bit input: the output is the signed sum
    ``sum_i (x_i if w_i else -x_i)``. The input is read flattened, row-major.
    """

    input: str = ""
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"weight": ("bits", 2)}


@dataclass(frozen=True, eq=False)
class BinaryConv2d(Node):
    """2-D convolution with binary weights ``(C_out, kernel, kernel, C_in)`` on ``(H, W, C_in)``.

    The input is padded by ``pad`` on every side with ``pad_value`` (-1 or +1
    for bipolar input, an unsigned value for multi-bit input), then a valid
    convolution with ``stride``; each window ``(kernel, kernel, C_in)`` is a
    dense layer's input (same accumulator semantics as :class:`BinaryDense`).
    """

    input: str = ""
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 0), np.uint8))
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pad_value: int = -1
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"weight": ("bits", 4)}


@dataclass(frozen=True, eq=False)
class Threshold(Node):
    """Per-channel (last axis) threshold: output ``+1`` where ``acc >= thresholds[c]``."""

    input: str = ""
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"thresholds": ("int64", 1)}


@dataclass(frozen=True, eq=False)
class MaxPool2d(Node):
    """Max pooling of a bipolar ``(H, W, C)`` map: OR of the bits in each window (no padding)."""

    input: str = ""
    kernel: int = 2
    stride: int = 2


@dataclass(frozen=True, eq=False)
class ScoreAffine(Node):
    """Integer class scores ``scale[c] * acc[c] + bias[c]`` of a 1-D accumulator."""

    input: str = ""
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"scale": ("int64", 1), "bias": ("int64", 1)}


@dataclass(frozen=True, eq=False)
class ArgMax(Node):
    """Index of the largest of a 1-D integer vector; ties go to the lowest index."""

    input: str = ""


@dataclass(frozen=True, eq=False)
class AffineSign(Node):
    """Before folding: ``+1`` where ``slope[c] * acc + offset[c] >= 0`` in exact real arithmetic.

    ``slope`` and ``offset`` are float64, taken as the exact rationals they
    hold; ``fold_signs_into_thresholds`` turns this node into a :class:`Threshold`.
    """

    input: str = ""
    slope: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"slope": ("float64", 1),
                                                    "offset": ("float64", 1)}


@dataclass(frozen=True, eq=False)
class AffineArgMax(Node):
    """Before folding: argmax over ``c`` of the real scores ``slope[c] * acc[c] + offset[c]``.

    Exact real arithmetic on the float64 values; ties go to the lowest index.
    ``fold_scores_into_integers`` turns it into :class:`ScoreAffine` + :class:`ArgMax`.
    """

    input: str = ""
    slope: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"slope": ("float64", 1),
                                                    "offset": ("float64", 1)}


@dataclass(frozen=True, eq=False)
class SparseDense(Node):
    """Sparse binary weights ``{0, b}``: a masked popcount per output (Schiavone et al.).

    ``mask`` bits ``(C_out, fan_in)`` mark the non-zero weights, ``polarity``
    bits ``(C_out,)`` the sign of each row's non-zero value (1 means +1).
    Bipolar input: the output is ``popcount(mask & xnor(x, polarity))``, the
    number of masked inputs equal to the row's polarity, in ``0 .. nnz``.
    Unsigned multi-bit input: ``sum over masked i of (x_i if polarity else -x_i)``.
    """

    input: str = ""
    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    polarity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"mask": ("bits", 2), "polarity": ("bits", 1)}


@dataclass(frozen=True, eq=False)
class SparseConv2d(Node):
    """:class:`SparseDense` over the windows of a padded map, as :class:`BinaryConv2d`."""

    input: str = ""
    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 0), np.uint8))
    polarity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pad_value: int = -1
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"mask": ("bits", 4), "polarity": ("bits", 1)}


@dataclass(frozen=True, eq=False)
class CompositeDense(Node):
    """``K`` binary planes ``weight (K, C_out, fan_in)`` combined with integer ``plane_scale (K,)``.

    The output is ``sum_k plane_scale[k] * acc_k``, ``acc_k`` the
    :class:`BinaryDense` accumulator of plane ``k`` (CBDNet). Plane scales are
    positive; they are the fixed-point ratios of the planes' real scales.
    """

    input: str = ""
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    plane_scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"weight": ("bits", 3),
                                                    "plane_scale": ("int64", 1)}


@dataclass(frozen=True, eq=False)
class CompositeConv2d(Node):
    """:class:`CompositeDense` over the windows of a padded map; ``weight (K, C_out, k, k, C_in)``."""

    input: str = ""
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1, 1, 0), np.uint8))
    plane_scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pad_value: int = -1
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"weight": ("bits", 5),
                                                    "plane_scale": ("int64", 1)}


def _integer_scale(node: DomainDense | DomainConv2d) -> None:
    """A domain layer's ``scale`` as a Python int (numpy integers too); anything else is refused."""
    if isinstance(node.scale, bool) or not isinstance(node.scale, int | np.integer):
        raise IRError(f"{node.name}.scale must be an integer, not {node.scale!r}")
    object.__setattr__(node, "scale", int(node.scale))


@dataclass(frozen=True, eq=False)
class DomainDense(Node):
    """General binary domain ``{a, b}`` per output: ``w = d (s + offset / scale)``, ``s`` +-1.

    ``weight`` bits ``(C_out, fan_in)`` are ``s`` (1 means +1), ``offset`` int64
    ``(C_out,)`` each row's offset and ``scale`` a positive integer (Schiavone et al.'s
    domain ``{a, b}`` is ``d (+-1 + offset / scale)``). The output is
    ``scale * A_i + offset[i] * X``: ``A_i`` the :class:`BinaryDense` accumulator of
    row ``i`` and ``X`` the sum of the input (bipolar: ``popcount(x)``, the number of
    +1 inputs; multi-bit: ``sum_i x_i``).
    """

    input: str = ""
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scale: int = 1
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"weight": ("bits", 2),
                                                    "offset": ("int64", 1)}

    def __post_init__(self) -> None:
        super().__post_init__()
        _integer_scale(self)


@dataclass(frozen=True, eq=False)
class DomainConv2d(Node):
    """:class:`DomainDense` over the windows of a padded map (padding counts in ``A`` and ``X``)."""

    input: str = ""
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 0), np.uint8))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scale: int = 1
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pad_value: int = -1
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"weight": ("bits", 4),
                                                    "offset": ("int64", 1)}

    def __post_init__(self) -> None:
        super().__post_init__()
        _integer_scale(self)


NODE_KINDS: dict[str, type[Node]] = {cls.__name__: cls for cls in (
    Input, BinaryDense, BinaryConv2d, Threshold, MaxPool2d, ScoreAffine, ArgMax,
    AffineSign, AffineArgMax, SparseDense, SparseConv2d, CompositeDense, CompositeConv2d,
    DomainDense, DomainConv2d)}
FOLDED_KINDS = frozenset({"Input", "BinaryDense", "BinaryConv2d", "Threshold", "MaxPool2d",
                          "ScoreAffine", "ArgMax", "SparseDense", "SparseConv2d",
                          "CompositeDense", "CompositeConv2d", "DomainDense", "DomainConv2d"})
DENSE_KINDS = (BinaryDense, SparseDense, CompositeDense, DomainDense)
CONV_KINDS = (BinaryConv2d, SparseConv2d, CompositeConv2d, DomainConv2d)
MVU_KINDS = DENSE_KINDS + CONV_KINDS
# The same groups as types, for annotations.
DenseNode = BinaryDense | SparseDense | CompositeDense | DomainDense
ConvNode = BinaryConv2d | SparseConv2d | CompositeConv2d | DomainConv2d
MVUNode = DenseNode | ConvNode


def mvu_matrix(node: Node) -> np.ndarray:
    """A binary layer's weight bits as matrices, ``(planes, C_out, fan_in)``.

    One plane for binary layers (the weight), domain ones (the signs) and sparse
    ones (the mask); ``K`` for composite ones. Convolution windows are flattened ``(k, k, C_in)`` row-major.
    """
    if isinstance(node, SparseDense | SparseConv2d):
        w = node.mask[None]
    elif isinstance(node, CompositeDense | CompositeConv2d):
        w = node.weight
    elif isinstance(node, BinaryDense | BinaryConv2d | DomainDense | DomainConv2d):
        w = node.weight[None]
    else:
        raise IRError(f"{node.name!r} is a {node.kind}, not a binary layer; it has no weights")
    return w.reshape(w.shape[0], w.shape[1], -1)


# --------------------------------------------------------------------------- graph


@dataclass(frozen=True, eq=False)
class Graph:
    """A network: nodes in execution order, its input and output tensor names, all types.

    Build one with :func:`bitfold.compiler.verify.build_graph`, which derives the
    types; ``verify`` checks a graph made any other way (e.g. read from disk). The
    IR's dataclasses know nothing of type inference, so this module imports no other
    module of the compiler but ``errors``.
    """

    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    types: Mapping[str, TensorType]  # held as a read-only MappingProxyType

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "types", MappingProxyType(dict(self.types)))

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    @property
    def folded(self) -> bool:
        """True when only hardware node kinds (integers) remain."""
        return all(n.kind in FOLDED_KINDS for n in self.nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.name, self.inputs, self.outputs, dict(self.types)) == (
            other.name, other.inputs, other.outputs, dict(other.types)) and \
            len(self.nodes) == len(other.nodes) and \
            all(a == b for a, b in zip(self.nodes, other.nodes, strict=True))

    __hash__ = None  # type: ignore[assignment]

