"""The training loop: exact resume, the per-step pieces and DDP.

The run's options come from :class:`~bitfold.train.config.TrainConfig`, resolved
against its model's recipe (:mod:`bitfold.train.recipes`); optimizer, schedule,
warm-up, clipping and losses are in :mod:`bitfold.train.optim`, checkpoint files
in :mod:`bitfold.train.checkpoint`.

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

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from bitfold.artifacts import ArtifactError, read_json, write_json
from bitfold.machine import machine

from .catalog import POSE_MODELS
from .checkpoint import (
    SCHEMA,
    load_state,
    read_checkpoint,
    run_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig, upgrade
from .data import Dataset, augment, first_train, load_dataset
from .dense_start import record_dense_phase, start_from_dense
from .dist import Dist
from .model_setup import input_threshold, load_run, make_model
from .optim import (
    LatentPenalty,
    clip_params,
    loss_fn,
    make_optimizer,
    make_scheduler,
    replan,
    warmup_factor,
)

__all__ = ["SCHEMA", "TrainConfig", "evaluate", "input_threshold", "load_run", "make_model",
           "read_checkpoint", "train"]


# --------------------------------------------------------------------------- loop pieces


def _inputs(x: Tensor, data: Dataset, device: torch.device) -> Tensor:
    return x.to(device).float() * data.input_scale


def _loss(out: Tensor, y: Tensor, data: Dataset, kind: str) -> Tensor:
    if data.task == "pose":
        return F.mse_loss(out, heatmaps(y, out.shape[-2:], data.input_shape[-2:]))
    return loss_fn(out, y, kind)


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
    folder is removed if it made it, else its ``config.json``). With ``dense_start``
    the dense phase trains first, into ``out/dense`` (:mod:`bitfold.train.dense_start`).
    ``out/machine.json`` names the machine that trained it (each, when a resumed run moved).

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
    config = config.resolved()
    if not resume:
        _check_run_dir(out, config, force)
    build, resume = start_from_dense(config, out, resume, progress, force, train)
    dist = Dist(config.device)
    device = dist.device
    torch.manual_seed(config.seed)
    data = first_train(load_dataset(config.dataset, config.data_dir), config.train_subset)
    _check_task(config, data)
    model, net, opt, sched = _setup(build, data, dist)

    history: list[dict[str, Any]] = []
    extended: list[dict[str, int]] = []  # --resume with another --epochs, each time
    start, wall_before, made_dir = 0, 0.0, False
    if resume:
        start, history, wall_before, extended = _resume(out, config, device, model, opt, sched)
    elif dist.main:
        made_dir = _fresh_run(out, config, force)
    try:
        metrics = _train_epochs(config, out, dist, data, model, net, opt, sched, start, history,
                                wall_before, extended, progress, on_epoch_end)
        return record_dense_phase(config, out, metrics) if dist.main else metrics
    except BaseException:
        if not resume and dist.main and not (out / "checkpoint.pt").is_file():
            if made_dir:  # nothing resumable was written: leave no run behind
                shutil.rmtree(out, ignore_errors=True)
            else:
                (out / "config.json").unlink(missing_ok=True)
        raise


def _setup(config: TrainConfig, data: Dataset, dist: Dist):
    """The model (built from ``config``), the network the steps run (DDP's wrapper under
    ``torchrun``), the optimizer and the schedule."""
    model = make_model(config, data).to(dist.device)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    opt = make_optimizer(config, model)
    return model, net, opt, make_scheduler(config, opt)


def _check_task(config: TrainConfig, data: Dataset) -> None:
    """Refuse a pose model on a classification data set, and the other way round."""
    if data.task == "pose" and config.model not in POSE_MODELS:
        raise ValueError(f"dataset {config.dataset!r} is a pose task; use --model "
                         f"{' or '.join(POSE_MODELS)}")
    if config.model in POSE_MODELS and data.task != "pose":
        raise ValueError(f"--model {config.model} needs a pose dataset (synthetic-pose)")


def _resume(out: Path, config: TrainConfig, device: torch.device, model: nn.Module, opt,
            sched) -> tuple[int, list[dict[str, Any]], float, list[dict[str, int]]]:
    """Load ``out/checkpoint.pt`` into ``model``, ``opt`` and ``sched``; return the epoch
    reached, the history, the seconds trained so far and the ``--epochs`` changes."""
    path = out / "checkpoint.pt"
    if not path.is_file():
        raise ArtifactError(f"{out}: nothing to resume (no checkpoint.pt)")
    ckpt = run_checkpoint(path, device)
    changed = changed_fields(ckpt["config"], config.to_dict())
    if set(changed) - {"epochs"}:
        raise ValueError(f"--resume with a different configuration ({', '.join(changed)}); "
                         f"use the original options (only --epochs may change) or a new --out")
    if config.epochs < ckpt["epoch"]:
        raise ValueError(f"--resume --epochs {config.epochs}: {out} has already trained "
                         f"{ckpt['epoch']} epochs; give --epochs {ckpt['epoch']} or more")
    load_state(model, ckpt["model"], path)
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    start, history, wall_before = ckpt["epoch"], ckpt["history"], ckpt["wall_s"]
    extended = list(ckpt.get("extended", []))
    if changed:  # --epochs changed: the schedule is planned anew from here
        replan(sched, opt, config)
        extended.append({"at_epoch": start, "from": ckpt["config"]["epochs"],
                         "to": config.epochs})  # config.json follows with the checkpoint
    return start, history, wall_before, extended


def _fresh_run(out: Path, config: TrainConfig, force: bool) -> bool:
    """Start ``out`` afresh (another run's checkpoint and metrics removed with ``force``) with
    its config.json; return whether the folder was made here."""
    for stale in ("checkpoint.pt", "metrics.json", "machine.json") if force else ():  # another run's
        (out / stale).unlink(missing_ok=True)
    made_dir = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"schema": SCHEMA, **config.to_dict()})
    return made_dir


def changed_fields(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The config fields in which a saved run (``stored``) and ``now`` differ."""
    # an older run's config: the fields it lacks as it trained (and those to_dict leaves out)
    stored, now = upgrade(stored), upgrade(now)
    return sorted(k for k in {*now, *stored} if stored.get(k) != now.get(k))


def _check_run_dir(out: Path, config: TrainConfig, force: bool) -> None:
    """Refuse to train afresh over a run with other options, unless ``force``."""
    if force or not ((out / "config.json").is_file() or (out / "checkpoint.pt").is_file()):
        return
    try:
        stored = read_json(out / "config.json", SCHEMA)
        stored.pop("schema")
        changed = changed_fields(stored, config.to_dict())
        what = f"a run with other options ({', '.join(changed)})"
    except ArtifactError:
        changed, what = ["?"], "a run whose config.json is missing or unreadable"
    if changed:
        raise ValueError(f"{out} holds {what}; pass --force to overwrite it, --resume to "
                         "continue it (only --epochs may change), or choose another --out")


def _train_epochs(config, out, dist, data, model, net, opt, sched, start, history, wall_before,
                  extended, progress, on_epoch_end) -> dict[str, Any]:
    device = dist.device
    n = len(data.x_train)
    clipped = clip_params(model) if config.clip else []
    penalty = LatentPenalty(model, config.latent_penalty) if config.latent_penalty else None
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    for epoch in range(start, config.epochs):
        loss_sum, correct, epoch_t0 = _epoch(config, dist, data, net, opt, epoch, clipped,
                                             penalty, progress)
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
            if epoch == start:  # this invocation trains: the machine it trains on
                _record_machine(config, out)
            save_checkpoint(out / "checkpoint.pt", {
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


def machine_words(config: TrainConfig) -> str:
    """The machine a run trains on, in words: CPU, cores, torch threads, and the GPU where
    it uses one."""
    info = machine()
    words = f"{info['cpu']}, {info['cores']} cores, {torch.get_num_threads()} torch threads"
    if config.device.startswith("cuda") and torch.cuda.is_available():
        words += f", {torch.cuda.get_device_name(torch.device(config.device))}"
    return words


def _record_machine(config: TrainConfig, out: Path) -> None:
    """Write ``out/machine.json``: the machine this invocation trains on, after those of the
    invocations before it where a resumed run moved machines (``"A; B"``)."""
    now = machine_words(config)
    try:
        before = str(read_json(out / "machine.json", SCHEMA)["machine"]).split("; ")
    except (ArtifactError, KeyError):
        before = []
    if now not in before:
        write_json(out / "machine.json", {"schema": SCHEMA, "machine": "; ".join([*before, now])})


def _epoch(config, dist, data, net, opt, epoch: int, clipped: list,
           penalty: LatentPenalty | None, progress: bool) -> tuple[Tensor, Tensor, float]:
    """One epoch's steps (warm-up, clipping, the latent penalty); return the summed loss (the
    task's, without the penalty) and correct count of this rank's samples, and when the
    epoch's timing started."""
    device = dist.device
    n = len(data.x_train)
    steps = -(-n // config.batch_size)
    warm_steps = config.warmup * steps
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
    epoch_lrs = [group["lr"] for group in opt.param_groups]  # the schedule's, this epoch
    for step in bar:
        if epoch * steps + step < warm_steps:
            factor = warmup_factor(epoch * steps + step, warm_steps)
            for group, lr in zip(opt.param_groups, epoch_lrs, strict=True):
                group["lr"] = lr * factor
        idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
        idx = idx[dist.rank::dist.world]
        x = data.x_train[idx]
        if config.augment:
            x = augment(x, g, shift=2 if x.shape[-1] >= 16 else 1, flip=config.dataset == "cifar10")
        x = _inputs(x, data, device)
        y = data.y_train[idx].to(device)
        outp = net(x)
        loss = _loss(outp, y, data, config.loss)
        opt.zero_grad(set_to_none=True)
        (loss + penalty.take() if penalty is not None else loss).backward()
        opt.step()
        if clipped:
            with torch.no_grad():
                for p in clipped:
                    p.clamp_(-config.clip, config.clip)
        head = None if data.head_train is None else data.head_train[idx].to(device)
        with torch.no_grad():
            loss_sum += loss.detach() * len(idx)
            correct += _correct(outp.detach(), y, head, data)
        if step % 10 == 0 and not bar.disable:
            seen = min((step + 1) * config.batch_size, n)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{float(correct) * dist.world / seen:.3f}")
    for group, lr in zip(opt.param_groups, epoch_lrs, strict=True):
        group["lr"] = lr  # the warm-up's scaling undone: the schedule steps from its own
    return loss_sum, correct, epoch_t0
