"""Single-process and torchrun (DDP) execution: which rank am I, on which device, and who writes.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`start` joins the process group with
the ``nccl`` backend on GPUs and ``gloo`` on CPU; each rank draws its own random crops (rank-sharded
sampling), gradients are averaged by DDP, and only rank 0 writes checkpoints, logs and the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ctdenoise.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True for the one process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: str) -> Runtime:
    """Pick the device (``auto``: the local GPU if any, else CPU) and join torchrun's process group if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Runtime(rank=rank, world_size=world_size, device=chosen)


def stop(runtime: Runtime) -> None:
    """Leave the process group (no-op for a single process)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    """Wait for every rank (no-op for a single process)."""
    if runtime.distributed:
        dist.barrier()


def mean_over_ranks(value: float, runtime: Runtime) -> float:
    """The mean of ``value`` over all ranks (``value`` itself for a single process)."""
    if not runtime.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / runtime.world_size


def _device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device", f"{device!r} asked for, but no CUDA GPU is available")
        return torch.device(device if ":" in device else f"cuda:{local_rank}")
    raise ConfigError("device", f"must be auto, cpu, cuda or cuda:N, got {device!r}")
