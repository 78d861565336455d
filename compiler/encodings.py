"""Every weight encoding of the IR by its name in graph.json (one line each).

Each lives in a module of its own (:mod:`bitfold.compiler.encoding` says what one
must provide); this registry is how serialization finds them.
"""

from __future__ import annotations

from .binary import Binary
from .composite import Composite
from .domain import Domain
from .encoding import Encoding
from .sparse import Sparse
from .ternary import Ternary

__all__ = ["ENCODINGS", "Binary", "Composite", "Domain", "Encoding", "Sparse", "Ternary"]

ENCODINGS: dict[str, type[Encoding]] = {
    e.NAME: e for e in (Binary, Sparse, Composite, Domain, Ternary)}
