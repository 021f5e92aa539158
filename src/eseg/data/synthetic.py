"""SyntheticStreets: the embedded procedural street-scene dataset (the default when no data is given).

Scene layout (a street seen down its axis, classes as in ``palette.SYNTHETIC_CLASSES``):

- **sky** above a horizon at 38-52 % of the height: a vertical gradient, blue or overcast grey, with
  clouds;
- **building** blocks standing on the horizon at the left and/or right edge (each side present with
  probability 0.85, 18-42 % of the width, split into 1-3 facades of different heights and colours,
  with window grids). Facade colours include greys close to the pavement's;
- **vegetation**: a band of tree crowns with a bumpy top over the open middle of the street;
- the ground below the horizon is ONE pavement texture (grey, blotchy, noisy) everywhere;
- **sidewalk** is the pavement in the columns under a building block, **road** the pavement in the
  columns between them (the whole ground width when no building stands on either side);
- **car**s stand on the road, **person**s (on the building side) and **pole**s on the sidewalks, all
  smaller when nearer the horizon;
- lighting varies per image: global gain, colour tint, a linear gradient and large soft shading
  blotches over the whole frame, then Gaussian pixel noise.

The context property (what the dataset is for): road and sidewalk share the same local appearance
(``CONTEXT_CLASSES``). There is no curb, colour or texture change at their boundary; the boundary
column is decided only by where the building above ends, which lies at the horizon, up to the
whole ground height (50-62 % of the image) away from the lower pavement pixels. A local classifier
is at chance on them, while the label is a deterministic function of the whole image. Telling
them apart therefore needs a receptive field of a large fraction of the image, the claim ESeg's
P9 pyramid is about.

Each sample is a pure function of (seed, split, index) through its own ``numpy.random.Generator``,
and generation is vectorized numpy (a few ms for 256x512).
"""
from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..palette import SYNTHETIC_CLASSES, get_palette
from .base import SegDataset, Transform
from .specs import SYNTHETIC_DEFAULT_SIZE as DEFAULT_SIZE

