"""Dataset specs: the mapping a config gives under ``data.dataset``, checked and built here.

``build_dataset(spec, split)`` builds any registered dataset type::

    {"type": "synthetic", "num_images": {"train": 2000, "val": 200}, "size": [256, 512], "seed": 0}
    {"type": "cityscapes", "root": "data/cityscapes", "label_format": "auto"}
    {"type": "ade20k", "root": "data/ADEChallengeData2016"}
    {"type": "folder", "root": "data/mine", "ignore_index": 255, "val_fraction": 0.2}
    {"type": "voc", "root": "data/VOCdevkit/VOC2012"}
    {"type": "cvat", "root": "data/cvat_export"}            # CVAT "Segmentation mask 1.1"
    {"type": "coco", "root": "data/coco", "unannotated": "background"}
    {"type": "huggingface", "path": "data/hf_saved", "image_column": "image", "label_column": "label"}

Every type takes ``on_bad_data: error | skip``; the file-based user formats also take the split
keys (``splits``, ``val_fraction``, ``allow_train_val_overlap``), which reach the dataset as one
``split_options`` (:class:`~eseg.data.splits.SplitOptions`), and most the label keys
(``ignore_index``, ``label_map``, ``reduce_zero_label``), as one ``label_options``
(:class:`~eseg.data.labels.LabelOptions`). The format rules are in docs/data.md. ``DATASETS``
holds each type's class (imported only when built) and its spec keys, so specs are checked
without importing torch.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from ..schema import unknown_key_error

SPLIT_KEYS = ("splits", "val_fraction", "allow_train_val_overlap")
LABEL_KEYS = ("label_map", "reduce_zero_label")
REQUIRED_WHAT = {"root": "the dataset folder", "path": "a save_to_disk folder, parquet files or a Hub dataset id"}

DATASETS: Registry = Registry("dataset type")
DATASETS.register("synthetic", "eseg.data.synthetic:SyntheticStreets", keys=("num_images", "size", "seed", "on_bad_data"),
                  required=(), palette="synthetic")
DATASETS.register("cityscapes", "eseg.data.cityscapes:CityscapesDataset", keys=("root", "label_format", "on_bad_data"),
                  required=("root",), palette="cityscapes")
DATASETS.register("ade20k", "eseg.data.ade20k:ADE20KDataset", keys=("root", "on_bad_data"), required=("root",),
                  palette="ade20k")
DATASETS.register("folder", "eseg.data.folder:FolderDataset",
                  keys=("root", "classes", "ignore_index", "images_dir", "masks_dir", "mask_suffix", "on_bad_data",
                        *SPLIT_KEYS, *LABEL_KEYS),
                  required=("root",), palette=None)
DATASETS.register("voc", "eseg.data.voc:VOCDataset", keys=("root", "classes", "on_bad_data", *SPLIT_KEYS, *LABEL_KEYS),
                  required=("root",), palette="voc")
DATASETS.register("cvat", "eseg.data.voc:CVATDataset", keys=("root", "classes", "on_bad_data", *SPLIT_KEYS, *LABEL_KEYS),
                  required=("root",), palette=None)
DATASETS.register("coco", "eseg.data.coco:COCODataset",
                  keys=("root", "annotations", "images_dir", "unannotated", "on_bad_data", *SPLIT_KEYS),
                  required=("root",), palette=None)
DATASETS.register("huggingface", "eseg.data.hf:HuggingFaceDataset",
                  keys=("path", "image_column", "label_column", "classes", "ignore_index", "on_bad_data",
                        *SPLIT_KEYS, *LABEL_KEYS),
                  required=("path",), palette=None)

EXPORT_LAYOUTS = ("folder", "voc", "cvat", "coco")  # the types eseg.data.exports writes (eseg data synth --format)
CONVERT_SOURCES = ("voc", "cvat", "coco")  # the exports eseg data convert reads
SYNTHETIC_DEFAULT_IMAGES = {"train": 1000, "val": 100, "test": 100}
SYNTHETIC_DEFAULT_SIZE = (256, 512)


def check_dataset_spec(spec: Any, where: str = "data.dataset") -> dict:
    """``spec`` as a dict if its type is registered and its keys belong to that type."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where} needs a 'type' key, one of {', '.join(DATASETS.names())}; got {spec!r}")
    try:
        meta = DATASETS.metadata(spec["type"])
    except ConfigError as exc:
        raise ConfigError(f"{where}.type: {exc}") from exc
    for key in spec:
        if key != "type" and key not in meta["keys"]:
            raise unknown_key_error(str(key), ["type", *meta["keys"]], f"{where} (type {spec['type']!r})")
    for key in meta["required"]:
        if spec.get(key) in (None, ""):
            raise ConfigError(f"{where}: dataset type {spec['type']!r} needs '{key}' ({REQUIRED_WHAT[key]})")
    group_options(spec, meta["keys"], where)  # checks the split and label keys' value types
    return dict(spec)


def group_options(spec: Mapping, keys: Collection[str], where: str) -> dict:
    """``spec`` with its split keys as one ``split_options`` and its label keys as one
    ``label_options``, for a type whose spec ``keys`` include them. The value types are checked
    here, so a config fails before anything is built; the ranges that need the classes are
    checked when the dataset is built."""
    from .labels import LabelOptions
    from .splits import SplitOptions

    grouped = dict(spec)
    for name, make, group in (("split_options", SplitOptions, SPLIT_KEYS),
                              ("label_options", LabelOptions, ("ignore_index", *LABEL_KEYS))):
        if any(key in keys for key in group):
            grouped[name] = make(**{key: grouped.pop(key) for key in group if key in grouped}, where=where)
    return grouped


def load_dataset_spec(path: str | Path) -> dict:
    """Read a dataset spec file (YAML or JSON), e.g. ``{type: cityscapes, root: DIR}``; an
    experiment-style ``{dataset: {...}}`` wrapper is unwrapped."""
    from ..fileio import read_yaml_mapping

    spec = read_yaml_mapping(path, "dataset spec", "; pass a YAML file like {type: folder, root: DIR}")
    if "type" not in spec and isinstance(spec.get("dataset"), dict):
        spec = spec["dataset"]
    return check_dataset_spec(spec, f"dataset spec '{path}'")


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


def build_dataset(spec: Mapping[str, Any], split: str, *, transform=None, where: str = "data.dataset"):
    """Build the dataset described by ``spec`` for ``split``."""
    options = check_dataset_spec(spec, where)
    kind = options.pop("type")
    options = group_options(options, DATASETS.metadata(kind)["keys"], where)
    builder = DATASETS.get(kind)
    if kind == "synthetic":
        options["num_images"] = _synthetic_count(options.get("num_images"), split)
        if "size" in options:
            options["size"] = tuple(options["size"])
        return builder(split, transform=transform, **options)
    return builder(split=split, transform=transform, **options)
