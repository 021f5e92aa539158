"""Choosing the torch device: ``auto`` is this process's CUDA device when there is one, else CPU."""
from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's CUDA device when there is one, else CPU."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {name!r} is not a device; use auto, cpu, mps, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asks for CUDA, which is not available here; use cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