CLASSES = SYNTHETIC_CLASSES
CONTEXT_CLASSES = ("road", "sidewalk")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(CLASSES))
HORIZON_RANGE = (0.38, 0.52)  # share of the image height above the ground


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one sample: independent streams per (seed, split, index)."""
    return np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])


@lru_cache(maxsize=64)
def _interp_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index and weight for linearly resampling n_in points onto n_out pixels."""
    pos = (np.arange(n_out) + 0.5) * (n_in - 1) / n_out
    lo = np.minimum(np.floor(pos).astype(np.intp), n_in - 2)
    return lo, (pos - lo).astype(np.float32)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise varying smoothly over ``cell`` pixels (separable
    linear upsampling of a coarse Gaussian grid; gathers rather than BLAS keep it single-core)."""
    rows, cols = int(height / cell) + 2, int(width / cell) + 2
    coarse = rng.standard_normal((rows, cols), dtype=np.float32)
    ry, fy = _interp_weights(height, rows)
    rx, fx = _interp_weights(width, cols)
    tall = coarse[ry] + (coarse[ry + 1] - coarse[ry]) * fy[:, None]
    return tall[:, rx] + (tall[:, rx + 1] - tall[:, rx]) * fx[None, :]


def _facade(rng: np.random.Generator, height: int, width: int, unit: float) -> np.ndarray:
    """A building front: a wall colour, blotches, and a grid of darker windows."""
    palette = np.array([[150, 140, 125], [120, 100, 85], [135, 135, 135], [105, 105, 110],
                        [165, 120, 95], [175, 165, 145], [95, 85, 80]], dtype=np.float32)
    wall = palette[rng.integers(len(palette))] + rng.uniform(-15, 15, 3).astype(np.float32)
    facade = wall + 10.0 * smooth_noise(rng, height, width, 6 * unit)[..., None]
    period_y, period_x = rng.uniform(12, 24, 2) * unit
    fill_y, fill_x = rng.uniform(0.35, 0.6, 2)
    rows = ((np.arange(height) + rng.uniform(0, period_y)) % period_y) < fill_y * period_y
    cols = ((np.arange(width) + rng.uniform(0, period_x)) % period_x) < fill_x * period_x
    window = rows[:, None] & cols[None, :]
    glass = np.array([55, 65, 80], dtype=np.float32) * rng.uniform(0.6, 1.4)
    facade[window] = glass
    return facade


def _sky(rng: np.random.Generator, height: int, width: int, unit: float) -> np.ndarray:
    overcast = rng.random() < 0.35
    if overcast:
        top = np.full(3, rng.uniform(120, 190), dtype=np.float32)
        bottom = top + rng.uniform(10, 40)
    else:
        top = np.array([60, 110, 190], dtype=np.float32) + rng.uniform(-25, 25, 3).astype(np.float32)
        bottom = np.array([170, 195, 225], dtype=np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    clouds = np.clip(smooth_noise(rng, height, width, 24 * unit), 0, None)[..., None]
    return top + (bottom - top) * t + rng.uniform(20, 50) * clouds


def _pavement(rng: np.random.Generator, height: int, width: int, unit: float) -> np.ndarray:
    """The one ground texture shared by road and sidewalk."""
    gray = rng.uniform(85, 150)
    tint = rng.uniform(-6, 6, 3).astype(np.float32)
    blotches = 12.0 * smooth_noise(rng, height, width, 14 * unit) + 7.0 * smooth_noise(rng, height, width, 3 * unit)
    return gray + tint + blotches[..., None]


def _vegetation(rng: np.random.Generator, height: int, width: int, unit: float) -> np.ndarray:
    green = np.array([55, 100, 40], dtype=np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    leaves = 22.0 * smooth_noise(rng, height, width, 2.5 * unit) + 12.0 * smooth_noise(rng, height, width, 9 * unit)
    return green + leaves[..., None] * np.array([0.8, 1.0, 0.6], dtype=np.float32)


def _split_block(rng: np.random.Generator, start: int, stop: int) -> list[tuple[int, int]]:
    """Cut [start, stop) into 1-3 adjacent facades that cover it completely (a sidewalk column
    without a building above would break the context rule)."""
    cuts = np.sort(rng.uniform(start, stop, int(rng.integers(0, 3))).astype(int)).tolist()
    edges = [start]
    for cut in cuts:
        if cut - edges[-1] >= 4 and stop - cut >= 4:
            edges.append(cut)
    edges.append(stop)
    return list(zip(edges[:-1], edges[1:]))


def _draw_buildings(rng, image, label, horizon, blocks, unit):
    height = image.shape[0]
    for start, stop in blocks:
        for a, b in _split_block(rng, start, stop):
            top = int(rng.uniform(0.03, max(0.04, horizon / height - 0.12)) * height)
            image[top:horizon, a:b] = _facade(rng, horizon - top, b - a, unit)
            label[top:horizon, a:b] = BUILDING


def _draw_vegetation(rng, image, label, horizon, start, stop, unit):
    height = image.shape[0]
    band = int(rng.uniform(0.06, 0.2) * height)
    columns = np.arange(start, stop)
    bumps = np.sin(columns / (rng.uniform(6, 14) * unit) + rng.uniform(0, 6.3)) * 0.25
    crown = horizon - band * (0.75 + bumps + 0.15 * smooth_noise(rng, 1, stop - start, 5 * unit)[0])
    top = max(0, int(crown.min()))
    rows = np.arange(top, horizon)[:, None]
    inside = rows >= crown[None, :]
    texture = _vegetation(rng, horizon - top, stop - start, unit)
    region = image[top:horizon, start:stop]
    region[inside] = texture[inside]
    label[top:horizon, start:stop][inside] = VEGETATION


def _perspective(y: float, horizon: int, height: int) -> float:
    """Object scale at ground row y: 0 at the horizon, 1 at the bottom edge."""
    return (y - horizon) / max(1, height - 1 - horizon)


def _place(rng, span, margin, foot, obj_h, obj_w):
    """Put an obj_h x obj_w object standing on row ``foot`` at a random column inside ``span``
    (keeping ``margin`` px from its ends): (top, left, row grid, column grid) relative to the
    object's box, or None when the span is too narrow."""
    lo, hi = span[0] + margin, span[1] - margin - obj_w
    if hi <= lo:
        return None
    left = int(rng.uniform(lo, hi))
    top = foot - obj_h
    yy = np.arange(obj_h)[:, None]
    xx = np.arange(obj_w)[None, :]
    return top, left, yy, xx


