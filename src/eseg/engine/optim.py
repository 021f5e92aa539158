"""Optimizers and learning-rate schedules (the weight EMA is :mod:`eseg.engine.ema`)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on conv/linear kernels only. Every parameter with <= 1 dim is a
    norm scale/shift, a bias or a BiFPN fusion weight, and decaying those only hurts."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, train_cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, train_cfg.weight_decay)
    name = train_cfg.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=tuple(train_cfg.betas))
    raise ConfigError(f"train.optimizer='{train_cfg.optimizer}' is not supported; use sgd or adamw")


def lr_factor(step: int, *, total_steps: int, schedule: str, power: float = 0.9, warmup_steps: int = 0,
              warmup_ratio: float = 0.1, min_factor: float = 0.0) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): a linear warmup from
    ``warmup_ratio`` to 1, then poly or cosine decay from 1 down to ``min_factor``."""
    if step < warmup_steps:
        return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "poly":
        decay = (1.0 - progress) ** power
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ConfigError(f"train.schedule='{schedule}' is not supported; use poly, cosine or constant")
    return min_factor + (1.0 - min_factor) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr schedule of ``train_cfg`` (a checked :class:`eseg.config.TrainSection`)."""
    settings = dict(
        total_steps=train_cfg.steps,
        schedule=train_cfg.schedule,
        power=train_cfg.poly_power,
        warmup_steps=train_cfg.warmup_steps,
        warmup_ratio=train_cfg.warmup_ratio,
        min_factor=train_cfg.min_lr / train_cfg.lr if train_cfg.lr > 0 else 0.0,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, **settings))


def __getattr__(name: str):
    if name == "ModelEMA":  # moved to eseg.engine.ema; this path works for one release
        import warnings

        from .ema import ModelEMA

        warnings.warn("eseg.engine.optim.ModelEMA has moved to eseg.engine.ema.ModelEMA", DeprecationWarning,
                      stacklevel=2)
        return ModelEMA
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
