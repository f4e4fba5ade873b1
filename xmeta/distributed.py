"""Several processes (GPUs or CPU workers) meta-training one model, through accelerate.

Every process samples the same meta-batch from the same seed; process r runs the inner loops of
episodes r, r + world, ... and the local meta-gradients (each already divided by the full
meta-batch size) are summed across processes, so every process holds the same gradient and takes
the same AdamW step. Loss, accuracy and the stop flag ride along in the same all-reduce, so every
process logs the same numbers and stops after the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


@dataclass
class Processes:
    """This process's place among ``world`` processes; the default is a single process on the CPU."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def start(cls) -> Processes:
        """Join the processes `accelerate launch` / `torchrun` started (or stand alone when none did)."""
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        return cls(rank=accelerator.process_index, world=accelerator.num_processes, device=accelerator.device)

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs, the progress bar and the model folder."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's share of a meta-batch: items rank, rank + world, ..."""
        return list(items[self.rank :: self.world])

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes, in place (a no-op for one process)."""
        if self.world > 1:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def sum_gradients(self, params: Sequence[torch.nn.Parameter], extras: Sequence[float]) -> list[float]:
        """All-reduce the params' ``.grad`` (missing ones count as zero) and ``extras`` in one call."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params]
                         + [torch.tensor(list(extras), dtype=params[0].grad.dtype, device=params[0].grad.device)])
        self.sum_(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()
        return flat[offset:].tolist()

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Give every process the main process's values (θ must start identical everywhere)."""
        if self.world > 1:
            for tensor in tensors:
                torch.distributed.broadcast(tensor, src=0)

    def close(self) -> None:
        """Leave the process group so that the launcher sees a clean exit."""
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