def _draw_car(rng, image, label, horizon, road, unit):
    height = image.shape[0]
    bottom = int(rng.uniform(horizon + 0.25 * (height - horizon), height - 1))
    scale = _perspective(bottom, horizon, height)
    car_h = max(8, int(scale * 0.3 * height))
    car_w = int(car_h * rng.uniform(1.8, 2.4))
    placed = _place(rng, road, 3, bottom, car_h, car_w)
    if placed is None:
        return
    top, left, yy, xx = placed
    body = (yy >= 0.42 * car_h) & (yy < 0.85 * car_h) & (xx >= 0)
    cabin = (yy < 0.42 * car_h) & (xx >= 0.18 * car_w) & (xx < 0.8 * car_w)
    wheel_r = 0.17 * car_h
    wheel = np.zeros_like(body)
    for cx in (0.22 * car_w, 0.78 * car_w):
        wheel |= (xx - cx) ** 2 + (yy - 0.82 * car_h) ** 2 < wheel_r**2
    glass = cabin & (yy >= 0.08 * car_h) & (yy < 0.38 * car_h) & (xx >= 0.22 * car_w) & (xx < 0.76 * car_w)
    paint = rng.uniform(20, 230, 3).astype(np.float32)
    region = image[top:bottom, left:left + car_w]
    region[body | cabin] = paint + 8.0 * smooth_noise(rng, car_h, car_w, 4 * unit)[body | cabin][:, None]
    region[glass] = np.array([40, 50, 60], dtype=np.float32)
    region[wheel] = np.array([25, 25, 25], dtype=np.float32)
    label[top:bottom, left:left + car_w][body | cabin | wheel] = CAR


def _draw_person(rng, image, label, horizon, walk):
    height = image.shape[0]
    feet = int(rng.uniform(horizon + 0.1 * (height - horizon), height - 1))
    scale = _perspective(feet, horizon, height)
    person_h = max(12, int((0.14 + 0.34 * scale) * height))
    person_w = max(5, int(person_h * 0.32))
    placed = _place(rng, walk, 2, feet, person_h, person_w)
    if placed is None:
        return
    top, left, yy, xx = placed
    head_r = 0.5 * person_w * 0.8
    head = (xx - person_w / 2) ** 2 + (yy - head_r) ** 2 < head_r**2
    torso = (yy >= 2 * head_r) & (yy < 0.58 * person_h) & (xx >= 0)
    legs = (yy >= 0.58 * person_h) & ((np.abs(xx - 0.3 * person_w) < 0.17 * person_w) | (np.abs(xx - 0.7 * person_w) < 0.17 * person_w))
    region = image[top:feet, left:left + person_w]
    region[torso] = rng.uniform(20, 230, 3).astype(np.float32)
    region[legs] = rng.uniform(20, 120, 3).astype(np.float32)
    region[head] = np.array([205, 160, 130], dtype=np.float32) * rng.uniform(0.5, 1.1)
    label[top:feet, left:left + person_w][head | torso | legs] = PERSON


