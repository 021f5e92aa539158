"""The one padding rule of eseg.

Every image is padded at the bottom and right with zeros (after normalization, so zero is the
dataset mean) up to the next multiple of the model's ``input_stride``: the backbone's output
stride (32 for the usual CNNs), not ``2**max_level``; the pyramid above the backbone takes ceil
sizes instead. The model applies it internally and batched inference applies the same function
before stacking, so an image is computed on the same canvas whether it arrives alone or with
others.

``static_shapes`` is what export passes down the model's forward when it traces a fixed-size
graph: there, sizes are constants of the graph and a zero pad or an identity crop is left out.
A dynamic graph needs them (their amounts depend on its input), so while tracing without it they
stay. Outside tracing it changes nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def shape_ops_needed(static_shapes: bool = False) -> bool:
    """Whether size-dependent ops must stay in the graph even when they do nothing now: while
    tracing a graph whose input size is not fixed."""
    return torch.jit.is_tracing() and not static_shapes


def spatial_size(x: torch.Tensor, static_shapes: bool = False):
    """(H, W) of ``x`` for a resize: traced from the shape in a dynamic graph, plain numbers in a
    fixed-size one (so the graph holds constants instead of shape arithmetic)."""
    if static_shapes:
        return int(x.shape[-2]), int(x.shape[-1])
    return x.shape[-2:]


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The canvas (H, W) an image of this size is padded to."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0, *, static_shapes: bool = False) -> torch.Tensor:
    """Pad the last two dims of ``x`` at the bottom/right to a multiple of ``multiple``."""
    height, width = x.shape[-2], x.shape[-1]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0 and not shape_ops_needed(static_shapes):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), value=value)


def pad_to_size(x: torch.Tensor, size: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """Pad the last two dims of ``x`` at the bottom/right to exactly ``size``."""
    pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} to the smaller size {tuple(size)}")
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), value=value)
