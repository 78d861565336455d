"""``--dense-start M``: a factorized run that trains the dense parametrization first.

The run trains ``RUN/dense/`` first, an ordinary run folder: the same model, data set,
alpha, seed, input and augmentation, with ``--param dense`` and every optimization option
from the dense recipe of that model and data set (:mod:`bitfold.train.recipes`), for
``M`` times the run's ``--epochs`` (rounded, at least 1; so ``--epochs`` scales both
phases). The factorized run then starts from its latent weights and batch norms, as
``--init-from RUN/dense`` starts one (each weight decomposed by ``right_inverse``, the
learned scales initialized afresh from the reconstruction), and trains its own
``--epochs`` with its own options. So one command gives what the two commands ``bitfold
train --param dense ... --out D`` and ``bitfold train ... --init-from D`` give, bit for bit.
An interrupted dense phase resumes like any run; a finished one (of the same options) is
not trained again, and a factorized run resumed from its own checkpoint does not look at it.
Under ``torchrun`` every process trains both phases together (not tested here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitfold.artifacts import read_json, write_json

from .checkpoint import SCHEMA
from .config import TrainConfig, upgrade

__all__ = ["PHASE_DIR", "dense_phase", "record_dense_phase", "start_from_dense"]

PHASE_DIR = "dense"  # the dense phase's run folder, inside the run's


def dense_phase(config: TrainConfig) -> TrainConfig:
    """The dense phase's config of a (resolved) run with ``dense_start`` > 0 (resolved)."""
    keep = ("model", "dataset", "data_dir", "alpha", "seed", "augment", "train_subset", "input_bits",
            "input_threshold", "init_from", "device")
    epochs = max(1, round(config.dense_start * config.epochs))
    return TrainConfig(**{name: getattr(config, name) for name in keep}, param="dense",
                       epochs=epochs).resolved()


def _finished(phase: Path, dense: TrainConfig) -> bool:
    """Whether ``phase`` holds the dense phase ``dense``, trained to its end."""
    paths = [phase / name for name in ("checkpoint.pt", "metrics.json", "config.json")]
    if not all(path.is_file() for path in paths):
        return False
    stored = {k: v for k, v in read_json(paths[2], SCHEMA).items() if k != "schema"}
    return (upgrade(stored) == upgrade(dense.to_dict())
            and read_json(paths[1], SCHEMA).get("epochs") == dense.epochs)


def start_from_dense(config: TrainConfig, out: Path, resume: bool, progress: bool, force: bool,
                     train: Callable[..., dict[str, Any]]) -> tuple[TrainConfig, bool]:
    """Train (or resume, or keep) the dense phase of ``config`` in ``out/dense`` with ``train``;
    return the config to build the factorized model from (``init_from`` the phase) and
    whether the factorized run itself resumes (not before its first checkpoint)."""
    if not config.dense_start or resume and (out / "checkpoint.pt").is_file():
        return config, resume
    phase = out / PHASE_DIR
    dense = dense_phase(config)
    if not _finished(phase, dense):
        train(dense, phase, resume=resume and (phase / "checkpoint.pt").is_file(),
              progress=progress, force=force)
    return dataclasses.replace(config, init_from=str(phase)), False


def record_dense_phase(config: TrainConfig, out: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with the dense phase's epochs, test accuracy and seconds under
    ``dense_phase`` and ``total_wall_s`` (both phases), written to ``out/metrics.json``; as
    they are without a dense start (or where its phase is gone)."""
    phase = out / PHASE_DIR / "metrics.json"
    if not config.dense_start or not metrics or not phase.is_file():
        return metrics
    dense = read_json(phase, SCHEMA)
    metrics = {**metrics, "dense_phase": {"run": PHASE_DIR, "epochs": dense["epochs"],
                                          "test_accuracy": dense["test_accuracy"],
                                          "wall_s": dense["wall_s"]},
               "total_wall_s": dense["wall_s"] + metrics["wall_s"]}
    write_json(out / "metrics.json", metrics)
    return metrics