def _draw_pole(rng, image, label, horizon, walk, unit):
    height = image.shape[0]
    width = max(3, int(rng.uniform(3, 6) * unit))  # >= 3 px: still visible at stride 4
    if walk[1] - walk[0] < width + 6:
        return
    left = int(rng.uniform(walk[0] + 3, walk[1] - 3 - width))
    foot = int(rng.uniform(horizon + 2, horizon + 0.6 * (height - horizon)))
    top = int(rng.uniform(0.02, 0.25) * height)
    shade = rng.uniform(50, 110)
    image[top:foot, left:left + width] = shade + np.linspace(-15, 15, width, dtype=np.float32)[None, :, None]
    label[top:foot, left:left + width] = POLE


def _apply_lighting(rng, image, unit):
    height, width = image.shape[:2]
    gain = rng.uniform(0.65, 1.3)
    tint = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    ramp_x, ramp_y = rng.uniform(-0.25, 0.25, 2)
    ramp = (ramp_x * np.linspace(-1, 1, width, dtype=np.float32)[None, :]
            + ramp_y * np.linspace(-1, 1, height, dtype=np.float32)[:, None])
    shading = gain * (1.0 + ramp + 0.12 * smooth_noise(rng, height, width, 60 * unit))
    image *= shading[..., None]
    image *= tint
    # luminance noise, the same on the three channels: as hard for a colour threshold, 3x cheaper
    image += (rng.uniform(4, 12) * rng.standard_normal((height, width), dtype=np.float32))[..., None]


