"""Identifiers that reach Verilog: user-given names are sanitized, never trusted."""

from __future__ import annotations

import re

__all__ = ["class_bits", "sanitize"]

_BAD = re.compile(r"[^A-Za-z0-9_]")


def sanitize(name: str, prefix: str, used: set[str]) -> str:
    """A safe, unique Verilog identifier ``PREFIX_NAME`` for a model-given ``name``.

    Characters outside ``[A-Za-z0-9_]`` become ``_``, the prefix keeps keywords
    (``input``, ``reg``) and leading digits out, runs of ``_`` collapse, the
    result is cut to 48 characters and made unique within ``used`` (which is
    updated).
    """
    body = re.sub(r"_+", "_", _BAD.sub("_", str(name))).strip("_") or "x"
    base = f"{prefix}_{body}"[:48]
    out, n = base, 1
    while out.lower() in used:
        n += 1
        out = f"{base}_{n}"
    used.add(out.lower())
    return out


def class_bits(classes: int) -> int:
    """Bits of a class index ``0 .. classes - 1`` (at least 1)."""
    return max(1, (classes - 1).bit_length())
