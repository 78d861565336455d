"""A run's model: built from its config, or rebuilt from its checkpoint.

:func:`make_model` builds the architecture (with the input binarizer of
``--input-bits 1``, :func:`input_threshold`), loads float weights to start from
and parametrizes it (:func:`~bitfold.train.layers.parametrize_model`);
:func:`load_run` rebuilds a trained run's model in eval mode with its config and
data. :mod:`bitfold.train.trainer` re-exports all three.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from bitfold.artifacts import ArtifactError

from .checkpoint import RUN_KEYS, load_float_weights, load_state, run_checkpoint
from .config import TrainConfig
from .data import Dataset, load_dataset
from .layers import parametrize_model
from .models import BinarizeInput, build_model

__all__ = ["input_threshold", "load_run", "make_model"]


def input_threshold(config: TrainConfig, data: Dataset) -> int | None:
    """The pixel threshold of a binarized-input run (``--input-bits 1``), else None.

    The default is half the data set's full scale ``S`` (the pixel the network
    sees as 1.0, ``1 / input_scale``), rounded up: ``(S + 1) // 2``, so 128 for
    8-bit images (``S = 255``), ``2 ** (b - 1)`` for ``b``-bit npz sets and 8 for
    the embedded digits (pixels 0..16).

    Raises
    ------
    ValueError
        Where ``--input-bits`` is neither 1 nor the data set's pixel width, or the
        threshold is not a pixel value of the data set.
    """
    if config.input_bits is None or config.input_bits == data.input_bits != 1:
        return None  # the pixels as they are
    if config.input_bits != 1:
        raise ValueError(f"--input-bits {config.input_bits}: {data.name} has {data.input_bits}-bit "
                         f"pixels; give 1 (binarized input) or {data.input_bits} (the pixels as "
                         "they are, the default)")
    top = (1 << data.input_bits) - 1
    full_scale = round(1 / data.input_scale)
    t = config.input_threshold if config.input_threshold is not None else (full_scale + 1) // 2
    if not 1 <= t <= top:
        raise ValueError(f"--input-threshold {t}: the pixels of {data.name} are 0..{top}; give "
                         f"a threshold in 1..{top}")
    return t


def _input_binarizer(config: TrainConfig, data: Dataset) -> BinarizeInput | None:
    t = input_threshold(config, data)
    return None if t is None else BinarizeInput(t, data.input_scale)


def make_model(config: TrainConfig, data: Dataset) -> nn.Module:
    """Build, optionally initialize from float weights, then parametrize the model."""
    config = config.resolved()
    model = build_model(config.model, data.input_shape, data.num_outputs, config.dropout,
                        _input_binarizer(config, data), input_dropout=config.input_dropout)
    if config.init_from:
        load_float_weights(model, config.init_from)
    if hasattr(model, "input_scale"):  # residual models: eval computes the integer streams
        model.input_scale = data.input_scale
    return parametrize_model(model, config.param, config.alpha, config.rank, config.quantizer,
                             config.sparsity, config.bases, config.low_rank,
                             sparse_group=config.sparse_group, sparse_first=config.sparse_first,
                             factor_dtype=config.factor_dtype)


def load_run(run_dir: str | Path, map_location: str = "cpu") -> tuple[nn.Module, TrainConfig, Dataset]:
    """Rebuild a trained model (eval mode) from ``RUN/checkpoint.pt``, with its config and data."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise ArtifactError(f"{run_dir}: no checkpoint.pt; run `bitfold train --out {run_dir}` first")
    ckpt = run_checkpoint(path, map_location, RUN_KEYS)
    config = TrainConfig.from_dict(ckpt["config"])
    data = load_dataset(config.dataset, config.data_dir)
    model = make_model(dataclasses.replace(config, init_from=None), data)
    load_state(model, ckpt["model"], path)
    return model.eval(), config, data
