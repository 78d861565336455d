"""Reading and writing the IR: ``BUILD/graph.json`` + ``BUILD/tensors.npz`` (docs/ir.md).

Both files are canonical, so writing a graph that was read gives the same
bytes: JSON with sorted keys and fixed indentation; the npz is a zip with
entries in sorted order, fixed timestamps and no compression. ``graph.json``
records the SHA-256 of ``tensors.npz`` (written first), so a pair from two
different compiles is caught. Arrays are read with ``allow_pickle=False``.

Schema 2 writes a binary layer as one ``Layer`` node with its ``geometry`` and its
``encoding`` (an object naming its kind, :data:`~bitfold.compiler.encodings.ENCODINGS`).
Schema 1 (15 node kinds, ``BinaryDense`` .. ``DomainConv2d``) is still read
(:mod:`bitfold.compiler.schema1`), so build folders written before stay usable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import atomic_write

from .encoding import Encoding
from .encodings import ENCODINGS
from .errors import IRError, IRFormatError
from .geometry import DENSE, Dense, Window
from .ir import NODE_KINDS, Graph, Node, TensorType
from .schema1 import upgrade_schema1
from .verify import verify

__all__ = [
    "GRAPH_FILE",
    "READS",
    "SCHEMA",
    "TENSORS_FILE",
    "graph_from_json",
    "graph_to_json",
    "load_graph",
    "npz_bytes",
    "read_npz",
    "save_graph",
]

SCHEMA = 2
READS = (1, 2)  # schema 1 is upgraded on reading
GRAPH_FILE = "graph.json"
TENSORS_FILE = "tensors.npz"
_DTYPES = {"bits": "<u1", "int64": "<i8", "float64": "<f8"}


def _reads() -> str:
    return " and ".join(str(v) for v in READS)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic ``.npz``: sorted entries, fixed timestamps, stored (no compression)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o644 << 16
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arrays[key]),
                                      allow_pickle=False)
            zf.writestr(info, data.getvalue())
    return buf.getvalue()


def read_npz(path: Path, raw: bytes | None = None) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (no pickles); :class:`IRFormatError` if it is not readable."""
    try:
        raw = path.read_bytes() if raw is None else raw
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise IRFormatError(f"{path}: not found; run `bitfold compile` to write it") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IRFormatError(f"{path}: not a readable npz, truncated or corrupt ({reason}); "
                            "re-run `bitfold compile`") from None


# --------------------------------------------------------------------------- to JSON


