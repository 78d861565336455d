"""The options several verbs share, so that ``bitfold.cli`` and ``bitfold.pipeline`` both read them.

``bitfold run`` prints and hashes the ``bitfold train`` command of each run
(:func:`train_argv`), which it builds from the same option definitions the
``train`` verb's parser has. Nothing here imports a stage at import time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ALWAYS", "FAMILIES", "RenamedOption", "family_option", "folding_options",
           "frames_option", "param_options", "score_bits_option", "train_argv", "train_options"]

FAMILIES = ("ecp5", "ice40")

# Training options the printed train command always shows, default or not.
ALWAYS = ("--model", "--dataset", "--param", "--alpha", "--epochs")


def _adder(group: Any, actions: list[argparse.Action]) -> Callable[..., None]:
    """``group.add_argument`` that also records the action (argparse keeps its list private)."""
    def add(*flags: str, **kw: Any) -> None:
        actions.append(group.add_argument(*flags, **kw))
    return add


def score_bits_option(p: argparse.ArgumentParser) -> None:
    """``--score-bits``, for every verb that folds class scores into integers."""
    p.add_argument("--score-bits", type=int, default=32,
                   help="signed width of the integer class scores (default: 32)")


def _optimization_options(p: argparse.ArgumentParser, actions: list[argparse.Action]):
    """The "optimization" group of :func:`train_options` (the options a recipe sets); returns
    its adder, for the options that follow in the group."""
    from bitfold.train.catalog import FACTOR_DTYPES, OPTIMIZERS, SCHEDULES
    from bitfold.train.recipes import describe

    add = _adder(p.add_argument_group(
        "optimization", "An option not given takes the value of the recipe of the --model, "
        "--dataset and --param (train/recipes.py; README, Training recipes); the digits' "
        "recipe, the base, is the value in brackets, and e.g. holistic Tucker on sfc/mnist "
        f"sets {describe('sfc', 'mnist')}. An option given always wins."), actions)
    add("--optimizer", choices=OPTIMIZERS, help="[adam]")
    add("--lr", type=float, help="learning rate of the latent weights or factors [0.01]")
    add("--alpha-lr", type=float, metavar="M",
        help="the learned scales' learning rate, as a multiple of --lr [1]")
    add("--bn-lr", type=float, metavar="M",
        help="the batch norms' learning rate, as a multiple of --lr [1]")
    add("--weight-decay", type=float, help="L2 weight decay [0]")
    add("--schedule", choices=SCHEDULES, help="learning-rate schedule over --epochs [cosine]")
    add("--step-size", type=int, help="epochs between LR drops (step) [10]")
    add("--gamma", type=float, help="LR factor per drop (step) [0.1]")
    add("--warmup", type=int, metavar="E",
        help="epochs over which the rate rises linearly, step by step, to the schedule's [0]")
    add("--epochs", type=int, help="epochs to train [20]")
    add("--batch-size", type=int, help="global batch size (all processes) [64]")
    add("--loss", choices=("cross-entropy", "squared-hinge"), help="[cross-entropy]")
    add("--clip", type=float, metavar="C",
        help="clamp dense latent weights to [-C, C] after every step; 0: off [0]")
    add("--latent-penalty", type=float, metavar="P",
        help="add P * mean(relu(|W| - 1)^2) per binary layer to the loss, W the real weight "
             "before binarization (a factorization's reconstruction); 0: off [0]")
    add("--dense-start", type=float, metavar="M",
        help="a factorized run first trains the dense parametrization, M x --epochs epochs "
             "with the dense recipe (into OUT/dense), then starts from it as --init-from "
             "would; 0: off [0]")
    add("--factor-dtype", choices=FACTOR_DTYPES,
        help="the dtype of the operands of a factorization's matrix products, which rebuild "
             "the weight before it is binarized (svd, and tucker and holistic-tucker on dense "
             "layers; training, evaluation and export alike); bfloat16 halves lfc's holistic "
             "step on CPUs with AMX or AVX512-BF16 [float32]")
    return add


def train_options(p: argparse.ArgumentParser, run: bool = False) -> list[argparse.Action]:
    """The training options of ``train``, ``run`` and ``ablate``; returns the actions added."""
    from bitfold.train.catalog import DATASETS, MODEL_NAMES

    actions: list[argparse.Action] = []
    add = _adder(p.add_argument_group("model and data"), actions)
    add("--model", default="mlp-digits", choices=MODEL_NAMES,
        help="network (default: mlp-digits); resnet18 and hourglass train but are not "
             "lowered to hardware")
    add("--dataset", default="digits", choices=DATASETS,
        help="digits is embedded; mnist, fashion-mnist, cifar10 and npz (your own: "
             "train.npz and test.npz with uint8 x and class indices y) read --data-dir")
    add("--data-dir", help="folder holding the dataset's files")
    add("--dropout", type=float, help="dropout probability on the input of every binary layer "
        "but the first (default: the recipe's)")
    add("--input-dropout", type=float, metavar="P",
        help="dropout probability on the input pixels, MLPs only (default: the recipe's)")
    add("--input-bits", type=int, metavar="B",
        help="1: binarize the input inside the network (+1 where pixel >= "
             "--input-threshold, else -1; FINN's SFC/LFC), so the first layer is an "
             "XNOR-popcount layer too; default: the data set's multi-bit pixels"
             + ("; with --import: the pixels are 0 .. 2**B - 1 (default: 8)"
                if run else ""))
    add("--input-threshold", type=int, metavar="T",
        help="with --input-bits 1: the smallest pixel that becomes +1 (default: half "
             "the data set's full scale, rounded up: 128 for 8-bit images, 8 for the "
             "digits' 0..16)")
    add = _optimization_options(p, actions)
    add("--seed", type=int, default=0,
        help="seed of initialization, data order, augmentation and dropout (default: 0); "
             "the same seed and thread count repeat bit-identically")
    add("--augment", action="store_true", help="random shifts (and flips on cifar10)")
    add("--train-subset", type=int, metavar="N",
        help="train on the first N training samples only (the test set stays whole), for "
             "quick grids on a CPU")
    add("--device", default="cpu", help="cpu, cuda or cuda:N")
    add("--quiet", action="store_true", help="no progress bar or epoch lines")
    return actions


def param_options(p: argparse.ArgumentParser, grid: bool = False) -> list[argparse.Action]:
    """How binary weights are parametrized (``grid``: ``ablate``'s, without ``--param``/``--alpha``);
    returns the actions added."""
    from bitfold.train.catalog import ALPHA_MODES, PARAMS, QUANTIZERS

    actions: list[argparse.Action] = []
    add = _adder(p.add_argument_group("binary weights"), actions)
    if not grid:
        add("--param", default="holistic-tucker", choices=PARAMS,
            help="factorization of the latent weights (default: holistic-tucker)")
        add("--alpha", default="learned", choices=ALPHA_MODES,
            help="per-channel weight scale (default: learned)")
    add("--rank", type=float,
        help="fraction of each mode kept (svd/tucker/holistic-tucker) or the CP rank; "
             "full rank when omitted")
    add("--init-from", metavar="CKPT",
        help="start from the real weights of a checkpoint or a --param dense run")
    add("--quantizer", default="binary", choices=QUANTIZERS,
        help="binary: alpha*sign(W) (default); sparse: {0, b} per channel at "
             "--sparsity; composite: --bases K binary planes; domain: {a, b} per "
             "channel (every layer; an offset plus a scaled binary weight); float: "
             "real weights and hard-tanh activations, a baseline to compare "
             "accuracy with; it cannot be compiled")
    add("--sparsity", type=float, metavar="S",
        help="fraction of zero weights per output channel (sparse)")
    add("--sparse-group", type=int, metavar="G",
        help="sparse: keep exactly (1-S)*G of every G consecutive inputs (N:G "
             "structured sparsity, e.g. --sparsity 0.75 --sparse-group 4 is 1:4), so "
             "the hardware stores and computes only the kept ones")
    add("--sparse-first-layer", action="store_true",
        help="sparse: sparsify the first layer too; by default it stays binary, "
             "since {0, b} weights on unsigned pixels can only add them up (no "
             "contrast) and the network learns far worse")
    add("--bases", type=int, metavar="K", help="binary planes per weight (composite)")
    add("--low-rank", type=int, metavar="R",
        help="composite: hidden dense layers become two binary matrices of rank R")
    return actions


def folding_options(p: argparse.ArgumentParser) -> None:
    """BUILD and the ways to choose a folding, shared by ``fold`` and ``generate``."""
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--target-fps", type=float, metavar="F", help="frames per second to reach")
    p.add_argument("--clock-mhz", type=float, metavar="M",
                   help="clock for --target-fps or a budget (default: 100; a --folding FILE "
                        "has its own)")
    p.add_argument("--max-luts", type=int, metavar="N",
                   help="LUT budget: the fastest folding whose estimate fits")
    p.add_argument("--max-brams", type=int, metavar="N",
                   help="block RAM budget; with --target-fps, the blocks a design may use (spare "
                        "ones then hold weights Yosys would build from LUTs)")
    p.add_argument("--two-frames", action="store_true",
                   help="let dense layers compute two frames a pass, each weight read once for "
                        "both (twice the lanes, half the weight reads: for frame rates whose "
                        "weight reads outrun the block RAMs)")
    p.add_argument("--folding", metavar="FILE",
                   help="a folding.json (written by bitfold fold or by hand), checked and costed")
    p.add_argument("--board", metavar="NAME",
                   help="fold for a board (see bitfold boards), as bitfold build checks it: its "
                        "FPGA family, its clock (for --target-fps and the frames/s figure) and "
                        "its capacity (without --target-fps or a budget, the fastest folding in "
                        "75%% of its LUTs and its block RAMs; any folding is checked to fit it)")
    family_option(p, "resource model (default: the --board's, else ecp5)")


def family_option(p: argparse.ArgumentParser, text: str) -> None:
    """``--family ecp5|ice40`` (the FPGA family), and its old name ``--device`` for one release:
    ``train`` and ``run`` say ``--device`` for the torch device."""
    p.add_argument("--family", choices=FAMILIES, help=text)
    p.add_argument("--device", dest="family", choices=FAMILIES, action=RenamedOption,
                   new="--family", why=" (the FPGA family; --device is the torch device in "
                                      "train and run)")


class RenamedOption(argparse.Action):
    """An option's old name, kept for one release: it sets the new option's value and warns,
    one line on stderr, naming the new option. Hidden from ``--help``."""

    def __init__(self, option_strings: list[str], dest: str, new: str, why: str = "",
                 **kw: Any) -> None:
        super().__init__(option_strings, dest, **{**kw, "help": argparse.SUPPRESS})
        self.new, self.why = new, why

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is now {self.new}{self.why}; "
              f"{option_string} goes in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


def frames_option(p: argparse.ArgumentParser, text: str = "only the first N test frames",
                  default: int | None = None) -> None:
    """``--frames N``, the one name for how many frames in every verb, and the old ``--limit``
    of ``golden``, ``import``, ``export`` and ``infer`` for one release."""
    p.add_argument("--frames", type=int, metavar="N", default=default, help=text)
    p.add_argument("--limit", dest="frames", type=int, metavar="N", action=RenamedOption,
                   new="--frames", why=" (the same name in every verb)")


def _recipe_value(args: argparse.Namespace, name: str) -> Any:
    """The value the recipe of ``args``' model, data set and parametrization gives ``name``."""
    from bitfold.train.recipes import RECIPE_FIELDS, recipe

    if name not in RECIPE_FIELDS:
        return None
    return recipe(args.model, args.dataset, getattr(args, "param", "holistic-tucker"))[name]


def train_argv(args: argparse.Namespace) -> list[str]:
    """The ``bitfold train`` command for the training options in ``args`` (say, ``run``'s).

    Every training option ``run`` accepts reaches the trainer; options left at
    their defaults are left out, except those in :data:`ALWAYS`.
    """
    scratch = argparse.ArgumentParser(add_help=False)
    argv = ["train"]
    for action in [*train_options(scratch), *param_options(scratch)]:
        flag = action.option_strings[-1]
        if not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value is None and flag in ALWAYS:
            value = _recipe_value(args, action.dest)
        if value is None or value == action.default and flag not in ALWAYS:
            continue
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv
