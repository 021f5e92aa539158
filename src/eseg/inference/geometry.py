"""Image geometry for inference: sizes, bilinear resizes, sliding windows, and how a network's
logits map back to an image (:func:`full_resolution_logits`, :func:`mask_upsample`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.padding import padded_size
from .lowres import Upsample


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


@dataclass(frozen=True)
class View:
    """Where an image is in a network input: the image's own ``size``, the ``view`` it was resized
    to (its size when not resized), at the top left of the network input of size ``canvas``,
    which the model pads to ``model_canvas`` (a multiple of its input stride) before its head."""

    size: tuple[int, int]
    view: tuple[int, int]
    canvas: tuple[int, int]
    model_canvas: tuple[int, int]

    @classmethod
    def of(cls, size, view, canvas, input_stride: int) -> "View":
        return cls(tuple(size), tuple(view), tuple(canvas), padded_size(*canvas, input_stride))


def full_resolution_logits(logits: torch.Tensor, canvas: tuple[int, int], input_stride: int, *,
                           align_corners: bool = False) -> torch.Tensor:
    """A ``lowres`` network's (N, C, h, w) logits of a ``canvas``-sized input -> the (N, C, *canvas)
    logits the model's forward gives: one bilinear resize to the padded canvas, then the crop."""
    padded = padded_size(*canvas, input_stride)
    full = F.interpolate(logits, size=padded, mode="bilinear", align_corners=align_corners)
    return full if padded == tuple(canvas) else full[..., : canvas[0], : canvas[1]]


def mask_upsample(view: View, low_size: tuple[int, int], align_corners: bool = False) -> Upsample | None:
    """The one bilinear resize whose argmax is an image's mask, from the low-resolution logits
    (``low_size``) of its network input:

    - not resized (``view.view == view.size``): the model's own forward, a resize to the padded
      canvas, cropped to the image (:meth:`Upsample.model_forward` for its own canvas);
    - resized to a view that fills the padded canvas (a fixed-size graph at a multiple of the
      stride): one resize straight to the image's size (:meth:`Upsample.resize_to`);
    - resized to a view that the model pads: one resize by the scale factor that maps the view's
      part of the logits onto the image (as ``F.interpolate(scale_factor=...,
      recompute_scale_factor=False)``), cropped to the image. With ``align_corners`` no one
      resize does that (torch ignores the factor there): None, and the caller resizes logits.
    """
    size, shown, model_canvas = view.size, view.view, view.model_canvas
    if shown == size:
        return Upsample(model_canvas, size, align_corners)
    if shown == model_canvas:
        return Upsample.resize_to(size, align_corners=align_corners)
    if align_corners:
        return None
    factors = tuple(size[i] * model_canvas[i] / (shown[i] * low_size[i]) for i in range(2))
    out = tuple(int(low_size[i] * factors[i]) for i in range(2))  # torch's floor(input size x factor)
    return Upsample(out, size, align_corners, factors)
