"""COCO JSON segmentation (exports of CVAT "COCO 1.0", Label Studio, Roboflow, the COCO sets),
rasterised with pycocotools (``pip install 'eseg[coco]'``).

Annotation files (``annotations`` in the spec: one file, or ``{split: file}``; relative to
``root``), else found in ``root``: one per split as ``annotations/instances_<split>*.json`` (COCO,
``instances_train2017.json`` serves ``train``) or ``<split>/_annotations.coco.json`` (Roboflow,
``valid`` serves ``val``); else one file for the whole pool: ``annotations/instances_default.json``
(CVAT), ``result.json`` (Label Studio), ``_annotations.coco.json`` or ``annotations.json``, split
by ``val_fraction`` or split lists (:mod:`eseg.data.splits`). Images: ``images_dir``, else the
first of the annotation file's folder, ``root``, ``root/images``, ``root/<train2017>`` that holds
the first image's ``file_name``.

Rules:

- class ids follow the order of ``categories``, contiguous from 0 whatever the category ids;
- ``unannotated: background`` (default): pixels no annotation covers are class 0,
  ``background`` (added in front unless a category has that name, which is then used);
  ``unannotated: ignore``: they are the ignore index 255 and the categories start at 0;
- ``iscrowd`` regions are the ignore index 255;
- overlaps: annotations are painted largest first (by their pixel count, ties in file order), so
  a smaller region lying on a larger one stays visible; a crowd region paints 255 in its turn;
- polygons (one or several per annotation) and RLE (compressed or not) are both read; an
  annotation with an empty ``segmentation`` (a box only) paints nothing.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..imports import require
from .base import Sample, SegDataset, Transform
from .splits import SplitOptions, refuse_mixed

UNANNOTATED = ("background", "ignore")
POOL_FILES = ("annotations/instances_default.json", "result.json", "_annotations.coco.json", "annotations.json")
SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "train": ("train", "training"), "test": ("test", "testing")}


def split_annotation_files(root: Path) -> dict[str, Path]:
    """{split: file} found in ``root`` (COCO's instances_<split>*.json, Roboflow's folders)."""
    found: dict[str, Path] = {}
    for path in sorted((root / "annotations").glob("instances_*.json")):
        name = path.stem[len("instances_"):]
        if name != "default":
            found[name] = path
            found.setdefault(name.rstrip("0123456789"), path)
    for path in sorted(root.glob("*/_annotations.coco.json")):
        found[path.parent.name] = path
    return found


def find_annotation_file(root: Path, split: str, annotations) -> tuple[Path, bool]:
    """(the annotation file of ``split``, whether it is that split's own file)."""
    if isinstance(annotations, Mapping):
        if split not in annotations:
            raise DataError(f"data.dataset.annotations names no file for split {split!r} (has: {', '.join(annotations)})")
        return root / annotations[split], True
    if annotations not in (None, ""):
        return root / annotations, False
    per_split = split_annotation_files(root)
    for name in SPLIT_ALIASES.get(split, (split,)):
        if name in per_split:
            return per_split[name], True
    if per_split:
        raise DataError(f"{root}: no COCO annotation file for split {split!r}; found: "
                        + ", ".join(f"{k} ({v.name})" for k, v in per_split.items()))
    for name in POOL_FILES:
        if (root / name).is_file():
            return root / name, False
    raise DataError(f"{root}: no COCO annotation file found (looked for annotations/instances_<split>*.json, "
                    f"<split>/_annotations.coco.json, {', '.join(POOL_FILES)}); name it: annotations: FILE")


def read_coco(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: COCO annotation file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the COCO JSON ({exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO file (needs the lists 'images', 'annotations' and 'categories')")
    if not doc["categories"]:
        raise DataError(f"{path}: 'categories' is empty; a segmentation file names its classes there")
    return doc


def class_table(categories: list[dict], unannotated: str) -> tuple[list[str], dict[int, int], int]:
    """(class names, category id -> class id, the value of unannotated pixels)."""
    names = [str(c["name"]) for c in categories]
    if unannotated == "ignore":
        return names, {c["id"]: i for i, c in enumerate(categories)}, 255
    lowered = [n.lower() for n in names]
    if "background" in lowered:
        return names, {c["id"]: i for i, c in enumerate(categories)}, lowered.index("background")
    return ["background", *names], {c["id"]: i + 1 for i, c in enumerate(categories)}, 0


class COCODataset(SegDataset):
    """COCO polygons and RLE rasterised into class-id masks; see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        annotations: str | Mapping[str, str] | None = None,
        images_dir: str | None = None,
        unannotated: str = "background",
        split_options: SplitOptions | None = None,
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        require("pycocotools.mask", "coco", "type: coco (COCO JSON polygons and RLE)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        if unannotated not in UNANNOTATED:
            raise ConfigError(f"data.dataset.unannotated must be one of {UNANNOTATED}, got {unannotated!r}")
        self.annotation_file, own = find_annotation_file(self.root, split, annotations)
        doc = read_coco(self.annotation_file)
        names, self._class_of, self._fill = class_table(doc["categories"], unannotated)
        super().__init__(split=split, class_names=names, transform=transform, on_bad_data=on_bad_data,
                         split_options=split_options)
        rule = self.split_options.rule(split, str(self.annotation_file), self.root)
        refuse_mixed(rule, own, f"one annotation file per split ({self.annotation_file.name} for {split!r})")
        pool, records = self._read_images(doc, images_dir)
        if own and not rule.lists:
            keep, self.split_source = list(range(len(pool))), f"annotation file {self.annotation_file} ({len(pool)} images)"
        else:
            keep, self.split_source = rule.select([s.name for s in pool])
        self.samples = [pool[i] for i in keep]
        self._records = [records[i] for i in keep]  # (height, width, annotations)
        if not self.samples:
            raise DataError(f"{self.annotation_file}: no images for split {split!r}")

    def _read_images(self, doc: dict, images_dir: str | None) -> tuple[list[Sample], list[tuple]]:
        by_image: dict[int, list[dict]] = {}
        for ann in doc["annotations"]:
            by_image.setdefault(ann.get("image_id"), []).append(ann)
        if doc["annotations"] and not any(ann.get("segmentation") for ann in doc["annotations"]):
            raise DataError(f"{self.annotation_file}: no annotation has a 'segmentation' (polygons or RLE): a "
                            "detection (boxes only) export; export segmentation masks or polygons instead")
        base = self._image_base(doc["images"], images_dir)
        samples, records, seen = [], [], {}
        for info in doc["images"]:
            path = base / info["file_name"]
            if path.stem in seen:
                raise DataError(f"{self.annotation_file}: two images named '{path.stem}' ({seen[path.stem]}, "
                                f"{info['file_name']}); sample names must be unique")
            seen[path.stem] = info["file_name"]
            samples.append(Sample(image=path, mask=None, name=path.stem))
            records.append((int(info["height"]), int(info["width"]), by_image.get(info["id"], [])))
        return samples, records

    def _image_base(self, images: list[dict], images_dir: str | None) -> Path:
        if not images:
            raise DataError(f"{self.annotation_file}: 'images' is empty")
        if images_dir:
            return self.root / images_dir
        stem = self.annotation_file.stem
        candidates = [self.annotation_file.parent, self.root, self.root / "images",
                      self.root / stem.removeprefix("instances_")]
        for base in candidates:
            if (base / images[0]["file_name"]).is_file():
                return base
        raise DataError(f"{self.annotation_file}: image '{images[0]['file_name']}' is in none of "
                        f"{', '.join(str(c) for c in candidates)}; name the folder: images_dir: DIR")

    # --- masks from annotations -----------------------------------------------------------------
    def _describe(self, index: int) -> str:
        return f"{self.samples[index].image} (annotations in {self.annotation_file})"

    def mask_size(self, index: int) -> tuple[int, int]:
        height, width, _ = self._records[index]
        return height, width

    def read_raw_mask(self, index: int) -> np.ndarray:
        return self.rasterise(index)

    def stored_value_counts(self, index: int):
        values, counts = np.unique(self.rasterise(index), return_counts=True)
        return False, values.astype(np.int64), counts.astype(np.int64)

    def rasterise(self, index: int) -> np.ndarray:
        """The class-id mask of sample ``index`` (int64 H, W) by the module's rules."""
        height, width, annotations = self._records[index]
        mask = np.full((height, width), self._fill, dtype=np.int64)
        layers = []
        for order, ann in enumerate(annotations):
            region = self._region(ann, height, width, index)
            if region is not None:
                value = 255 if ann.get("iscrowd") else self._category(ann, index)
                layers.append((-int(region.sum()), order, region, value))
        for _, _, region, value in sorted(layers, key=lambda layer: layer[:2]):
            mask[region] = value
        return mask

    def _category(self, ann: dict, index: int) -> int:
        if ann.get("category_id") not in self._class_of:
            raise DataError(f"{self._describe(index)}: annotation {ann.get('id')} has category_id "
                            f"{ann.get('category_id')!r}, which 'categories' does not list")
        return self._class_of[ann["category_id"]]

    def _region(self, ann: dict, height: int, width: int, index: int) -> np.ndarray | None:
        """The annotation's pixels (bool H, W), or None when it has no segmentation."""
        from pycocotools import mask as mask_api  # checked by __init__; not kept: modules do not pickle

        segmentation = ann.get("segmentation")
        if not segmentation:
            return None
        try:
            if isinstance(segmentation, list):  # polygons: [x0, y0, x1, y1, ...] each
                polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
                if len(polygons) != len(segmentation):
                    raise ValueError("a polygon needs at least 3 (x, y) points")
                rle = mask_api.merge(mask_api.frPyObjects(polygons, height, width))
            elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
                rle = mask_api.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            if list(rle["size"]) != [height, width]:
                raise ValueError(f"RLE size {rle['size']} differs from the image's {[height, width]}")
            return mask_api.decode(rle).astype(bool)
        except Exception as exc:  # pycocotools raises bare Exception for malformed input
            raise DataError(f"{self._describe(index)}: annotation {ann.get('id')}: unreadable segmentation "
                            f"({exc})") from exc
