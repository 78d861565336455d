"""The training loop: optimizers, schedules, checkpoints, exact resume and DDP.

Every epoch draws its shuffle, augmentation and dropout randomness from a
generator seeded by ``(seed, epoch)``, and the checkpoint written at each
epoch's end holds the model, optimizer and scheduler state, so ``--resume``
continues bit-identically to an uninterrupted run.

Data-parallel training runs under ``torchrun``: each process takes its share
of every global batch (the global batch size stays ``batch_size``), gradients
are averaged by ``DistributedDataParallel`` over gloo (CPU) or nccl (GPU), and
rank 0 writes the artifacts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from bitfold.artifacts import ArtifactError, atomic_write, read_json, write_json

from .catalog import OPTIMIZERS, SCHEDULES
from .data import DATASETS, Dataset, augment, load_dataset
from .factorize import PARAMS
from .layers import parametrize_model
from .models import MODELS, BinarizeInput, build_model
from .quant import ALPHA_MODES
from .quantizers import check_quantizer, check_sparse_group

__all__ = ["SCHEMA", "TrainConfig", "evaluate", "input_threshold", "load_run", "read_checkpoint",
           "train"]

SCHEMA = 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as ``RUN/config.json``).

    ``input_bits`` is None (the data set's own multi-bit pixels) or 1: the
    network binarizes its input, ``+1`` where ``pixel >= input_threshold``
    (default: half the data set's full scale, see :func:`input_threshold`). Both are
    left out of the saved dict when None, so runs without them read and write
    as before.
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
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    augment: bool = False
    dropout: float = 0.0
    init_from: str | None = None
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        choices = {"model": tuple(MODELS), "dataset": DATASETS, "param": PARAMS,
                   "alpha": ALPHA_MODES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "step_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, not {self.lr!r}")
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

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("input_bits", "input_threshold"):  # absent unless set: older runs unchanged
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ArtifactError(f"unknown config keys {sorted(unknown)}")
        if data.get("quantizer") == "sparse" and "sparse_first" not in data:
            data = {**data, "sparse_first": True}  # sparse runs before the option: every layer
        return cls(**data)


# --------------------------------------------------------------------------- model set-up


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


def _load_float_weights(model: nn.Module, source: str) -> None:
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
    model = build_model(config.model, data.input_shape, data.num_outputs, config.dropout,
                        _input_binarizer(config, data))
    if config.init_from:
        _load_float_weights(model, config.init_from)
    return parametrize_model(model, config.param, config.alpha, config.rank, config.quantizer,
                             config.sparsity, config.bases, config.low_rank,
                             sparse_group=config.sparse_group, sparse_first=config.sparse_first)


def load_run(run_dir: str | Path, map_location: str = "cpu") -> tuple[nn.Module, TrainConfig, Dataset]:
    """Rebuild a trained model (eval mode) from ``RUN/checkpoint.pt``, with its config and data."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise ArtifactError(f"{run_dir}: no checkpoint.pt; run `bitfold train --out {run_dir}` first")
    ckpt = _run_checkpoint(path, map_location, RUN_KEYS)
    config = TrainConfig.from_dict(ckpt["config"])
    data = load_dataset(config.dataset, config.data_dir)
    model = make_model(dataclasses.replace(config, init_from=None), data)
    _load_state(model, ckpt["model"], path)
    return model.eval(), config, data


RUN_KEYS = ("config", "model")  # what compile and golden read
RESUME_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "history", "wall_s")


