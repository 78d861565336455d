"""Atomic artifact writes and schema-checked JSON reads, shared by every stage.

An interrupted stage must never leave a half artifact that a later stage takes
for whole (docs/architecture.md, section 1): everything is written to a temporary file in the
same folder and renamed into place, and a stage whose output is a folder of files that belong
together (``rtl/``, ``boards/NAME/``, ``sim/``) writes a temporary sibling folder and swaps it
in (:func:`replaced_dir`); files that belong together in a shared folder (``bench.json``,
``bench.md``, ``bench.png``) are renamed into place in one step (:func:`replaced_files`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["ArtifactError", "atomic_write", "held_signals", "read_json", "replaced_dir",
           "replaced_files", "sha256_file", "write_json"]

_HELD = (signal.SIGINT, signal.SIGTERM)


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


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on one that came meanwhile.

    For the few steps that must not be cut in two (swapping a folder in, ending a
    tool's processes). Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.getsignal(s) for s in _HELD}
    for s in _HELD:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if pending:
            signal.raise_signal(pending[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_siblings(dest: Path) -> Iterator[Path]:
    """Temporary folders beside ``dest`` left by a process that no longer runs (killed hard)."""
    for p in dest.parent.glob(f".{dest.name}.*-*-*"):
        kind, _, rest = p.name[len(dest.name) + 2:].partition("-")
        pid = rest.partition("-")[0]
        if kind in ("new", "old") and pid.isdigit() and not _alive(int(pid)):
            yield p


@contextmanager
def replaced_dir(dest: str | Path, beside: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty folder beside ``dest``; a block that ends normally replaces ``dest`` with it.

    The new folder is renamed into place with SIGINT and SIGTERM held, so an
    interrupted or failed stage leaves the previous whole folder (or none, if
    there was none); never a mix of old and new files. A block that raises
    removes the new folder. Files named in ``beside`` that the block wrote into
    the new folder are moved next to ``dest`` in the same held step (``generate``'s
    ``folding.json``, which belongs with ``rtl/``). Only a hard kill (SIGKILL) in that
    step can leave ``dest`` absent (its previous contents then sit in a hidden
    ``.NAME.old-*`` sibling, removed by the next run) or a ``beside`` file new beside
    the old folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_siblings(dest):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-{os.getpid()}-", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        old = None
        with held_signals():
            for name in beside:
                if (tmp / name).exists():
                    os.replace(tmp / name, dest.parent / name)
            if dest.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{os.getpid()}-",
                                            dir=dest.parent))
                os.replace(dest, old / dest.name)
            try:
                os.replace(tmp, dest)
            except OSError:
                if old is not None:  # put the previous folder back
                    os.replace(old / dest.name, dest)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def replaced_files(folder: str | Path, *names: str) -> Iterator[dict[str, Path]]:
    """Yield a temporary path beside ``folder/NAME`` for each name; a block that ends normally
    renames them all into place in one step, with SIGINT and SIGTERM held.

    So files that belong together are replaced together: an interrupted or failed block
    leaves the previous set (or none), never new files beside old ones. The block must write
    every path. Only a hard kill (SIGKILL) in the renaming step can leave a mix.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmps: dict[str, Path] = {}
    try:
        for name in names:
            fd, made = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            tmps[name] = Path(made)
        yield dict(tmps)
        with held_signals():
            for name, path in tmps.items():
                os.chmod(path, 0o666 & ~_UMASK)
                os.replace(path, folder / name)
    except BaseException:
        for path in tmps.values():
            path.unlink(missing_ok=True)
        raise
