"""Run checkpoints: read safely (tensors and plain values only), written atomically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitfold.artifacts import ArtifactError, atomic_write

__all__ = ["RESUME_KEYS", "RUN_KEYS", "SCHEMA", "load_float_weights", "load_state", "read_checkpoint",
           "run_checkpoint", "save_checkpoint"]

SCHEMA = 1


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu", what: str = "") -> Any:
    """``torch.load(path, weights_only=True)``, every failure one :class:`ArtifactError` line.

    Only tensors and plain values are ever unpickled. torch's own messages are not
    passed on: a refused object ends in its advice to retry with ``weights_only=False``,
    which would run whatever code the file holds.
    """
    import pickle
    import zipfile

    where = f"{what}{path}"
    try:
        with warnings.catch_warnings():  # e.g. its note on a foreign pickle protocol
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{where}: no such checkpoint") from None
    except pickle.UnpicklingError:
        raise ArtifactError(f"{where}: holds Python objects other than tensors and plain values; "
                            "bitfold loads weights only and refuses it (retrain, or use a "
                            "checkpoint written by bitfold train)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        reason = str(exc).split(". ")[0].strip().rstrip(".")[:120] or type(exc).__name__
        raise ArtifactError(f"{where}: truncated or corrupted checkpoint ({reason}); retrain, or "
                            "restore the file") from None

def load_float_weights(model: nn.Module, source: str) -> None:
    """Load real-valued weights (a plain state_dict, or a ``--param dense`` run) into ``model``."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    blob = read_checkpoint(path, what="--init-from ")
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ArtifactError(f"--init-from {path}: expected a state_dict")
    state = {k.replace(".parametrizations.weight.original", ".weight"): v for k, v in state.items()
             if not k.endswith(".alpha")}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or shapes:
        detail = f"missing {missing[:3]}" if missing else f"shape mismatch in {shapes[:3]}"
        raise ArtifactError(f"--init-from {path}: weights do not fit this model ({detail}); "
                            "start from a checkpoint of the same --model with --param dense")
    model.load_state_dict({k: state[k] for k in own})

RUN_KEYS = ("config", "model")  # what compile and golden read
RESUME_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "history", "wall_s")


def run_checkpoint(path: Path, map_location: str | torch.device,
                    keys: tuple[str, ...] = RESUME_KEYS) -> dict[str, Any]:
    """A run's ``checkpoint.pt``: read safely, its schema and ``keys`` checked."""
    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, dict):
        raise ArtifactError(f"{path}: not a bitfold checkpoint (a {type(ckpt).__name__}, not a dict)")
    if ckpt.get("schema") != SCHEMA:
        raise ArtifactError(f"{path}: checkpoint schema {ckpt.get('schema')!r}, expected {SCHEMA}")
    missing = [k for k in keys if k not in ckpt]
    if missing or not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise ArtifactError(f"{path}: not a bitfold checkpoint (missing or malformed "
                            f"{', '.join(missing) or 'config/model'}); retrain")
    return ckpt


def load_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise ArtifactError(f"{path}: the weights do not fit the model of its config "
                            f"({first[:160]}); retrain") from None

def save_checkpoint(path: Path, blob: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(blob, tmp))
