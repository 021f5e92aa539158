"""Batch-norm statistics the trainer reports with: precise BN and identical buffers on every rank.

The running statistics themselves are bias-corrected in the model (:mod:`eseg.models.norm`).
:func:`recompute_bn_statistics` is precise BN (detectron2's PreciseBN): plain averages over N
training batches of the current weights. Under DDP every process updates its own BN buffers
(DDP only broadcasts rank 0's before each forward), so :func:`sync_bn_buffers` averages them
before each evaluation and checkpoint: the mean of the means and the pooled variance, which is
what one process seeing every process's images would estimate. Averaging uses every rank's
images; a broadcast of rank 0's would throw the other ranks' away.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from ..models.norm import batchnorm_layers, set_bn_momentum

__all__ = ["recompute_bn_statistics", "set_bn_momentum", "set_train_mode", "sync_bn_buffers"]


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable[dict], device: torch.device) -> int:
    """Replace every BN layer's running statistics by the average over ``batches`` (dataset
    items with an ``image`` batch), with ``torch.optim.swa_utils.update_bn``. Returns the count."""
    images = [batch["image"] for batch in batches]
    torch.optim.swa_utils.update_bn(images, model, device=device)
    return len(images)


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


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """``model.train()``, keeping BN layers on their running statistics when ``freeze_bn``."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
