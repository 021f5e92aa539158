"""The one table of class names and colours for every dataset eseg knows.

- ``cityscapes``: the 19 trainIds of cityscapesscripts' ``helpers.labels`` with their official
  colours and labelIds (a literal copy, checked against cityscapesscripts in the tests).
- ``ade20k``: the 150 SceneParsing (ADEChallengeData2016) classes in annotation order (value v is
  class v-1). ADE20K publishes no official colours; ours come from ``distinct_palette(150)``, a
  deterministic golden-ratio hue walk defined below, so they are ours, stable across versions.
- ``synthetic``: the 8 classes of the embedded ``SyntheticStreets`` dataset, coloured like their
  Cityscapes namesakes.
- ``voc``: the 21 Pascal VOC classes with the VOC devkit's colour map (``voc_colormap``: the bits
  of the class id spread over R, G, B); entry 255, (224, 224, 192), is VOC's void border.

Any other name or class count falls back to ``distinct_palette``.
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

from .errors import ConfigError
from .registry import Registry

# (trainId order) name, labelId, colour — as in cityscapesscripts.helpers.labels
CITYSCAPES_LABELS: tuple[tuple[str, int, tuple[int, int, int]], ...] = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
CITYSCAPES_CLASSES = tuple(name for name, _, _ in CITYSCAPES_LABELS)
CITYSCAPES_NUM_LABEL_IDS = 34  # labelIds 0..33; everything that is not a trainId maps to ignore

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

SYNTHETIC_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")


def distinct_palette(num_colors: int) -> np.ndarray:
    """Deterministic, well-separated colours: hues step by the golden ratio, with three
    saturation/value tiers cycling so neighbouring ids also differ in brightness."""
    golden = 0.618033988749895
    tiers = ((0.85, 0.95), (0.55, 0.80), (0.95, 0.60))
    colors = np.empty((num_colors, 3), dtype=np.uint8)
    for i in range(num_colors):
        sat, val = tiers[i % len(tiers)]
        rgb = colorsys.hsv_to_rgb((0.05 + i * golden) % 1.0, sat, val)
        colors[i] = np.round(np.asarray(rgb) * 255)
    return colors


def voc_colormap(num_colors: int = 256) -> np.ndarray:
    """The Pascal VOC devkit colour map: bit k of the id goes to bit 7 - k // 3 of R, G or B."""
    colors = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        value, shift = index, 7
        while value:
            for channel in range(3):
                colors[index, channel] |= ((value >> channel) & 1) << shift
            value, shift = value >> 3, shift - 1
    return colors


def _cityscapes_color(name: str) -> tuple[int, int, int]:
    return next(color for n, _, color in CITYSCAPES_LABELS if n == name)


PALETTES: Registry = Registry("palette")  # name -> (class names, (K, 3) uint8 colours)
PALETTES.register("cityscapes", (CITYSCAPES_CLASSES, np.array([c for _, _, c in CITYSCAPES_LABELS], np.uint8)))
PALETTES.register("ade20k", (ADE20K_CLASSES, distinct_palette(len(ADE20K_CLASSES))))
PALETTES.register("synthetic", (SYNTHETIC_CLASSES, np.array([_cityscapes_color(n) for n in SYNTHETIC_CLASSES], np.uint8)))
PALETTES.register("voc", (VOC_CLASSES, voc_colormap(len(VOC_CLASSES))))
PALETTE_NAMES = tuple(PALETTES.names())


def get_class_names(name: str) -> tuple[str, ...]:
    """Class names of a known dataset ('cityscapes', 'ade20k', 'synthetic', 'voc')."""
    return PALETTES.get(name.lower())[0]


def get_palette(name_or_colors: str | Sequence[Sequence[int]] | np.ndarray | None, num_classes: int) -> np.ndarray:
    """A (num_classes, 3) uint8 colour table.

    ``name_or_colors`` is a known dataset name, an explicit list of RGB triplets, or None. A known
    table whose length differs from ``num_classes``, an unknown name, or None gives the
    deterministic ``distinct_palette`` instead, so a custom class count always gets colours.
    """
    if isinstance(name_or_colors, str):
        if name_or_colors.lower() in PALETTES and len(PALETTES.get(name_or_colors.lower())[1]) == num_classes:
            return PALETTES.get(name_or_colors.lower())[1].copy()
        return distinct_palette(num_classes)
    if name_or_colors is None:
        return distinct_palette(num_classes)
    colors = np.asarray(name_or_colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.shape[0] != num_classes:
        raise ConfigError(
            f"palette must be {num_classes} RGB triplets (one per class), got shape {colors.shape}"
        )
    if colors.min() < 0 or colors.max() > 255:
        raise ConfigError("palette colours must be integers in 0..255")
    return colors.astype(np.uint8)


def cityscapes_label_to_train_id() -> np.ndarray:
    """A 256-entry lookup table labelId -> trainId (255 for every id that is not trained on).

    Uses cityscapesscripts' own table when it is installed and the built-in copy otherwise (the
    tests check both agree).
    """
    lut = np.full(256, 255, dtype=np.int64)
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        for train_id, (_, label_id, _) in enumerate(CITYSCAPES_LABELS):
            lut[label_id] = train_id
        return lut
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < 255:
            lut[label.id] = label.trainId
    return lut


def cityscapes_train_id_to_label_id() -> np.ndarray:
    """trainId -> labelId for the 19 classes (what the official evaluator expects in predictions)."""
    return np.array([label_id for _, label_id, _ in CITYSCAPES_LABELS], dtype=np.int64)
