"""Datasets, transforms and image I/O.

``build_dataset(spec, split)`` builds any dataset from a config mapping::

    {"type": "synthetic", "num_images": {"train": 2000, "val": 200}, "size": [256, 512], "seed": 0}
    {"type": "cityscapes", "root": "data/cityscapes", "label_format": "auto"}
    {"type": "ade20k", "root": "data/ADEChallengeData2016"}
    {"type": "folder", "root": "data/mine", "ignore_index": 255}

Every type also takes ``on_bad_data: error | skip``.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .ade20k import ADE20KDataset
from .base import BAD_DATA_POLICIES, BadDataWarning, SegDataset
from .cityscapes import CityscapesDataset
from .folder import FolderDataset
from .io import IMAGE_EXTENSIONS, read_image, read_mask
from .synthetic import CONTEXT_CLASSES, SyntheticStreets, write_folder_dataset
from .transforms import build_eval_transform, build_train_transform

# type -> the spec keys it accepts besides 'type' (each maps onto a constructor keyword)
DATASET_TYPES: dict[str, tuple[str, ...]] = {
    "synthetic": ("num_images", "size", "seed", "on_bad_data"),
    "cityscapes": ("root", "label_format", "on_bad_data"),
    "ade20k": ("root", "on_bad_data"),
    "folder": ("root", "classes", "ignore_index", "images_dir", "masks_dir", "mask_suffix", "on_bad_data"),
}
REQUIRED_KEYS = {"cityscapes": ("root",), "ade20k": ("root",), "folder": ("root",)}
SYNTHETIC_DEFAULT_IMAGES = {"train": 1000, "val": 100, "test": 100}


def _closest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.0)
    return f"; did you mean {match[0]!r}?" if match else ""


def _synthetic_count(num_images: Any, split: str) -> int:
    if num_images is None:
        num_images = SYNTHETIC_DEFAULT_IMAGES
    if isinstance(num_images, Mapping):
        if split not in num_images:
            raise ConfigError(f"synthetic dataset: num_images has no entry for split {split!r} "
                              f"(has: {', '.join(map(str, num_images))})")
        num_images = num_images[split]
    if isinstance(num_images, bool) or not isinstance(num_images, int):
        raise ConfigError(f"synthetic dataset: num_images must be an integer or a split -> integer mapping, got {num_images!r}")
    return num_images


def load_dataset_spec(path: str | Path) -> dict:
    """Read a dataset spec file (YAML or JSON), e.g. ``{type: cityscapes, root: DIR}``.

    An experiment-style ``{dataset: {...}}`` wrapper is unwrapped. The keys are checked later by
    :func:`build_dataset`.
    """
    from ..config import read_yaml_mapping

    spec = read_yaml_mapping(path, "dataset spec", "; pass a YAML file like {type: folder, root: DIR}")
    if "type" not in spec and isinstance(spec.get("dataset"), dict):
        spec = spec["dataset"]
    return spec


def build_dataset(spec: Mapping[str, Any], split: str, *, transform=None) -> SegDataset:
    """Build the dataset described by ``spec`` (see the module docstring) for ``split``."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"dataset spec needs a 'type' key, one of {', '.join(DATASET_TYPES)}; got {spec!r}")
    kind = spec["type"]
    if kind not in DATASET_TYPES:
        raise ConfigError(f"unknown dataset type {kind!r}; choose from {', '.join(DATASET_TYPES)}{_closest(str(kind), DATASET_TYPES)}")
    allowed = DATASET_TYPES[kind]
    options = {k: v for k, v in spec.items() if k != "type"}
    for key in options:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} for dataset type {kind!r}{_closest(key, allowed)} "
                              f"(valid: {', '.join(allowed)})")
    for key in REQUIRED_KEYS.get(kind, ()):
        if options.get(key) in (None, ""):
            raise ConfigError(f"dataset type {kind!r} needs '{key}' (the dataset folder)")
    if kind == "synthetic":
        options["num_images"] = _synthetic_count(options.get("num_images"), split)
        if "size" in options:
            options["size"] = tuple(options["size"])
        return SyntheticStreets(split, transform=transform, **options)
    root = options.pop("root")
    builder = {"cityscapes": CityscapesDataset, "ade20k": ADE20KDataset, "folder": FolderDataset}[kind]
    return builder(root, split, transform=transform, **options)


__all__ = [
    "load_dataset_spec",
    "ADE20KDataset", "BAD_DATA_POLICIES", "BadDataWarning", "CONTEXT_CLASSES", "CityscapesDataset",
    "DATASET_TYPES", "FolderDataset", "IMAGE_EXTENSIONS", "SegDataset", "SyntheticStreets",
    "build_dataset", "build_eval_transform", "build_train_transform", "read_image", "read_mask",
    "write_folder_dataset",
]
