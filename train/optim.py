"""Optimization pieces of the training loop: parameter groups, optimizer, schedule, warm-up,
latent-weight clipping, the latent-range penalty and the classification losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainConfig
from .quant import BinarizeWeight

__all__ = ["LatentPenalty", "clip_params", "loss_fn", "make_optimizer", "make_scheduler",
           "param_groups", "replan", "warmup_factor"]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's parameters in three groups: ``weights`` (latent weights and factors),
    ``alphas`` (learned scales) and ``bn`` (batch norms' affine parameters), each in
    ``model.parameters()`` order."""
    bn = {id(p) for m in model.modules() if isinstance(m, _BATCH_NORMS) for p in m.parameters()}
    groups: dict[str, list[nn.Parameter]] = {"weights": [], "alphas": [], "bn": []}
    for name, p in model.named_parameters():
        kind = "bn" if id(p) in bn else "alphas" if name.endswith(".alpha") else "weights"
        groups[kind].append(p)
    return groups


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or RMSprop over the model's parameters; the scales at ``lr * alpha_lr``, the batch
    norms at ``lr * bn_lr``. With both factors 1 it is one group, as it always was."""
    params: list | list[dict] = list(model.parameters())
    if (config.alpha_lr, config.bn_lr) != (1.0, 1.0):
        rates = {"weights": 1.0, "alphas": config.alpha_lr, "bn": config.bn_lr}
        params = [{"params": ps, "lr": config.lr * rates[kind]}
                  for kind, ps in param_groups(model).items() if ps]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, opt: torch.optim.Optimizer):
    """The per-epoch schedule over ``config.epochs`` (warm-up is applied per step on top)."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, config.step_size, config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def replan(sched, opt: torch.optim.Optimizer, config: TrainConfig) -> None:
    """A resumed run's schedule for a new ``config.epochs``, from the epoch it stands at."""
    if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
        sched.T_max = config.epochs
        t = sched.last_epoch
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            group["lr"] = sched.eta_min + (base - sched.eta_min) * (
                1 + math.cos(math.pi * t / config.epochs)) / 2
        sched._last_lr = [group["lr"] for group in opt.param_groups]


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The warm-up's factor on the schedule's rate at global step ``step`` (0-based): rising
    linearly to 1 at ``warmup_steps``, then 1."""
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


def clip_params(model: nn.Module) -> list[Tensor]:
    """The latent weights ``--clip`` clamps: a dense parametrization's real weight (factors
    and scales are not clipped)."""
    return [p for name, p in model.named_parameters()
            if name.endswith("parametrizations.weight.original")]


class LatentPenalty:
    """``--latent-penalty P``: ``P * sum_l mean(relu(|W_l| - 1) ** 2)`` over the binary layers.

    ``W_l`` is the real weight each binarization link receives (a factorization's
    reconstruction, or a dense latent weight), caught by a forward hook as the training
    forward builds it, so nothing is reconstructed twice. The weight's straight-through
    gradient is zero where ``|W| > 1``; a dense latent weight is kept inside by ``--clip 1``,
    a reconstruction cannot be clamped, so this pulls it back instead. Only forwards with
    gradients enabled are caught (not the evaluation).
    """

    def __init__(self, model: nn.Module, weight: float) -> None:
        self.weight = weight
        self.terms: list[Tensor] = []
        self.handles = [m.register_forward_hook(self._catch) for m in model.modules()
                        if isinstance(m, BinarizeWeight)]

    def _catch(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if torch.is_grad_enabled():
            self.terms.append(torch.relu(inputs[0].abs() - 1.0).square().mean())

    def take(self) -> Tensor | float:
        """The penalty of the forwards since the last call (0.0 when none), and forget them."""
        terms, self.terms = self.terms, []
        return self.weight * torch.stack(terms).sum() if terms else 0.0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def loss_fn(out: Tensor, y: Tensor, kind: str) -> Tensor:
    """Cross-entropy, or the squared hinge ``mean(max(0, 1 - t * out) ** 2)`` with targets
    ``t`` = +1 for the true class and -1 elsewhere (BinaryNet's and BNN-PYNQ's loss)."""
    if kind == "cross-entropy":
        return F.cross_entropy(out, y)
    target = torch.full_like(out, -1.0).scatter_(1, y[:, None], 1.0)
    return torch.clamp(1.0 - out * target, min=0.0).square().mean()
