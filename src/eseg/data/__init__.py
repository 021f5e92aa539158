"""Datasets, their metadata, transforms and image I/O.

``build_dataset(spec, split)`` builds any registered type (``DATASETS``: synthetic, cityscapes,
ade20k, folder, voc, cvat, coco, huggingface) from a config mapping; see :mod:`eseg.data.specs`
and docs/data.md. Names are imported on first use.
"""
from __future__ import annotations

from typing import Any

from ..imports import lazy_attribute

_EXPORTS = {
    "DATASETS": "specs", "build_dataset": "specs", "check_dataset_spec": "specs", "load_dataset_spec": "specs",
    "DatasetMeta": "meta", "SegSubset": "meta", "subset": "meta",
    "SegDataset": "base", "BadDataWarning": "base", "DataWarning": "base", "BAD_DATA_POLICIES": "base",
    "CityscapesDataset": "cityscapes", "ADE20KDataset": "ade20k", "FolderDataset": "folder",
    "VOCDataset": "voc", "CVATDataset": "voc", "COCODataset": "coco", "HuggingFaceDataset": "hf",
    "check_disjoint": "splits", "convert_dataset": "convert",
    "SyntheticStreets": "synthetic", "CONTEXT_CLASSES": "synthetic", "write_folder_dataset": "synthetic",
    "IMAGE_EXTENSIONS": "io", "read_image": "io", "read_mask": "io",
    "build_eval_transform": "transforms", "build_train_transform": "transforms",
    "normalize": "transforms", "denormalize": "transforms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute("eseg.data", {k: f"eseg.data.{v}" for k, v in _EXPORTS.items()}, name)
