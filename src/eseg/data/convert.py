"""``eseg data convert``: a VOC, CVAT or COCO export rewritten in eseg's folder layout.

The source is read by the same dataset class training would use (so the files hold exactly what
training would see), every file is checked first (all problems in one error), then::

    OUT/images/<split>/<name>.<ext>   # the source image file, copied byte for byte (EXIF kept)
    OUT/masks/<split>/<name>.png      # class ids (uint8; 255 = ignore), label_map already applied
    OUT/classes.yaml                  # names, colors, ignore_index

A source with splits (VOC lists, COCO files per split) keeps them (``valid`` -> ``val``); a pool
(CVAT's default.txt, one COCO file) is written flat (``images/``, ``masks/``: split it when
training with ``val_fraction``), or as train/val with ``val_fraction`` here. The output appears
only when complete (``exports.staged_folder``: a temporary folder next to it, then renamed).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..fileio import write_text
from .classes import classes_yaml_text
from .coco import split_annotation_files
from .exports import staged_folder
from .specs import CONVERT_SOURCES, build_dataset
from .splits import list_files
from .voc import LISTS_DIR, POOL_LIST, find_voc_root

CANONICAL_SPLITS = {"valid": "val", "validation": "val", "training": "train"}


@dataclass
class ConvertReport:
    out: Path
    class_names: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # written split ('' = flat) -> images
    sources: dict[str, str] = field(default_factory=dict)  # written split -> where it came from


def source_splits(spec: dict) -> dict[str, str]:
    """{split to write: the source's split name}; empty for a pool without splits."""
    root = Path(spec["root"])
    if spec.get("splits"):
        names = list(list_files(spec["splits"], root, "splits"))
    elif spec["type"] == "coco":
        if spec.get("annotations"):
            return {}
        by_path: dict[Path, str] = {}
        for name, path in split_annotation_files(root).items():
            if path not in by_path or len(name) < len(by_path[path]):
                by_path[path] = name
        names = list(by_path.values())
    else:
        folder = find_voc_root(root) / LISTS_DIR
        names = [p.stem for p in sorted(folder.glob("*.txt")) if p.stem != POOL_LIST] if folder.is_dir() else []
        if {"train", "val"} <= set(names):  # trainval is their union: not written twice
            names = [n for n in names if n != "trainval"]
    return {CANONICAL_SPLITS.get(n, n): n for n in names}


def convert_dataset(spec: dict, out: str | Path, *, val_fraction: float | None = None,
                    overwrite: bool = False) -> ConvertReport:
    """Write the dataset ``spec`` (type voc, cvat or coco) to ``out`` in the folder layout."""
    if spec.get("type") not in CONVERT_SOURCES:
        raise ConfigError(f"convert reads {', '.join(CONVERT_SOURCES)}, not {spec.get('type')!r}")
    out = Path(out)
    plan = source_splits(spec)
    if plan and val_fraction is not None:
        raise ConfigError(f"{spec['root']}: has its own splits ({', '.join(plan.values())}); --val-fraction is for a "
                          "source without splits")
    if not plan:
        plan = {"train": "train", "val": "val"} if val_fraction is not None else {"": "train"}
        spec = {**spec, "val_fraction": val_fraction} if val_fraction is not None else {**spec, "allow_train_val_overlap": True}
    with staged_folder(out, overwrite=overwrite) as staging:
        return _write_all(spec, plan, staging, out)


def _write_all(spec: dict, plan: dict[str, str], staging: Path, out: Path) -> ConvertReport:
    datasets = {written: build_dataset(spec, split, where=f"convert {spec['type']}") for written, split in plan.items()}
    for dataset in datasets.values():
        dataset.check_files()
    first = next(iter(datasets.values()))
    report = ConvertReport(out=out, class_names=list(first.class_names))
    for written, dataset in datasets.items():
        report.counts[written] = _write_split(dataset, staging / "images" / written, staging / "masks" / written)
        report.sources[written] = dataset.split_source
    write_text(staging / "classes.yaml", classes_yaml_text(first.class_names, first.palette, first.ignore_index))
    return report


def _write_split(dataset, images: Path, masks: Path) -> int:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for index in range(len(dataset)):
        source, name = dataset.image_path(index), dataset.sample_name(index)
        mask = dataset.load_mask(index)
        if mask.max(initial=0) > 255:
            raise DataError(f"{source}: class ids above 255 do not fit the 8-bit masks convert writes")
        shutil.copyfile(source, images / f"{name}{source.suffix.lower()}")
        Image.fromarray(mask.astype(np.uint8)).save(masks / f"{name}.png")
    return len(dataset)
