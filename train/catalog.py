"""The names the trainer accepts, importable without torch (the CLI builds its help from them).

The modules that implement them (models, data, factorize, quant, trainer) take their
names from here, so a name is added in one place.
"""

from __future__ import annotations

__all__ = ["ALPHA_MODES", "DATASETS", "FACTOR_DTYPES", "MODEL_NAMES", "OPTIMIZERS", "PARAMS",
           "QUANTIZERS", "SCHEDULES", "GOLDEN_ONLY_MODELS", "POSE_MODELS", "SOFTWARE_ONLY_MODELS"]

MODEL_NAMES = ("mlp-digits", "cnn-digits", "tfc", "sfc", "lfc", "cnv", "resnet8", "resnet18",
               "resnet18-w8", "hourglass", "hourglass-hw")
POSE_MODELS = ("hourglass", "hourglass-hw")  # they take a pose dataset (synthetic-pose)
SOFTWARE_ONLY_MODELS = ("resnet18", "resnet18-w8", "hourglass")  # they train; compile refuses them
# it compiles and runs in the golden model; its upsampling joins and heatmaps have no hardware yet
GOLDEN_ONLY_MODELS = ("hourglass-hw",)
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "npz", "synthetic", "synthetic-pose")
PARAMS = ("dense", "svd", "tucker", "holistic-tucker", "cp")
ALPHA_MODES = ("none", "analytic", "learned")
QUANTIZERS = ("binary", "sparse", "composite", "domain", "float")  # float: the real-valued baseline
OPTIMIZERS = ("adam", "rmsprop")
SCHEDULES = ("cosine", "step", "none")
FACTOR_DTYPES = ("float32", "bfloat16")  # of a factorization's matrix products
