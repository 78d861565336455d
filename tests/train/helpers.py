"""Helpers shared by the trainer's tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bitfold.train.layers import binary_layers


def mix_alpha_signs(model: torch.nn.Module, g: torch.Generator, zero_first: bool = False) -> None:
    """Every binary layer's alphas: a third negative, magnitudes in 0.2 .. 1.2 (drawn from
    ``g``, layer by layer); ``zero_first`` also zeroes each layer's first alpha."""
    with torch.no_grad():
        for _, layer in binary_layers(model):
            alpha = layer.binarizer.alpha
            sign = torch.where(torch.rand(alpha.shape, generator=g) < 1 / 3, -1.0, 1.0)
            alpha.copy_(sign * (0.2 + torch.rand(alpha.shape, generator=g)))
            if zero_first:
                alpha[0] = 0.0


def weights_sha256(run: Path) -> str:
    """SHA-256 over every tensor of ``RUN/checkpoint.pt``'s model, in key order."""
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().numpy().tobytes())
    return h.hexdigest()
