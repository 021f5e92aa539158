"""torchrun / DistributedDataParallel helpers.

``torchrun --nproc_per_node N -m eseg.cli train CONFIG`` sets RANK, LOCAL_RANK and WORLD_SIZE;
:func:`init_distributed` reads them and starts a process group (nccl on CUDA, gloo on CPU).
Without them everything runs as a single process of rank 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group if the environment describes one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over all processes (a copy; the input is untouched)."""
    value = value.detach().clone()
    if info.distributed:
        dist.all_reduce(value)
        value /= info.world_size
    return value


def broadcast_from_main(value, info: DistInfo):
    """Rank 0's ``value`` on every process (picklable values; the value itself without DDP)."""
    if not info.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def any_process(flag: bool, info: DistInfo) -> bool:
    """True on every process when ``flag`` is true on any (a MAX all-reduce of one number; with
    gloo on CPU about 0.5 ms a call)."""
    if not info.distributed:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
