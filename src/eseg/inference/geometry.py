"""Image geometry for inference: sizes, bilinear resizes and sliding windows."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def pair(value, name: str) -> tuple[int, int] | None:
    """None, an int, or (H, W) -> (H, W) of positive ints."""
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ConfigError(f"{name} must be a positive int or (H, W), got {value}")
    return value


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (C, H, W) tensor (align_corners=False, like mmsegmentation)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    if scale == 1.0:
        return size
    return max(1, int(size[0] * scale + 0.5)), max(1, int(size[1] * scale + 0.5))


def slide_windows(height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) windows covering the image; windows never leave it (the last one is
    shifted back to end at the border, mmsegmentation's grid) and shrink to the image where it
    is smaller than ``crop``."""
    crop_h, crop_w = crop
    stride_h, stride_w = stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for r in range(rows):
        y1 = max(min(r * stride_h, height - crop_h), 0)
        for c in range(cols):
            x1 = max(min(c * stride_w, width - crop_w), 0)
            windows.append((y1, min(y1 + crop_h, height), x1, min(x1 + crop_w, width)))
    return windows
