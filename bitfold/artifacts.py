"""Atomic artifact writes and schema-checked JSON reads, shared by every stage.

An interrupted stage must never leave a half artifact that a later stage takes
for whole (docs/architecture.md, section 1): everything is written to a temporary file in the
same folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ArtifactError", "atomic_write", "read_json", "write_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


class ArtifactError(ValueError):
    """An artifact is missing, broken or of another schema version."""


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    What ``write`` returns is ignored (``Path.write_text``'s count, for one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | Path, schema: int | None = None) -> dict[str, Any]:
    """Read a JSON artifact; check its ``schema`` version when one is given."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    if schema is not None and data.get("schema") != schema:
        raise ArtifactError(
            f"{path}: schema version {data.get('schema')!r}, this bitfold reads {schema}; "
            "re-run the stage that wrote it"
        )
    return data
