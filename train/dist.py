"""The process group of a ``torchrun`` launch (gloo on CPU, nccl on GPU); one process otherwise."""

from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["Dist"]


class Dist:
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
