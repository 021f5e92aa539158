"""Batch-norm statistics the trainer evaluates with: precise BN, and identical buffers on every rank.

The running statistics themselves (bias correction, momentum, the layer list) are the model's:
:mod:`eseg.models.norm`; freezing BN is the model's own ``train()``
(:meth:`eseg.models.base.SegmentationModel.freeze_batchnorm`).

:func:`precise_bn` is precise BN (detectron2's PreciseBN), the one both the trainer's hook and
``eseg reproduce`` call: plain averages over N training batches of the current weights
(:func:`recompute_bn_statistics`). The batches are the first N of the training set in the order
and augmentation of seed ``train.seed + PRECISE_BN_SEED_OFFSET``: never the training batches,
the training order and random streams untouched (resume stays exact), and the same N batches
whatever the step, so the statistics depend on the weights alone.

Under DDP every process updates its own BN buffers (DDP only broadcasts rank 0's before each
forward), so :func:`sync_bn_buffers` averages them before each evaluation and checkpoint: the
mean of the means and the pooled variance, which is what one process seeing every process's
images would estimate. Averaging uses every rank's images; a broadcast of rank 0's would throw
the other ranks' away.
"""
from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
import torch.distributed as dist
from torch import nn

from ..evaluation.context import preserved_modes
from ..models.norm import batchnorm_layers

__all__ = ["PRECISE_BN_SEED_OFFSET", "precise_bn", "recompute_bn_statistics", "sync_bn_buffers"]

PRECISE_BN_SEED_OFFSET = 1_000_003  # precise BN's batches: another order and augmentation than training's


def precise_bn(trainer, num_batches: int) -> int:
    """Recompute the BN statistics of ``trainer.eval_model`` over ``num_batches`` training
    batches drawn with ``train.seed + PRECISE_BN_SEED_OFFSET`` from that order's first batch.
    Returns the number of batches used."""
    seed = trainer.cfg.train.seed + PRECISE_BN_SEED_OFFSET
    batches = iter(trainer.train_loader(start_step=0, seed=seed))
    try:
        return recompute_bn_statistics(trainer.eval_model, islice(batches, num_batches), trainer.info.device)
    finally:
        del batches  # stops the loader's workers now


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable[dict], device: torch.device) -> int:
    """Replace every BN layer's running statistics by the plain average over ``batches``
    (items with an ``image`` batch), as ``torch.optim.swa_utils.update_bn`` computes it: the
    model in training mode, frozen BN layers recomputed too. Every module's mode and every
    layer's momentum are as before afterwards. Returns the number of batches."""
    layers = [layer for _, layer in batchnorm_layers(model)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    count = 0
    with preserved_modes(model):
        model.train()
        for layer in layers:
            layer.train()  # a frozen layer as well: precise BN replaces what it holds
            layer.reset_running_stats()
            layer.momentum = None  # None: a cumulative average
        try:
            for batch in batches:
                model(batch["image"].to(device))
                count += 1
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
    return count


@torch.no_grad()
def sync_bn_buffers(model: nn.Module) -> None:
    """Average the BN running statistics over the process group (no-op without one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for _, module in batchnorm_layers(model):
        if module.running_mean is None:
            continue
        mean, var = module.running_mean, module.running_var
        stacked = torch.stack([mean, var + mean * mean]).to(torch.float64)
        dist.all_reduce(stacked)
        stacked /= world
        pooled_mean, second_moment = stacked[0], stacked[1]
        mean.copy_(pooled_mean.to(mean.dtype))
        var.copy_((second_moment - pooled_mean * pooled_mean).clamp_min(0).to(var.dtype))
        dist.broadcast(mean, 0)  # bitwise identical on every rank, whatever the reduction order
        dist.broadcast(var, 0)
