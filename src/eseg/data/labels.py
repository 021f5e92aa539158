"""Turning the values stored in mask files into class ids.

- :class:`ColorTable`: RGB colour masks (CVAT, many labelling tools) -> class ids through the
  classes' colours; a colour that belongs to no class is a ``DataError`` naming the file and the
  colour.
- :class:`LabelOptions`: a spec's label keys as one object, checked before the classes are known:
  ``ignore_index`` (None: the classes file's, else 255), ``label_map``, ``reduce_zero_label``.
- :class:`LabelMapping`: a spec's ``label_map`` (``{3: 1, 7: 2}``: sparse ids -> class ids, every
  other value kept) or ``reduce_zero_label`` (0 -> ignore, v -> v - 1, as in mmseg and Hugging
  Face). The two are exclusive: a ``label_map`` can say anything ``reduce_zero_label`` says.

Both work on whole masks and on the 1-D arrays of distinct values the mask scan keeps
(:mod:`eseg.data.scan`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> (...) int64 keys ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.int64, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_rgb(key: int) -> tuple[int, int, int]:
    return (int(key) >> 16) & 255, (int(key) >> 8) & 255, int(key) & 255


class ColorTable:
    """Colour -> class id for RGB masks. ``extra`` adds colours that are not classes, e.g. VOC's
    void border (224, 224, 192) -> the ignore index."""

    def __init__(self, colors: Sequence[Sequence[int]], source: str, extra: Mapping[tuple, int] | None = None):
        self.source = source  # where the colours come from, for messages
        self.lookup: dict[int, int] = {}
        self.clash: str | None = None
        for class_id, color in enumerate(colors):
            key = int(pack_rgb(np.asarray(color)))
            if key in self.lookup and self.clash is None:
                self.clash = (f"{source}: classes {self.lookup[key]} and {class_id} share the colour {tuple(color)}, "
                              "so a colour mask cannot tell them apart; give every class its own colour")
            self.lookup.setdefault(key, class_id)
        for color, value in (extra or {}).items():
            self.lookup.setdefault(int(pack_rgb(np.asarray(color))), int(value))

    def decode_keys(self, keys: np.ndarray, where: str, counts: np.ndarray | None = None) -> np.ndarray:
        """Packed colours -> class ids; colours of no class are one ``DataError`` naming them."""
        if self.clash:
            raise DataError(self.clash)
        distinct, inverse = np.unique(keys, return_inverse=True)
        ids = np.array([self.lookup.get(int(k), -1) for k in distinct], dtype=np.int64)
        unknown = distinct[ids < 0]
        if len(unknown):
            raise DataError(self._unknown_message(where, unknown, distinct, keys, counts))
        return ids[inverse].reshape(keys.shape)

    def decode(self, rgb: np.ndarray, where: str) -> np.ndarray:
        """(H, W, 3) colour mask -> (H, W) int64 class ids."""
        return self.decode_keys(pack_rgb(rgb), where)

    def _unknown_message(self, where, unknown, distinct, keys, counts) -> str:
        pixels = np.bincount(np.searchsorted(distinct, keys.ravel()), weights=None if counts is None else counts.ravel(),
                             minlength=len(distinct))
        shown = ", ".join(f"{unpack_rgb(k)} ({int(pixels[np.searchsorted(distinct, k)])} px)" for k in unknown[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        return (f"{where}: colour(s) {shown}{more} belong to no class of {self.source}. Add the class with that "
                "colour there, or fix the mask (an antialiased or resized colour mask blends colours at edges)")


DEFAULT_IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelOptions:
    """A spec's label keys (``ignore_index``, ``label_map``, ``reduce_zero_label``), checked for
    their types; the ranges, which need the classes, are checked by :class:`LabelMapping`.
    ``where`` names the spec in errors (``data.dataset.label_map ...``)."""

    ignore_index: int | None = None
    label_map: Mapping | None = None
    reduce_zero_label: bool = False
    where: str = "data.dataset"

    def __post_init__(self):
        if self.ignore_index is not None and (isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int)):
            raise ConfigError(f"{self.where}.ignore_index must be an integer (255 is usual), got {self.ignore_index!r}")
        if self.label_map is not None and not isinstance(self.label_map, Mapping):
            raise ConfigError(f"{self.where}.label_map must map stored values to class ids, e.g. {{3: 1, 7: 2}}; "
                              f"got {self.label_map!r}")
        if not isinstance(self.reduce_zero_label, bool):
            raise ConfigError(f"{self.where}.reduce_zero_label must be true or false, got {self.reduce_zero_label!r}")
        if self.label_map and self.reduce_zero_label:
            raise ConfigError(f"{self.where}: give label_map or reduce_zero_label, not both (a label_map can also "
                              "send 0 to the ignore index)")

    def ignore(self, default: int | None) -> int:
        """The ignore index: this spec's, else the dataset's ``default`` (e.g. its classes file's), else 255."""
        for value in (self.ignore_index, default):
            if value is not None:
                return int(value)
        return DEFAULT_IGNORE_INDEX


class LabelMapping:
    """The spec's ``label_map`` or ``reduce_zero_label``, applied after a dataset's own mapping."""

    def __init__(self, options: LabelOptions, *, num_classes: int, ignore_index: int):
        self.reduce_zero_label = options.reduce_zero_label
        self.ignore_index = ignore_index
        self.table = _check_label_map(options.label_map or {}, num_classes, ignore_index, options.where)

    @property
    def active(self) -> bool:
        return bool(self.table) or self.reduce_zero_label

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.reduce_zero_label:
            out = values - 1
            out[(values == 0) | (values == self.ignore_index)] = self.ignore_index
            return out
        if not self.table:
            return values
        out = values.copy()
        for source, target in self.table.items():
            out[values == source] = target
        return out

    def describe(self) -> str:
        if self.reduce_zero_label:
            return "reduce_zero_label (0 -> ignore, v -> v - 1)"
        return "label_map " + ", ".join(f"{k} -> {v}" for k, v in self.table.items()) if self.table else ""


def _check_label_map(label_map: Any, num_classes: int, ignore_index: int, where: str) -> dict[int, int]:
    if not isinstance(label_map, Mapping):
        raise ConfigError(f"{where}.label_map must map stored values to class ids, e.g. {{3: 1, 7: 2}}; got {label_map!r}")
    table = {}
    for key, value in label_map.items():
        try:
            source, target = int(key), int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.label_map: {key!r}: {value!r} is not an integer -> integer pair") from None
        if source < 0 or not (0 <= target < num_classes or target == ignore_index):
            raise ConfigError(f"{where}.label_map: {key} -> {value}: the target must be a class id 0..{num_classes - 1} "
                              f"or the ignore index {ignore_index}, and the stored value >= 0")
        table[source] = target
    return table
