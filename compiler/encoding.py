"""The weight encoding of a binary layer: what every encoding must say (docs/architecture.md, 8).

A layer of the IR (:class:`bitfold.compiler.ir.Layer`) is a geometry
(:mod:`bitfold.compiler.geometry`: dense, or a convolution's window) times a weight
encoding. The geometry turns the input into rows of ``fan_in`` elements; the
encoding turns each row into ``C_out`` integer accumulators. An encoding is a frozen
dataclass whose array attributes are listed in ``ARRAYS`` (weight matrices are
``(C_out, fan_in)``, or ``(K, C_out, fan_in)`` for planes, columns in the row's order)
and whose methods are everything the compiler, the executors and the hardware plan
ask of it, so adding one is one module (and a line in :mod:`bitfold.compiler.encodings`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np

from .arrays import ArraySpec, fields_equal, frozen_array
from .tensortype import TensorType

__all__ = ["Accumulate", "Encoding", "Range", "flip_rows", "xnor_reference"]

Range = tuple[int, int, int]  # an output channel's accumulator: (lo, hi, mirror)
Accumulate = Callable[[np.ndarray], np.ndarray]  # rows (N, fan_in) -> accumulators (N, C_out)


class Encoding(abc.ABC):
    """Base of the weight encodings; subclasses are ``@dataclass(frozen=True, eq=False)``."""

    NAME: ClassVar[str]  # its name in graph.json ("binary")
    TITLE: ClassVar[str]  # the first half of its layers' kind ("Binary" -> "BinaryDense")
    SCHEME: ClassVar[str] = ""  # the unit the cost model prices it as; "" means NAME
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {}
    # the unit's accumulator is the layer's; False: only its comparisons with the thresholds
    # are (unit_thresholds), so the hardware builds the layer only in front of a Threshold
    UNIT_ACCUMULATES_IR: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for attr, (dtype, ndim) in self.ARRAYS.items():
            object.__setattr__(self, attr, frozen_array(
                getattr(self, attr), dtype, ndim, f"{self.NAME} {attr}", flatten=True))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return fields_equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def scheme(self) -> str:
        """The cost model's name for its unit: ``binary``, ``sparse``, ``composite``, ``domain``."""
        return self.SCHEME or self.NAME

    @property
    def shape(self) -> tuple[int, int]:
        """``(C_out, fan_in)``."""
        planes = self.planes()
        return int(planes.shape[1]), int(planes.shape[2])

    # ------------------------------------------------------------------ what an encoding says

    @abc.abstractmethod
    def planes(self) -> np.ndarray:
        """The weight bits as the hardware stores them: ``(planes, C_out, fan_in)``."""

    def check(self) -> None:  # noqa: B027 -- most encodings have nothing more to check
        """Refuse (:class:`~bitfold.compiler.errors.IRError`) attributes that disagree."""

    @abc.abstractmethod
    def channel_ranges(self, t: TensorType) -> list[Range]:
        """Per output channel on input of type ``t``: ``(lo, hi, mirror)`` of its accumulator.

        Exact, and holding every partial sum over a prefix of the row (the hardware
        accumulates word by word); ``mirror - acc`` is what :meth:`negated` maps it to.
        """

    @abc.abstractmethod
    def negated(self, rows: np.ndarray) -> Self:
        """The encoding with output channels ``rows`` (a boolean mask) negated:
        each one's accumulator ``a`` becomes ``mirror - a`` (threshold folding)."""

    @abc.abstractmethod
    def reference(self, rows: np.ndarray, t: TensorType) -> np.ndarray:
        """Accumulators of ``rows (N, fan_in)`` in plain integers (the golden model)."""

    @abc.abstractmethod
    def packed(self, t: TensorType, bit_serial: bool) -> Accumulate:
        """The same accumulate on packed bits, prepared once (the fast executor)."""

    @abc.abstractmethod
    def unit_params(self, planes: np.ndarray, t: TensorType) -> dict[str, Any]:
        """The matrix-vector unit's parameters (``hw.mvu.MVU``) on input of type ``t``, for
        :meth:`planes` with their columns in the unit's order: ``weights`` and the
        encoding's own (``polarity``, ``plane_scale``, ``offset``)."""

    def unit_thresholds(self, thresholds: np.ndarray, t: TensorType) -> np.ndarray:
        """The unit's thresholds for the layer's ``acc >= thresholds``: the same ones,
        unless the unit accumulates another integer (``UNIT_ACCUMULATES_IR``)."""
        return thresholds


def xnor_reference(flat_w: np.ndarray, x: np.ndarray, bipolar: bool) -> np.ndarray:
    """Binary accumulators of rows ``x (N, F)`` against weight bits ``flat_w (C_out, F)``:
    ``popcount(xnor(x, w))`` on bipolar input, ``sum_i (x_i if w_i else -x_i)`` on multi-bit."""
    if bipolar:
        # the number of positions where input bit equals weight bit
        return np.stack([(x == w_row).sum(axis=1) for w_row in flat_w], axis=1).astype(np.int64)
    signs = np.where(flat_w == 1, 1, -1).astype(np.int64)  # weight bit 1 means +1
    return x @ signs.T


def flip_rows(bits: np.ndarray, rows: np.ndarray, axis: int = 0) -> np.ndarray:
    """A copy of ``bits`` with the rows ``rows`` (along ``axis``) inverted."""
    out = bits.copy()
    index: list[Any] = [slice(None)] * out.ndim
    index[axis] = rows
    out[tuple(index)] = 1 - out[tuple(index)]
    return out
