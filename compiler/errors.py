"""Errors of the compiler stage; every message says what was wrong and what to do."""

from __future__ import annotations

from bitfold.artifacts import ArtifactError

__all__ = ["CompilerError", "FoldingError", "IRError", "IRFormatError"]


class CompilerError(ValueError):
    """Base class of the compiler's expected failures."""


class IRError(CompilerError):
    """A graph is not valid IR (bad shapes, widths, references or attributes)."""


class IRFormatError(CompilerError, ArtifactError):
    """``graph.json`` / ``tensors.npz`` cannot be read: missing, broken or another schema."""


class FoldingError(CompilerError):
    """A folding (PE, SIMD per layer) is illegal or no folding meets the target."""
