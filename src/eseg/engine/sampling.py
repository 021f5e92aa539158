"""Resumable, DDP-consistent training data order and augmentation randomness.

The order of samples is ``DistributedSampler``'s seeded per-epoch permutation, cut into global
batches; each process takes its share of every global batch. Each sample's augmentation is
drawn from generators seeded by ``(seed, epoch, index)`` alone, so it does not depend on the
number of loader workers, the number of processes, or whether the run was interrupted and
resumed: step ``s`` always sees the same pixels.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class SeededSamples(Dataset):
    """Wraps a dataset so that ``ds[(index, seed)]`` draws its random augmentation from ``seed``.

    The global Python, NumPy and torch generators are seeded for the call and restored after it,
    so the caller's own random streams are untouched (this matters with ``num_workers=0``).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless per-process batches of ``(index, sample_seed)`` keys starting at ``start_step``.

    One epoch is ``len(dataset) // global_batch`` steps (the incomplete last batch is dropped);
    step ``s`` belongs to epoch ``s // steps_per_epoch``.
    """

    def __init__(self, dataset_size: int, batch_size: int, *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, start_step: int = 0) -> None:
        self.dataset_size = dataset_size
        self.batch_size = batch_size  # per process
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.steps_per_epoch = dataset_size // (batch_size * num_replicas)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training set has {dataset_size} images, fewer than one global batch of "
                f"{batch_size * num_replicas}; lower train.batch_size or add images"
            )

    def epoch_indices(self, epoch: int) -> list[int]:
        """This process's indices for ``epoch``: its share of each global batch, in order."""
        sampler = DistributedSampler(
            range(self.dataset_size), num_replicas=self.num_replicas, rank=self.rank,
            shuffle=True, seed=self.seed, drop_last=True,
        )
        sampler.set_epoch(epoch)
        # DistributedSampler deals the permutation round-robin, so the first `batch_size` indices
        # of every rank together are the first `batch_size * num_replicas` of the permutation.
        return list(sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            indices = self.epoch_indices(epoch)
            for step in range(skip, self.steps_per_epoch):
                batch = indices[step * self.batch_size:(step + 1) * self.batch_size]
                yield [(i, sample_seed(self.seed, epoch, i)) for i in batch]
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:
        return self.steps_per_epoch