def _run_checkpoint(path: Path, map_location: str | torch.device,
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


def _load_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise ArtifactError(f"{path}: the weights do not fit the model of its config "
                            f"({first[:160]}); retrain") from None


# --------------------------------------------------------------------------- loop pieces


def _inputs(x: Tensor, data: Dataset, device: torch.device) -> Tensor:
    return x.to(device).float() * data.input_scale


def _loss(out: Tensor, y: Tensor, data: Dataset) -> Tensor:
    if data.task == "pose":
        return F.mse_loss(out, heatmaps(y, out.shape[-2:], data.input_shape[-2:]))
    return F.cross_entropy(out, y)


def heatmaps(joints: Tensor, size: tuple[int, int], image: tuple[int, int], sigma: float = 1.0) -> Tensor:
    """Gaussian target heatmaps ``(N, J, h, w)`` for joints given in image pixels."""
    scale = torch.tensor([size[0] / image[0], size[1] / image[1]], device=joints.device)
    pts = joints * scale
    rows = torch.arange(size[0], device=joints.device).view(1, 1, -1, 1).float()
    cols = torch.arange(size[1], device=joints.device).view(1, 1, 1, -1).float()
    d2 = (rows - pts[..., 0, None, None]) ** 2 + (cols - pts[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


def pckh(out: Tensor, joints: Tensor, head: Tensor, image: tuple[int, int], thr: float = 0.5) -> Tensor:
    """PCKh: fraction of joints predicted within ``thr`` x head size of the truth, per sample."""
    n, j, h, w = out.shape
    flat = out.reshape(n, j, -1).argmax(-1)
    pred = torch.stack([flat // w, flat % w], -1).float() + 0.5
    pred = pred * torch.tensor([image[0] / h, image[1] / w], device=out.device)
    dist = (pred - joints).norm(dim=-1)
    return (dist <= thr * head.view(-1, 1)).float().mean(dim=1)


def _correct(out: Tensor, y: Tensor, head: Tensor | None, data: Dataset) -> Tensor:
    if data.task == "pose":
        return pckh(out, y, head, data.input_shape[-2:]).sum()
    return (out.argmax(1) == y).sum()


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, device: torch.device | str = "cpu",
             batch_size: int = 512) -> float:
    """Test accuracy (classification) or PCKh@0.5 (pose) of ``model`` in eval mode.

    The parametrized weights are reconstructed once for the whole test set
    (``parametrize.cached``), not once per batch: the same values, fewer products.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    with parametrize.cached():
        for i in range(0, len(data.x_test), batch_size):
            x = _inputs(data.x_test[i:i + batch_size], data, device)
            y = data.y_test[i:i + batch_size].to(device)
            head = None if data.head_test is None else data.head_test[i:i + batch_size].to(device)
            total += _correct(model(x), y, head, data)
    model.train(was_training)
    return float(total) / len(data.x_test)


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, opt: torch.optim.Optimizer):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, config.step_size, config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


class _Dist:
    """The process group when launched by ``torchrun``; a single process otherwise."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = torch.device(device)
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            if not dist.is_initialized():
                dist.init_process_group(backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: Tensor) -> Tensor:
        if self.world > 1:
            import torch.distributed as dist

            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def _save_checkpoint(path: Path, blob: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


# --------------------------------------------------------------------------- train


def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train ``config`` into run folder ``out``; return the metrics written to ``metrics.json``.

    A training that fails before its first checkpoint leaves no run behind (the
    folder is removed if it made it, else its ``config.json``).

    Parameters
    ----------
    resume : bool
        Continue from ``out/checkpoint.pt`` (written at every epoch's end).
        The stored config must equal ``config`` except for ``epochs``, which
        may grow (or shrink, not below the epochs done): the cosine schedule is
        then re-planned for the new length from the epoch reached.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, record)`` after each epoch's
        checkpoint is written.
    force : bool
        Train afresh into ``out`` even when it holds a run with other options
        (refused otherwise); its checkpoint and metrics are replaced.
    """
    out = Path(out)
    if not resume:
        _check_run_dir(out, config, force)
    dist = _Dist(config.device)
    device = dist.device
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, config.data_dir)
    if data.task == "pose" and config.model != "hourglass":
        raise ValueError(f"dataset {config.dataset!r} is a pose task; use --model hourglass")
    if config.model == "hourglass" and data.task != "pose":
        raise ValueError("--model hourglass needs a pose dataset (synthetic-pose)")
    model = make_model(config, data).to(device)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    opt = _optimizer(config, model.parameters())
    sched = _scheduler(config, opt)

    history: list[dict[str, Any]] = []
    extended: list[dict[str, int]] = []  # --resume with another --epochs, each time
    start, wall_before, made_dir = 0, 0.0, False
    if resume:
        path = out / "checkpoint.pt"
        if not path.is_file():
            raise ArtifactError(f"{out}: nothing to resume (no checkpoint.pt)")
        ckpt = _run_checkpoint(path, device)
        changed = _changed(ckpt["config"], config.to_dict())
        if set(changed) - {"epochs"}:
            raise ValueError(f"--resume with a different configuration ({', '.join(changed)}); "
                             f"use the original options (only --epochs may change) or a new --out")
        if config.epochs < ckpt["epoch"]:
            raise ValueError(f"--resume --epochs {config.epochs}: {out} has already trained "
                             f"{ckpt['epoch']} epochs; give --epochs {ckpt['epoch']} or more")
        _load_state(model, ckpt["model"], path)
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start, history, wall_before = ckpt["epoch"], ckpt["history"], ckpt["wall_s"]
        extended = list(ckpt.get("extended", []))
        if changed:  # --epochs changed: the schedule is planned anew from here
            _replan(sched, opt, config)
            extended.append({"at_epoch": start, "from": ckpt["config"]["epochs"],
                             "to": config.epochs})  # config.json follows with the checkpoint
    elif dist.main:
        for stale in ("checkpoint.pt", "metrics.json") if force else ():  # another run's
            (out / stale).unlink(missing_ok=True)
        made_dir = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"schema": SCHEMA, **config.to_dict()})
    try:
        return _train_epochs(config, out, dist, data, model, net, opt, sched, start, history,
                             wall_before, extended, progress, on_epoch_end)
    except BaseException:
        if not resume and dist.main and not (out / "checkpoint.pt").is_file():
            if made_dir:  # nothing resumable was written: leave no run behind
                shutil.rmtree(out, ignore_errors=True)
            else:
                (out / "config.json").unlink(missing_ok=True)
        raise


def _changed(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in {*now, *stored} if stored.get(k) != now.get(k))


def _check_run_dir(out: Path, config: TrainConfig, force: bool) -> None:
    """Refuse to train afresh over a run with other options, unless ``force``."""
    if force or not ((out / "config.json").is_file() or (out / "checkpoint.pt").is_file()):
        return
    try:
        stored = read_json(out / "config.json", SCHEMA)
        stored.pop("schema")
        changed = _changed(stored, config.to_dict())
        what = f"a run with other options ({', '.join(changed)})"
    except ArtifactError:
        changed, what = ["?"], "a run whose config.json is missing or unreadable"
    if changed:
        raise ValueError(f"{out} holds {what}; pass --force to overwrite it, --resume to "
                         "continue it (only --epochs may change), or choose another --out")


def _replan(sched, opt: torch.optim.Optimizer, config: TrainConfig) -> None:
    """A resumed run's schedule for a new ``config.epochs``, from the epoch it stands at."""
    if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
        sched.T_max = config.epochs
        t = sched.last_epoch
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            group["lr"] = sched.eta_min + (base - sched.eta_min) * (
                1 + math.cos(math.pi * t / config.epochs)) / 2
        sched._last_lr = [group["lr"] for group in opt.param_groups]


def _train_epochs(config, out, dist, data, model, net, opt, sched, start, history, wall_before,
                  extended, progress, on_epoch_end) -> dict[str, Any]:
    device = dist.device

    n = len(data.x_train)
    steps = -(-n // config.batch_size)
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    for epoch in range(start, config.epochs):
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout
        perm = torch.randperm(n, generator=g)
        net.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not (progress and dist.main and sys.stderr.isatty()), leave=False,
                   mininterval=0.5)
        epoch_t0 = time.perf_counter()
        for step in bar:
            idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
            idx = idx[dist.rank::dist.world]
            x = data.x_train[idx]
            if config.augment:
                x = augment(x, g, shift=2 if x.shape[-1] >= 16 else 1, flip=config.dataset == "cifar10")
            x = _inputs(x, data, device)
            y = data.y_train[idx].to(device)
            outp = net(x)
            loss = _loss(outp, y, data)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            head = None if data.head_train is None else data.head_train[idx].to(device)
            with torch.no_grad():
                loss_sum += loss.detach() * len(idx)
                correct += _correct(outp.detach(), y, head, data)
            if step % 10 == 0 and not bar.disable:
                seen = min((step + 1) * config.batch_size, n)
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{float(correct) * dist.world / seen:.3f}")
        sched.step()
        train_loss = float(dist.mean(loss_sum)) * dist.world / n
        train_acc = float(dist.mean(correct)) * dist.world / n
        test_acc = evaluate(model, data, device)
        seconds = time.perf_counter() - epoch_t0
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                  "test_accuracy": test_acc, "lr": opt.param_groups[0]["lr"], "seconds": seconds}
        history.append(record)
        wall = wall_before + time.perf_counter() - t0
        metric_name = "PCKh" if data.task == "pose" else "acc"
        if dist.main:
            _save_checkpoint(out / "checkpoint.pt", {
                "schema": SCHEMA, "config": config.to_dict(), "epoch": epoch + 1,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "history": history, "wall_s": wall,
                **({"extended": extended} if extended else {}),
            })
            if extended:
                write_json(out / "config.json", {"schema": SCHEMA, **config.to_dict()})
            metrics = {"schema": SCHEMA, "task": data.task, "metric": metric_name,
                       "epochs": epoch + 1, "history": history, "test_accuracy": test_acc,
                       "wall_s": wall, "world_size": dist.world,
                       "threads": torch.get_num_threads(),  # repeats are bit-exact per count
                       **({"extended": extended} if extended else {})}
            write_json(out / "metrics.json", metrics)
            if progress:
                tqdm.write(f"epoch {epoch + 1:3d}/{config.epochs}  loss {train_loss:.4f}  "
                           f"train {metric_name} {train_acc:.4f}  test {metric_name} {test_acc:.4f}  "
                           f"({seconds:.1f}s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
    if not metrics and dist.main:
        metrics = read_json(out / "metrics.json", SCHEMA)
    dist.close()
    return metrics
