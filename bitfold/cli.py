"""The ``bitfold`` command line: one verb per pipeline stage (DESIGN.md §1).

Stage modules are imported lazily inside each verb, so ``bitfold --help`` is
instant and a verb only pays for what it uses. Expected failures (bad input,
missing or broken artifacts) end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _train_options(p: argparse.ArgumentParser) -> None:
    from bitfold.train.data import DATASETS
    from bitfold.train.models import MODELS

    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="mlp-digits", choices=list(MODELS))
    g.add_argument("--dataset", default="digits", choices=list(DATASETS),
                   help="digits is embedded; mnist, fashion-mnist and cifar10 read --data-dir")
    g.add_argument("--data-dir", help="folder holding the dataset's files")
    g.add_argument("--dropout", type=float, default=0.0)
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
    g.add_argument("--lr", type=float, default=1e-2)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--schedule", default="cosine", choices=["cosine", "step", "none"])
    g.add_argument("--step-size", type=int, default=10, help="epochs between LR drops (step)")
    g.add_argument("--gamma", type=float, default=0.1, help="LR factor per drop (step)")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--batch-size", type=int, default=64, help="global batch size (all processes)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--augment", action="store_true", help="random shifts (and flips on cifar10)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def _param_options(p: argparse.ArgumentParser, grid: bool = False) -> None:
    g = p.add_argument_group("binary weights")
    if not grid:
        g.add_argument("--param", default="holistic-tucker",
                       choices=["dense", "svd", "tucker", "holistic-tucker", "cp"],
                       help="factorization of the latent weights (default: holistic-tucker)")
        g.add_argument("--alpha", default="learned", choices=["none", "analytic", "learned"],
                       help="per-channel weight scale (default: learned)")
    g.add_argument("--rank", type=float,
                   help="fraction of each mode kept (svd/tucker/holistic-tucker) or the CP rank; "
                        "full rank when omitted")
    g.add_argument("--init-from", metavar="CKPT",
                   help="start from the real weights of a checkpoint or a --param dense run")


def _config(args: argparse.Namespace, **overrides):
    from bitfold.train.trainer import TrainConfig

    fields = dict(
        model=args.model, dataset=args.dataset, data_dir=args.data_dir,
        param=getattr(args, "param", "dense"), alpha=getattr(args, "alpha", "analytic"),
        rank=args.rank, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, step_size=args.step_size, gamma=args.gamma, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, augment=args.augment, dropout=args.dropout,
        init_from=args.init_from, device=args.device,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def cmd_train(args: argparse.Namespace) -> int:
    from bitfold.train.trainer import train

    out = args.out or f"runs/{args.model}-{args.dataset}"
    metrics = train(_config(args), out, resume=args.resume, progress=not args.quiet)
    if metrics:
        name = metrics.get("metric", "acc")
        print(f"{out}: test {name} {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs "
              f"in {metrics['wall_s']:.1f}s")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from bitfold.train.ablate import ablate

    out = args.out or f"runs/ablate-{args.model}-{args.dataset}"
    result = ablate(_config(args), out, seeds=args.seeds, params=args.params.split(","),
                    alphas=args.alphas.split(","), progress=not args.quiet)
    from bitfold.train.ablate import _table

    print(_table(result), end="")
    print(f"written: {out}/ablation.md, ablation.json, ablation.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitfold",
        description="Binary neural networks from factorized training to a verified FPGA accelerator.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("train", help="train a binary network into a run folder",
                       description="Train a binary network whose binary weights are parametrized "
                                   "by real-valued factorizations (Bulat et al.).")
    _train_options(p)
    _param_options(p)
    p.add_argument("--out", metavar="RUN", help="run folder (default: runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ablate", help="the paper's ablation grid over several seeds",
                       description="Train parametrization x alpha over N seeds; write a table "
                                   "(mean +- std) and a plot.")
    _train_options(p)
    _param_options(p, grid=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--params", default="dense,svd,tucker,holistic-tucker")
    p.add_argument("--alphas", default="analytic,learned")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/ablate-MODEL-DATASET)")
    p.set_defaults(func=cmd_ablate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from bitfold.artifacts import ArtifactError

    try:
        return args.func(args)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        print(f"bitfold {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bitfold {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