def _encode_array(value: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "bits":
        return np.packbits(value, axis=-1, bitorder="little")
    return value.astype(_DTYPES[encoding])


def _fields_to_json(obj: Any, prefix: str, arrays: dict[str, np.ndarray],
                   specs: dict[str, Any]) -> dict[str, Any]:
    """A node's, encoding's or window's fields: arrays as keys of ``tensors.npz``
    (``prefix.field``), a layer's geometry and encoding as objects of their own."""
    entry: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in obj.ARRAYS:
            encoding = obj.ARRAYS[f.name][0]
            key = f"{prefix}.{f.name}"
            arrays[key] = _encode_array(value, encoding)
            specs[key] = {"encoding": encoding, "shape": list(value.shape)}
            entry[f.name] = key
        elif isinstance(value, Encoding):
            entry[f.name] = {"kind": value.NAME, **_fields_to_json(value, prefix, arrays, specs)}
        elif isinstance(value, Dense | Window):
            entry[f.name] = {"kind": value.KIND, **dataclasses.asdict(value)}
        else:
            entry[f.name] = list(value) if isinstance(value, tuple) else value
    return entry


def graph_to_json(graph: Graph) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The ``graph.json`` document (without the checksum) and the arrays for ``tensors.npz``."""
    verify(graph)
    arrays: dict[str, np.ndarray] = {}
    specs: dict[str, Any] = {}
    nodes = [{"op": node.op, **_fields_to_json(node, node.name, arrays, specs)}
             for node in graph.nodes]
    doc = {
        "schema": SCHEMA,
        "name": graph.name,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "nodes": nodes,
        "tensors": {name: {"shape": list(t.shape), "bits": t.bits, "signed": t.signed}
                    for name, t in graph.types.items()},
        "arrays": specs,
    }
    return doc, arrays


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def save_graph(graph: Graph, build: str | Path) -> Path:
    """Write ``BUILD/tensors.npz`` then ``BUILD/graph.json`` atomically; return the graph path."""
    build = Path(build)
    doc, arrays = graph_to_json(graph)
    blob = npz_bytes(arrays)
    doc["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write(build / TENSORS_FILE, lambda tmp: tmp.write_bytes(blob))
    text = _canonical(doc)
    return atomic_write(build / GRAPH_FILE, lambda tmp: tmp.write_text(text))


# --------------------------------------------------------------------------- from JSON


def _decode_array(where: str, spec: Any, stored: np.ndarray | None, encoding: str) -> np.ndarray:
    if stored is None:
        raise IRFormatError(f"{where}: array missing from {TENSORS_FILE}")
    if not isinstance(spec, dict) or spec.get("encoding") != encoding or \
            not isinstance(spec.get("shape"), list):
        raise IRFormatError(f"{where}: array spec {spec!r} must be "
                            f'{{"encoding": "{encoding}", "shape": [...]}}')
    shape = tuple(spec["shape"])
    expected = (*shape[:-1], math.ceil(shape[-1] / 8)) if encoding == "bits" and shape else shape
    if stored.dtype != np.dtype(_DTYPES[encoding]) or stored.shape != expected:
        raise IRFormatError(f"{where}: {TENSORS_FILE} holds {stored.dtype} {stored.shape}, "
                            f"graph.json declares {encoding} {list(shape)} (stored as "
                            f"{np.dtype(_DTYPES[encoding])} {expected}); re-run `bitfold compile`")
    if encoding == "bits":
        return np.unpackbits(stored, axis=-1, count=shape[-1], bitorder="little")
    return stored


def _from_fields(where: str, cls: Any, entry: dict[str, Any], skip: str,
                 arrays: dict[str, np.ndarray], specs: dict[str, Any]) -> Any:
    """``cls`` from exactly its fields in ``entry`` (``skip``, the kind, aside): arrays
    looked up in ``tensors.npz``, a layer's geometry and encoding read as objects."""
    names = [f.name for f in dataclasses.fields(cls)]
    given = set(entry) - {skip}
    if given != set(names):
        missing, extra = sorted(set(names) - given), sorted(given - set(names))
        raise IRFormatError(f"{where}: {entry.get(skip)} needs fields {names}; missing "
                            f"{missing}, unknown {extra}")
    kwargs = {}
    specs_of = getattr(cls, "ARRAYS", {})
    for name in names:
        value = entry[name]
        if name in specs_of:
            if not isinstance(value, str):
                raise IRFormatError(f"{where}: {name} must name an array, not {value!r}")
            value = _decode_array(f"{where}: {name} {value!r}", specs.get(value),
                                  arrays.get(value), specs_of[name][0])
        elif name == "encoding":
            value = _encoding_from_json(f"{where}: encoding", value, arrays, specs)
        elif name == "geometry":
            value = _geometry_from_json(f"{where}: geometry", value)
        elif name == "shape":
            value = tuple(value) if isinstance(value, list) else value
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (IRError, TypeError, ValueError) as exc:
        raise IRFormatError(f"{where}: {exc}") from None


def _encoding_from_json(where: str, entry: Any, arrays: dict[str, np.ndarray],
                        specs: dict[str, Any]) -> Encoding:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind not in ENCODINGS:
        raise IRFormatError(f"{where}: unknown weight encoding {entry!r}; this bitfold reads "
                            f"{', '.join(ENCODINGS)}")
    return _from_fields(where, ENCODINGS[kind], entry, "kind", arrays, specs)


def _geometry_from_json(where: str, entry: Any) -> Dense | Window:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == Dense.KIND and set(entry) == {"kind"}:
        return DENSE
    if kind == Window.KIND:
        return _from_fields(where, Window, entry, "kind", {}, {})
    raise IRFormatError(f'{where}: {entry!r} must be {{"kind": "dense"}} or {{"kind": '
                        '"window", "kernel": K, "stride": S, "pad": P, "pad_value": V}')


def _node_from_json(i: int, entry: Any, arrays: dict[str, np.ndarray],
                    specs: dict[str, Any]) -> Node:
    if not isinstance(entry, dict):
        raise IRFormatError(f"node {i}: expected an object, not {entry!r}")
    op = entry.get("op")
    where = f"node {i} ({entry.get('name', '?')!r})"
    if op not in NODE_KINDS:
        raise IRFormatError(f"{where}: unknown kind {op!r}; this bitfold reads "
                            f"{', '.join(NODE_KINDS)}")
    return _from_fields(where, NODE_KINDS[op], entry, "op", arrays, specs)


def graph_from_json(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Graph:
    """Rebuild and verify a graph from its JSON document (schema 1 or 2) and arrays."""
    if doc.get("schema") not in READS:
        raise IRFormatError(f"schema version {doc.get('schema')!r}, this bitfold reads "
                            f"{_reads()}; re-run `bitfold compile`")
    if doc["schema"] == 1:
        doc = upgrade_schema1(doc)
    for key, kind in (("name", str), ("inputs", list), ("outputs", list), ("nodes", list),
                      ("tensors", dict), ("arrays", dict)):
        if not isinstance(doc.get(key), kind):
            raise IRFormatError(f"{key!r} must be a {kind.__name__}")
    nodes = tuple(_node_from_json(i, e, arrays, doc["arrays"]) for i, e in enumerate(doc["nodes"]))
    unused = sorted(set(arrays) - set(doc["arrays"]))
    if unused:
        raise IRFormatError(f"{TENSORS_FILE} holds arrays {unused} that no node uses")
    try:
        types = {name: TensorType(tuple(t["shape"]), t["bits"], t["signed"])
                 for name, t in doc["tensors"].items()}
    except (KeyError, TypeError) as exc:
        raise IRFormatError(f"tensor types need shape, bits, signed ({exc})") from None
    graph = Graph(doc["name"], nodes, tuple(doc["inputs"]), tuple(doc["outputs"]), types)
    verify(graph)
    return graph


def load_graph(build: str | Path) -> Graph:
    """Read and verify ``BUILD/graph.json`` + ``BUILD/tensors.npz``.

    Raises
    ------
    IRFormatError
        Missing files, another schema version, a truncated or foreign npz,
        arrays whose shapes disagree with ``graph.json``, unknown node kinds.
    IRError
        A readable graph that is not valid IR.
    """
    build = Path(build)
    path = build / GRAPH_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise IRFormatError(f"{path}: not found; run `bitfold compile RUN --out {build}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IRFormatError(f"{path}: not valid JSON ({exc}); re-run `bitfold compile`") from None
    if not isinstance(doc, dict):
        raise IRFormatError(f"{path}: expected a JSON object")
    if doc.get("schema") not in READS:
        raise IRFormatError(f"{path}: schema version {doc.get('schema')!r}, this bitfold reads "
                            f"{_reads()}; re-run `bitfold compile`")
    npz_path = build / TENSORS_FILE
    try:
        raw = npz_path.read_bytes()
    except FileNotFoundError:
        raise IRFormatError(f"{npz_path}: not found; re-run `bitfold compile`") from None
    arrays = read_npz(npz_path, raw)
    if doc.get("tensors_sha256") != hashlib.sha256(raw).hexdigest():
        raise IRFormatError(f"{npz_path}: does not match {path} (checksum differs: the files "
                            "come from different compiles or were edited); "
                            "re-run `bitfold compile`")
    try:
        return graph_from_json(doc, arrays)
    except IRFormatError as exc:
        raise IRFormatError(f"{path}: {exc}") from None
    except IRError as exc:
        raise IRError(f"{path}: {exc}") from None
