"""Reading ``graph.json`` of schema 1: the IR before layers were geometry x encoding.

Schema 1 had a node kind per pair, ``{Binary, Sparse, Composite, Domain} x {Dense,
Conv2d}``, with the window's ``kernel``, ``stride``, ``pad`` and ``pad_value`` among a
convolution's fields and its weights ``(C_out, k, k, C_in)``. :func:`upgrade_schema1`
rewrites such a document into schema 2 (a ``Layer`` with a ``geometry`` and an
``encoding`` object); the arrays stay as they are stored (a convolution's weights are
flattened into matrices when the encoding is built). The set of schema-1 kinds is
closed: encodings added since have no schema-1 form.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA1_LAYERS", "upgrade_schema1"]

# schema-1 kind -> (encoding name, convolution?)
SCHEMA1_LAYERS: dict[str, tuple[str, bool]] = {
    f"{title}{suffix}": (title.lower(), suffix == "Conv2d")
    for title in ("Binary", "Sparse", "Composite", "Domain") for suffix in ("Dense", "Conv2d")}
_WINDOW = ("kernel", "stride", "pad", "pad_value")


def _layer(entry: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 layer node as a schema-2 ``Layer``: its window fields to ``geometry``,
    its weight fields to ``encoding``."""
    encoding, conv = SCHEMA1_LAYERS[entry["op"]]
    rest = {k: v for k, v in entry.items() if k != "op"}
    out: dict[str, Any] = {"op": "Layer"}
    for key in ("name", "input"):
        if key in rest:
            out[key] = rest.pop(key)
    geometry: dict[str, Any] = {"kind": "dense"}
    if conv:
        geometry = {"kind": "window", **{k: rest.pop(k) for k in _WINDOW if k in rest}}
    out["geometry"] = geometry
    out["encoding"] = {"kind": encoding, **rest}
    return out


def upgrade_schema1(doc: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 ``graph.json`` document as schema 2 (a new dict; ``doc`` is untouched)."""
    nodes = doc.get("nodes")
    if isinstance(nodes, list):
        nodes = [_layer(e) if isinstance(e, dict) and e.get("op") in SCHEMA1_LAYERS else e
                 for e in nodes]
    return {**doc, "schema": 2, "nodes": nodes}
