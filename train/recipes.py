"""Training recipes: the defaults of every option a recipe sets, per model, data set and parametrization.

An option left unset (``None`` in :class:`~bitfold.train.config.TrainConfig`,
not given on the command line) takes its value from :func:`recipe`; an option
given explicitly always wins. The base recipe is the one the embedded digits
were tuned with (``make demo``); the MNIST-sized MLPs (``tfc``, ``sfc``,
``lfc`` on ``mnist`` and ``fashion-mnist``) have their own, measured ones
(BENCHMARKS.md, "Trainer"). Importable without torch: ``bitfold.options``
prints the resolved command of ``bitfold run`` from it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BASE", "LEGACY", "RECIPES", "RECIPE_FIELDS", "describe", "recipe"]

# The defaults every run had before recipes (and the digits' recipe): they also fill a
# field an older run's config.json lacks, so that run reads back as it was trained.
LEGACY: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-2, "weight_decay": 0.0, "schedule": "cosine", "step_size": 10,
    "gamma": 0.1, "epochs": 20, "batch_size": 64, "dropout": 0.0, "input_dropout": 0.0,
    "loss": "cross-entropy", "clip": 0.0, "alpha_lr": 1.0, "bn_lr": 1.0, "warmup": 0,
}
BASE = LEGACY
RECIPE_FIELDS = tuple(BASE)

_MNIST_MLPS = {"model": ("tfc", "sfc", "lfc"), "dataset": ("mnist", "fashion-mnist")}

# (what it matches, what it sets), applied in order: a later match overrides an earlier one.
# A match names the model, data set and parametrization (``param``) it applies to; a field
# it does not name matches anything.
RECIPES: tuple[tuple[dict[str, tuple[str, ...]], dict[str, Any]], ...] = (
    (_MNIST_MLPS, {"lr": 1e-3, "batch_size": 256, "epochs": 40}),
    ({**_MNIST_MLPS, "param": ("dense",)}, {"lr": 1e-2}),
)


def _matches(match: dict[str, tuple[str, ...]], keys: dict[str, str]) -> bool:
    return all(keys[name] in allowed for name, allowed in match.items())


def recipe(model: str, dataset: str, param: str = "holistic-tucker") -> dict[str, Any]:
    """Every field :data:`RECIPE_FIELDS` names, as the recipe of this model, data set and param sets it."""
    keys = {"model": model, "dataset": dataset, "param": param}
    out = dict(BASE)
    for match, values in RECIPES:
        if _matches(match, keys):
            out.update(values)
    return out


def describe(model: str, dataset: str, param: str = "holistic-tucker") -> str:
    """The recipe's settings that differ from the base one, as ``bitfold train`` options."""
    own = recipe(model, dataset, param)
    diff = [f"--{k.replace('_', '-')} {v}" for k, v in own.items() if v != BASE[k]]
    return " ".join(diff) or "the base recipe"