def render_street(rng: np.random.Generator, size: tuple[int, int] = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: uint8 image (H, W, 3) and int64 label map (H, W) with ids into CLASSES."""
    height, width = size
    if height < 32 or width < 32:
        raise ConfigError(f"synthetic image size must be at least 32x32, got {height}x{width}")
    unit = width / 512.0  # texture and object scales are defined for 512-wide images
    image = np.empty((height, width, 3), dtype=np.float32)
    label = np.empty((height, width), dtype=np.uint8)

    horizon = int(rng.uniform(*HORIZON_RANGE) * height)
    left_edge = int(rng.uniform(0.18, 0.42) * width) if rng.random() < 0.85 else 0
    right_edge = width - int(rng.uniform(0.18, 0.42) * width) if rng.random() < 0.85 else width
    blocks = [(a, b) for a, b in ((0, left_edge), (right_edge, width)) if b > a]

    image[:horizon] = _sky(rng, horizon, width, unit)
    label[:horizon] = SKY
    image[horizon:] = _pavement(rng, height - horizon, width, unit)
    label[horizon:] = ROAD
    for a, b in blocks:
        label[horizon:, a:b] = SIDEWALK
    if rng.random() < 0.8:
        _draw_vegetation(rng, image, label, horizon, left_edge, right_edge, unit)
    _draw_buildings(rng, image, label, horizon, blocks, unit)

    for a, b in blocks:
        for _ in range(int(rng.integers(1, 3))):
            _draw_pole(rng, image, label, horizon, (a, b), unit)
        # people keep to the building side, so the road/sidewalk boundary stays free of local cues
        margin = int(0.4 * (b - a))
        walk = (a, b - margin) if a == 0 else (a + margin, b)
        for _ in range(int(rng.integers(1, 4))):
            _draw_person(rng, image, label, horizon, walk)
    cars = int(rng.integers(0, 4))
    for _ in range(cars):
        _draw_car(rng, image, label, horizon, (left_edge, right_edge), unit)

    _apply_lighting(rng, image, unit)
    return np.clip(image, 0, 255, out=image).astype(np.uint8), label.astype(np.int64)


class SyntheticStreets(SegDataset):
    """``num_images`` procedural street scenes of ``size`` (H, W) for ``split``; see the module doc."""

    def __init__(
        self,
        split: str = "train",
        *,
        num_images: int = 1000,
        size: tuple[int, int] = DEFAULT_SIZE,
        seed: int = 0,
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        super().__init__(split=split, class_names=CLASSES, palette="synthetic", transform=transform,
                         on_bad_data=on_bad_data)
        if int(num_images) < 1:
            raise ConfigError(f"synthetic num_images must be >= 1, got {num_images}")
        if isinstance(size, int) or len(size) != 2:
            raise ConfigError(f"synthetic size must be [height, width], got {size!r}")
        self.num_images = int(num_images)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.scan_values = False  # generated: every label is a class by construction
        self.split_source = f"generated stream {split!r} (seed {self.seed}): no image repeats across splits"

    def __len__(self) -> int:
        return self.num_images

    def image_path(self, index: int) -> None:
        return None  # generated in memory

    def mask_path(self, index: int) -> None:
        return None

    def sample_name(self, index: int) -> str:
        return f"{self.split}_{index:06d}"

    def read_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} synthetic images")
        return render_street(sample_rng(self.seed, self.split, index), self.size)


def write_dataset(
    out_dir: str | Path,
    *,
    num_images: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    val_fraction: float | None = None,
    layout: str = "folder",
    overwrite: bool = False,
) -> dict[str, int]:
    """Write SyntheticStreets in ``layout`` (``eseg.data.exports.LAYOUTS``) and return the count per
    split ('' = one pool or a flat folder).

    ``folder`` and ``voc`` get train and val: val holds ``round(num_images * val_fraction)``
    images (at least one when the fraction is > 0; default 0.2), drawn from the 'val' stream so
    they never repeat a training scene; with ``val_fraction`` 0 a folder is written flat (voc:
    train.txt only). ``cvat`` and ``coco`` exports hold one pool (split it when training, with
    ``val_fraction``): ``num_images`` scenes named ``scene_NNNNNN``. The folder appears only when
    complete; a non-empty ``out_dir`` needs ``overwrite``.
    """
    from .exports import POOLED_LAYOUTS, Classes, staged_folder, write_layout

    if layout in POOLED_LAYOUTS and val_fraction:
        raise ConfigError(f"a {layout} export holds one pool of images, no val split; hold images out when training "
                          "(data.dataset.val_fraction=0.2) instead of --val-fraction")
    counts = {"": num_images} if layout in POOLED_LAYOUTS else _split_counts(num_images, val_fraction)
    classes = Classes(CLASSES, get_palette("synthetic", len(CLASSES)))
    splits = {split: _labelled(split, count, size, seed) for split, count in counts.items()}
    with staged_folder(out_dir, overwrite=overwrite) as staging:
        write_layout(layout, staging, splits, classes)
    return counts


def _split_counts(num_images: int, val_fraction: float | None) -> dict[str, int]:
    """{'train': n, 'val': m}, or {'': n} (flat) for a fraction of 0."""
    fraction = 0.2 if val_fraction is None else val_fraction
    if not 0 <= fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    if num_images < 1:
        raise ConfigError(f"number of images must be >= 1, got {num_images}")
    if fraction == 0:
        return {"": num_images}
    num_val = max(1, round(num_images * fraction))
    if num_images - num_val < 1:
        raise ConfigError(f"{num_images} images with val_fraction {fraction} leave no training images")
    return {"train": num_images - num_val, "val": num_val}


def _labelled(split: str, count: int, size: tuple[int, int], seed: int):
    """The split's scenes as LabelledImage, one at a time (a pool: the 'train' stream as scene_N)."""
    from .exports import LabelledImage

    dataset = SyntheticStreets(split or "train", num_images=max(count, 1), size=size, seed=seed)
    for index in range(count):
        image, mask = dataset.load(index)
        name = dataset.sample_name(index) if split else f"scene_{index:06d}"
        yield LabelledImage(name, image, mask.astype(np.uint8))


def write_folder_dataset(out_dir: str | Path, *, num_images: int, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0,
                         val_fraction: float = 0.2) -> dict[str, int]:
    """Deprecated: ``write_dataset(..., layout="folder")``."""
    import warnings

    warnings.warn("eseg.data.write_folder_dataset is deprecated; use eseg.data.synthetic.write_dataset",
                  DeprecationWarning, stacklevel=2)
    return write_dataset(out_dir, num_images=num_images, size=size, seed=seed, val_fraction=val_fraction)
