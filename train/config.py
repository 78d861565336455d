"""What determines a training run: :class:`TrainConfig`, resolved against its model's recipe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bitfold.artifacts import ArtifactError

from .catalog import (
    ALPHA_MODES,
    DATASETS,
    FACTOR_DTYPES,
    MODEL_NAMES,
    OPTIMIZERS,
    PARAMS,
    SCHEDULES,
)
from .quantizers import check_quantizer, check_sparse_group
from .recipes import LEGACY, RECIPE_FIELDS, recipe

__all__ = ["LOSSES", "TrainConfig"]

LOSSES = ("cross-entropy", "squared-hinge")

# Fields added with the recipes: a config.json written before them lacks them and was
# trained as LEGACY says.
_LATER_FIELDS = ("input_dropout", "loss", "clip", "alpha_lr", "bn_lr", "warmup", "latent_penalty",
                 "dense_start", "factor_dtype")
# Left out of the saved dict at these values, so the runs that do not use them write the
# config.json they wrote before the field.
_OMITTED_AT = {"input_bits": None, "input_threshold": None, "train_subset": None,
               "latent_penalty": 0.0,
               "dense_start": 0.0, "factor_dtype": "float32"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as ``RUN/config.json``).

    A field of :data:`~bitfold.train.recipes.RECIPE_FIELDS` left ``None`` takes
    the value of the recipe of this model, data set and parametrization
    (:meth:`resolved`, which :func:`~bitfold.train.trainer.train` calls first);
    the saved config holds the resolved values. ``input_bits`` is None (the data
    set's own multi-bit pixels) or 1: the network binarizes its input, ``+1``
    where ``pixel >= input_threshold`` (default: half the data set's full scale,
    see :func:`~bitfold.train.trainer.input_threshold`). Both are left out of the
    saved dict when None, so runs without them read and write as before.

    ``alpha_lr`` and ``bn_lr`` multiply ``lr`` for the learned scales and the
    batch norms (the latent weights or factors train at ``lr``); ``clip`` > 0
    clamps dense latent weights to ``[-clip, clip]`` after every step (0: off);
    ``warmup`` is the number of epochs over which the rate rises linearly, step
    by step, to the schedule's; ``input_dropout`` drops input pixels, ``dropout``
    the inputs of every later binary layer. ``train_subset`` trains on the first that
    many training samples only (the test set is whole). ``factor_dtype`` ``bfloat16`` rounds the
    operands of a factorization's matrix products to bfloat16 (svd, and
    tucker and holistic-tucker on dense layers; ``product_dtype`` in :mod:`~bitfold.train.factorize`).
    """

    model: str = "mlp-digits"
    dataset: str = "digits"
    data_dir: str | None = None
    param: str = "holistic-tucker"
    alpha: str = "learned"
    rank: float | None = None
    quantizer: str = "binary"
    sparsity: float | None = None
    bases: int | None = None
    low_rank: int | None = None
    sparse_group: int | None = None
    sparse_first: bool = False
    input_bits: int | None = None
    input_threshold: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    step_size: int | None = None
    gamma: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    augment: bool = False
    train_subset: int | None = None
    dropout: float | None = None
    input_dropout: float | None = None
    loss: str | None = None
    clip: float | None = None
    alpha_lr: float | None = None
    bn_lr: float | None = None
    warmup: int | None = None
    latent_penalty: float | None = None
    dense_start: float | None = None
    factor_dtype: str | None = None
    init_from: str | None = None
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        choices = {"model": MODEL_NAMES, "dataset": DATASETS, "param": PARAMS,
                   "alpha": ALPHA_MODES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
                   "loss": LOSSES, "factor_dtype": FACTOR_DTYPES}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        for name in ("epochs", "batch_size", "step_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        for name in ("lr", "alpha_lr", "bn_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), not {value!r}")
        if self.clip is not None and self.clip < 0:
            raise ValueError(f"clip must be 0 (off) or positive, not {self.clip!r}")
        if self.latent_penalty is not None and self.latent_penalty < 0:
            raise ValueError(f"latent_penalty must be 0 (off) or positive, not "
                             f"{self.latent_penalty!r}")
        if self.dense_start is not None and self.dense_start < 0:
            raise ValueError(f"dense_start must be 0 (off) or a positive multiple of epochs, not "
                             f"{self.dense_start!r}")
        if self.dense_start and self.param == "dense":
            raise ValueError("--dense-start trains a dense phase before a factorized run; "
                             "with --param dense give it 0 or leave it out")
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError(f"--train-subset must be at least 1 sample, not "
                             f"{self.train_subset!r}")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more epochs, not {self.warmup!r}")
        check_quantizer(self.quantizer, self.sparsity, self.bases, self.low_rank)
        check_sparse_group(self.sparsity, self.sparse_group)
        if self.sparse_first and self.quantizer != "sparse":
            raise ValueError("--sparse-first-layer applies to --quantizer sparse only")
        self._check_input()

    def _check_input(self) -> None:
        if self.input_bits is not None and self.input_bits < 1:
            raise ValueError(f"--input-bits must be at least 1, not {self.input_bits!r}")
        if self.input_threshold is not None:
            if self.input_bits != 1:
                raise ValueError("--input-threshold applies to --input-bits 1 (binarized input) "
                                 "only")
            if self.input_threshold < 1:
                raise ValueError(f"--input-threshold must be at least 1, not "
                                 f"{self.input_threshold!r}")

    def resolved(self) -> TrainConfig:
        """This config with every unset recipe field set from :func:`~bitfold.train.recipes.recipe`."""
        own = recipe(self.model, self.dataset, self.param)
        unset = {name: own[name] for name in RECIPE_FIELDS if getattr(self, name) is None}
        return dataclasses.replace(self, **unset) if unset else self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name, value in _OMITTED_AT.items():  # absent unless set: older runs unchanged
            if out[name] == value:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ArtifactError(f"unknown config keys {sorted(unknown)}")
        return cls(**upgrade(data))


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the fields older runs lack set to what those runs trained with."""
    data = {**{name: LEGACY[name] for name in _LATER_FIELDS}, **data}
    if data.get("quantizer") == "sparse" and "sparse_first" not in data:
        data["sparse_first"] = True  # sparse runs before the option: every layer
    return data
