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

A binary layer is one node kind, :class:`Layer`: a geometry (``geometry``: dense, or a
convolution's :class:`~bitfold.compiler.geometry.Window`) times a weight encoding
(``encoding``: :mod:`bitfold.compiler.encodings`, e.g. ``Binary``, ``Sparse``), whose
methods say what the layer's weights mean (matrix, ranges, negation, accumulate).
Types are derived from the nodes exactly, from fan-in, by
:func:`bitfold.compiler.verify.infer_types`, and ``verify`` checks a graph's stored types
against them.

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

from .arrays import ArraySpec, fields_equal, frozen_array
from .encoding import Encoding
from .errors import IRError
from .geometry import DENSE, Dense, Geometry, Window
from .tensortype import TensorType, int_type

__all__ = [
    "FOLDED_KINDS",
    "MVU_KINDS",
    "NODE_KINDS",
    "AffineArgMax",
    "Add",
    "AffineSign",
    "ArgMax",
    "AvgPool2d",
    "DENSE",
    "Dense",
    "Geometry",
    "Graph",
    "Input",
    "Layer",
    "MaxPool2d",
    "Node",
    "RESIDUAL_KINDS",
    "Requantize",
    "ScoreAffine",
    "TensorType",
    "Threshold",
    "Upsample2d",
    "Window",
    "int_type",
    "mvu_matrix",
]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SCORE_BITS = 62  # int64 holds every score and every product on the way to it


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True, eq=False)
class Node:
    """Base of all node kinds; a node's output tensor carries the node's name.

    ``ARRAYS`` maps each array attribute to its encoding (``bits``, ``int64``,
    ``float64``) and number of dimensions.
    """

    name: str
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise IRError(f"node name {self.name!r} must match {NAME_RE.pattern} "
                          "(it becomes a hardware identifier)")
        for attr, (dtype, ndim) in self.ARRAYS.items():
            object.__setattr__(self, attr, frozen_array(
                getattr(self, attr), dtype, ndim, f"{self.name}.{attr}"))

    @property
    def op(self) -> str:
        """The node's kind as graph.json names it (its class)."""
        return type(self).__name__

    @property
    def kind(self) -> str:
        """What the node is, for people: its class, or a layer's encoding and geometry
        (``BinaryDense``, ``SparseConv2d``)."""
        return self.op

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the tensors this node reads."""
        return (self.input,) if hasattr(self, "input") else ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return fields_equal(self, other)

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


def _no_encoding() -> Encoding:
    raise TypeError("a Layer needs an encoding (bitfold.compiler.encodings: Binary, Sparse, ...)")


@dataclass(frozen=True, eq=False)
class Layer(Node):
    """A binary layer: ``geometry`` reads the input as rows, ``encoding`` maps each row to
    ``C_out`` integer accumulators (docs/ir.md, "Nodes").

    ``geometry`` is :data:`~bitfold.compiler.geometry.DENSE` (the input flattened
    row-major is one row; the output is ``(C_out,)``) or a
    :class:`~bitfold.compiler.geometry.Window` (a convolution: every padded
    ``kernel x kernel`` window, flattened ``(ky, kx, c)``, is a row; the output is
    ``(H', W', C_out)``). ``encoding`` is one of :mod:`bitfold.compiler.encodings`;
    its weight matrices are ``(C_out, fan_in)``.

    A layer reads its geometry's and its encoding's fields as its own, for reading
    (``conv.kernel``, ``layer.weight``); ``kind`` names both (``BinaryConv2d``).
    """

    input: str = ""
    encoding: Encoding = field(default_factory=_no_encoding)
    geometry: Geometry = DENSE

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.encoding, Encoding):
            raise IRError(f"{self.name}.encoding must be a weight encoding "
                          f"(bitfold.compiler.encodings), not {self.encoding!r}")
        if not isinstance(self.geometry, Dense | Window):
            raise IRError(f"{self.name}.geometry must be DENSE or a Window, not "
                          f"{self.geometry!r}")

    @property
    def kind(self) -> str:
        return self.encoding.TITLE + self.geometry.SUFFIX

    @property
    def conv(self) -> bool:
        """True for a convolution (a :class:`~bitfold.compiler.geometry.Window`)."""
        return isinstance(self.geometry, Window)

    def __getattr__(self, name: str) -> Any:
        parts = [self.__dict__.get("geometry"), self.__dict__.get("encoding")]
        if not name.startswith("_"):
            for part in parts:
                if part is not None and name in {f.name for f in fields(part)}:
                    return getattr(part, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


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
class Requantize(Node):
    """An accumulator onto a residual stream: ``clamp(floor((mult[c] * acc + bias[c]) / 2**shift))``
    in ``bits`` signed bits (saturating), channels last (docs/ir.md, "Residual streams")."""

    input: str = ""
    mult: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    shift: int = 0
    bits: int = 8
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {"mult": ("int64", 1), "bias": ("int64", 1)}


@dataclass(frozen=True, eq=False)
class Add(Node):
    """A residual join: ``clamp(input + skip)`` in ``bits`` signed bits (saturating).

    Both are integer maps of one spatial shape; ``skip`` may have fewer channels,
    which count as zeros in the channels it lacks (a shortcut that widens the stream).
    """

    input: str = ""
    skip: str = ""
    bits: int = 8

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input, self.skip)


@dataclass(frozen=True, eq=False)
class AvgPool2d(Node):
    """Average pooling of an integer ``(H, W, C)`` map: ``floor(sum / kernel**2)`` of each
    window (no padding; floor, so -1.5 becomes -2)."""

    input: str = ""
    kernel: int = 2
    stride: int = 2


@dataclass(frozen=True, eq=False)
class Upsample2d(Node):
    """Nearest-neighbour upsampling of an ``(H, W, C)`` map: each pixel ``factor x factor`` times."""

    input: str = ""
    factor: int = 2


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


NODE_KINDS: dict[str, type[Node]] = {cls.__name__: cls for cls in (
    Input, Layer, Threshold, MaxPool2d, ScoreAffine, ArgMax, Requantize, Add, AvgPool2d,
    Upsample2d, AffineSign, AffineArgMax)}
FOLDED_KINDS = frozenset({"Input", "Layer", "Threshold", "MaxPool2d", "ScoreAffine", "ArgMax",
                          "Requantize", "Add", "AvgPool2d", "Upsample2d"})
RESIDUAL_KINDS = frozenset({"Requantize", "Add", "AvgPool2d", "Upsample2d"})  # no hardware yet
MVU_KINDS = (Layer,)  # the node kinds with weights, for isinstance: one since schema 2


def mvu_matrix(node: Node) -> np.ndarray:
    """A binary layer's weight bits as matrices, ``(planes, C_out, fan_in)``
    (its encoding's :meth:`~bitfold.compiler.encoding.Encoding.planes`)."""
    if not isinstance(node, Layer):
        raise IRError(f"{node.name!r} is a {node.kind}, not a binary layer; it has no weights")
    return node.encoding.planes()


# --------------------------------------------------------------------------- graph


@dataclass(frozen=True, eq=False)
class Graph:
    """A network: nodes in execution order, its input and output tensor names, all types.

    Build one with :func:`bitfold.compiler.verify.build_graph`, which derives the
    types; ``verify`` checks a graph made any other way (e.g. read from disk). The
    IR's dataclasses know nothing of type inference: this module imports only what
    they are made of (types, arrays, geometry, the encoding base) and ``errors``.
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
        return all(n.op in FOLDED_KINDS for n in self.nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.name, self.inputs, self.outputs, dict(self.types)) == (
            other.name, other.inputs, other.outputs, dict(other.types)) and \
            len(self.nodes) == len(other.nodes) and \
            all(a == b for a, b in zip(self.nodes, other.nodes, strict=True))

    __hash__ = None  # type: ignore[assignment]
