"""Inference split over torchrun ranks: ``torchrun --nproc_per_node N -m eseg.cli predict ...``.

Rank r of N takes inputs r, r + N, r + 2N, ... of the sorted list, so no two ranks write one file;
every rank sees the same list (the source on storage every node reads). Rank 0 decides what
concerns all (the output folder, the legend, the summary); a few small picklable values travel
between ranks through ``torch.distributed`` (gloo is enough: they are objects, not tensors).
Without torchrun's environment there is one shard, rank 0 of 1, and nothing travels. On CPU each
rank keeps to its own share of the machine's cores (:meth:`Shard.keep_to_own_cores`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shard:
    """This process's place among the ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> "Shard":
        """What torchrun's RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE say (one shard without them)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(rank=int(os.environ.get("RANK", "0")), world_size=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence) -> list:
        """This rank's items: every ``world_size``-th from ``rank``."""
        return list(items[self.rank :: self.world_size])

    def own_cores(self) -> list[int]:
        """This rank's share of the cores this process may use: local rank k of n takes the k-th
        n-th of them (none where there are fewer cores than local ranks, or no affinity to read)."""
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        share = len(cores) // self.local_world_size
        return cores[self.local_rank * share : (self.local_rank + 1) * share]

    def cpu_threads(self) -> int:
        """This rank's share of the machine's cores (at least one)."""
        return max(1, len(self.own_cores()) or (os.cpu_count() or 1) // self.local_world_size)

    def keep_to_own_cores(self) -> None:
        """Run this rank (and the threads it starts) on :meth:`own_cores`. OpenVINO pins its threads
        to the first cores it may use, so two ranks left alone share one core: measured, 2 ranks x 1
        thread ran at half speed (docs/benchmark.md)."""
        cores = self.own_cores()
        if self.distributed and cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)

    def join(self) -> None:
        """Join torchrun's process group (gloo: only small objects travel) when there is one."""
        import torch.distributed as dist

        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="gloo", rank=self.rank, world_size=self.world_size)

    def leave(self) -> None:
        import torch.distributed as dist

        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def everyone(self, value: Any) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def first_problem(self, message: str | None) -> str | None:
        """The first rank's problem (a message) when any rank has one, on every rank: all ranks
        stop together rather than some waiting for the others forever."""
        return next((m for m in self.everyone(message) if m), None)
