"""Joint image/mask augmentation on torchvision.transforms.v2.

Both builders return a callable ``(image, mask) -> (image_tensor, mask_tensor)`` taking a uint8
(H, W, 3) numpy image and an integer (H, W) numpy mask, and giving a float32 (3, H, W) normalized
image and an int64 (H, W) mask. The image and mask travel together as ``tv_tensors.Image`` and
``tv_tensors.Mask`` so every geometric step applies the same parameters to both; photometric steps
and normalization touch the image only. Randomness comes from torch's global generator, so seeding
torch (and each DataLoader worker) makes the augmentation reproducible.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError, DataError


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range`` (relative to the input size).

    The image is resized bilinearly with antialiasing, the mask with pixel-centre nearest
    neighbour (NEAREST_EXACT), which samples the same positions as the bilinear image resize.
    """

    def __init__(self, scale_range: Sequence[float]):
        super().__init__()
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ConfigError(f"scale_range must be 0 < low <= high, got {tuple(scale_range)}")
        self.scale_range = (low, high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = next(x for x in flat_inputs if isinstance(x, tv_tensors.Image))
        height, width = F.get_size(image)
        scale = float(torch.empty(()).uniform_(*self.scale_range))
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return F.resize(inpt, params["size"], interpolation=InterpolationMode.NEAREST_EXACT)
        if isinstance(inpt, tv_tensors.Image):
            return F.resize(inpt, params["size"], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return inpt


class JointTransform:
    """Wrap a v2 pipeline so it takes numpy (image, mask) and returns plain tensors."""

    def __init__(self, pipeline: v2.Transform):
        self.pipeline = pipeline

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image_t = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        mask_t = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)))
        image_t, mask_t = self.pipeline(image_t, mask_t)
        return image_t.as_subclass(torch.Tensor), mask_t.as_subclass(torch.Tensor).long()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) with ``(x / 255 - mean) / std``: the one normalisation
    of eseg (training, evaluation and every inference backend). A uint8 channel has 256 values,
    so each is looked up in a table that :func:`normalize_tensor` computed: bit for bit the same
    floats, a third of the time (it runs on every image ``eseg predict`` reads)."""
    table = _normalized_values(tuple(mean), tuple(std))
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DataError(f"expected an RGB image of shape (H, W, 3), got shape {pixels.shape}; read it with "
                        "eseg.data.io.as_rgb (which converts grey, palette and RGBA images)")
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], pixels[..., channel], out=out[channel])
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=16)
def _normalized_values(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: every uint8 value of each channel, normalised by :func:`normalize_tensor`."""
    values = torch.arange(256, dtype=torch.float32).div_(255.0).expand(3, 256).reshape(3, 256, 1)
    return normalize_tensor(values, mean, std).reshape(3, 256).numpy()


def normalize_tensor(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float (..., 3, H, W) in [0, 1] -> normalized."""
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean_t) / std_t


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalized (3, H, W) tensor back to uint8 (H, W, 3), for pictures."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels = (image.float().cpu() * std_t + mean_t).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


class Normalize(v2.Transform):
    """:func:`normalize_tensor` on the image (uint8 or float in [0, 1]); masks pass through."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        x = inpt.as_subclass(torch.Tensor)
        x = x.float().div(255.0) if not x.is_floating_point() else x
        return tv_tensors.wrap(normalize_tensor(x, self.mean, self.std), like=inpt)


def build_train_transform(
    *,
    crop_size: int | Sequence[int],
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: float | Sequence[float] | None = None,
    mean: Sequence[float],
    std: Sequence[float],
    ignore_index: int = 255,
) -> JointTransform:
    """Random scale -> random crop (image padded with 0, mask with ``ignore_index``) -> h-flip
    -> optional colour jitter -> normalize.

    ``color_jitter`` is a single strength s (brightness=contrast=saturation=s, hue=s/4) or a
    (brightness, contrast, saturation, hue) tuple; None disables it.
    """
    steps: list[v2.Transform] = [
        RandomScale(scale_range),
        v2.RandomCrop(_pair(crop_size), pad_if_needed=True,
                      fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if color_jitter:
        if isinstance(color_jitter, (int, float)):
            strength = float(color_jitter)
            jitter = (strength, strength, strength, min(0.5, strength / 4))
        else:
            jitter = tuple(float(v) for v in color_jitter)
            if len(jitter) != 4:
                raise ConfigError(f"color_jitter must be one number or 4 numbers, got {color_jitter}")
        steps.append(v2.ColorJitter(*jitter))
    return JointTransform(v2.Compose([*steps, Normalize(mean, std)]))


def build_eval_transform(*, mean: Sequence[float], std: Sequence[float]) -> JointTransform:
    """Normalize only: evaluation runs on the full image (the model pads internally)."""
    return JointTransform(Normalize(mean, std))


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The no-transform default: float32 (3, H, W) in [0, 1] and int64 (H, W), not normalized."""
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return image_t, torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
