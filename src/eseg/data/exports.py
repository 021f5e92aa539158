"""Labelled images written in the on-disk layouts labelling tools export, each the layout its
reader in this package takes (docs/data.md): eseg's ``folder``, Pascal ``voc``, CVAT's
"Segmentation mask 1.1" (``cvat``) and COCO JSON as CVAT's "COCO 1.0" writes it (``coco``).
``eseg data synth --format`` writes the synthetic scenes through these, and the tests write
their generated exports through them.

- ``folder``: ``images/<split>/<name>.png``, ``masks/<split>/<name>.png`` (the labels as given:
  class ids, or RGB colours), ``classes.yaml``; split ``''`` is written flat.
- ``voc``: ``JPEGImages/<name>.jpg``, ``SegmentationClass/<name>.png`` palette PNGs (index =
  class id; the palette is the classes' colours, then the VOC colour map, so 255 shows VOC's void
  colour), ``ImageSets/Segmentation/<split>.txt`` (and ``trainval.txt`` with train and val), and
  ``labelmap.txt`` when the classes are named (without, a reader takes the 21 VOC classes).
- ``cvat``: ``JPEGImages/``, RGB colour masks in ``SegmentationClass/``, one object per class
  present in ``SegmentationObject/`` (the images carry no instances), ``labelmap.txt`` and the
  one pool list ``ImageSets/Segmentation/default.txt``: every split goes into the pool.
- ``coco``: ``images/<name>.jpg`` and ``annotations/instances_default.json``, one pool: an
  annotation per class present in an image, as compressed RLE (pycocotools), category ids 1..N in
  class order. A class named ``background`` and the ignore value 255 are left unannotated, which
  is how the reader's ``unannotated`` rule reads them back.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..fileio import atomic_path, write_png, write_text
from ..imports import require
from ..palette import voc_colormap
from .classes import LABELMAP_FILE, classes_yaml_text
from .specs import EXPORT_LAYOUTS
from .voc import LISTS_DIR, POOL_LIST

LAYOUTS = EXPORT_LAYOUTS
POOLED_LAYOUTS = ("cvat", "coco")  # these exports hold one pool of images: no train/val split
JPEG_QUALITY = 92
COCO_FILE = Path("annotations") / "instances_default.json"
IGNORE = 255


@dataclass(frozen=True)
class LabelledImage:
    name: str  # the file stem, unique across the export
    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8 class ids (255 = ignore); a folder's masks may also be (H, W, 3) colours


@dataclass(frozen=True)
class Classes:
    names: Sequence[str]
    colors: np.ndarray | None = None  # (N, 3) uint8 RGB; needed by cvat (colour masks) and labelmap.txt

    def color_table(self) -> np.ndarray:
        if self.colors is None:
            raise ConfigError("this layout draws the classes in their colours: give Classes(names, colors)")
        return np.asarray(self.colors, np.uint8).reshape(-1, 3)


Splits = Mapping[str, Iterable[LabelledImage]]  # split name ('' = none) -> its images, read once


def write_layout(layout: str, root: str | Path, splits: Splits, classes: Classes | None) -> dict[str, int]:
    """Write ``splits`` under ``root`` in ``layout`` (one of LAYOUTS); the count per split."""
    writers = {"folder": write_folder, "voc": write_voc, "cvat": write_cvat, "coco": write_coco}
    if layout not in writers:
        raise ConfigError(f"unknown export layout {layout!r}; one of {', '.join(LAYOUTS)}")
    return writers[layout](Path(root), splits, classes)


@contextlib.contextmanager
def staged_folder(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` when the block succeeds, replacing
    it only with ``overwrite`` (a non-empty ``out`` is refused otherwise); on failure nothing stays."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out}: already exists; choose another --out or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=JPEG_QUALITY)


# --- eseg's folder --------------------------------------------------------------------------------
def write_folder(root: Path, splits: Splits, classes: Classes | None) -> dict[str, int]:
    counts = {}
    for split, samples in splits.items():
        counts[split] = 0
        for sample in samples:
            write_png(root / "images" / split / f"{sample.name}.png", sample.image)
            write_png(root / "masks" / split / f"{sample.name}.png", sample.labels)
            counts[split] += 1
    if classes is not None:
        write_text(root / "classes.yaml", classes_yaml_text(classes.names, classes.colors))
    return counts


# --- Pascal VOC and CVAT "Segmentation mask 1.1" ----------------------------------------------------
def voc_palette(classes: Classes | None) -> np.ndarray:
    """256 colours: the classes' own first (when they have colours), then the VOC colour map."""
    palette = voc_colormap(256)
    if classes is not None and classes.colors is not None:
        own = classes.color_table()
        palette[:len(own)] = own
    return palette


def write_voc(root: Path, splits: Splits, classes: Classes | None, *, palette: np.ndarray | None = None) -> dict[str, int]:
    """Palette PNGs (``palette``: default ``voc_palette(classes)``) and one list per split."""
    palette = voc_palette(classes) if palette is None else palette
    lists: dict[str, list[str]] = {}
    for split, samples in splits.items():
        lists[split] = []
        for sample in samples:
            write_jpeg(root / "JPEGImages" / f"{sample.name}.jpg", sample.image)
            write_png(root / "SegmentationClass" / f"{sample.name}.png", sample.labels.astype(np.uint8), palette=palette)
            lists[split].append(sample.name)
    if {"train", "val"} <= set(lists):
        lists["trainval"] = lists["train"] + lists["val"]
    for split, names in lists.items():
        write_text(root / LISTS_DIR / f"{split}.txt", "".join(f"{name}\n" for name in names))
    if classes is not None:
        write_labelmap(root / LABELMAP_FILE, classes)
    return {split: len(names) for split, names in lists.items() if split in splits}


def write_labelmap(path: Path, classes: Classes) -> None:
    """CVAT's labelmap.txt: ``name:r,g,b::`` per class, in id order."""
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(classes.names, classes.color_table().tolist())]
    write_text(path, "\n".join(lines) + "\n")


def write_cvat(root: Path, splits: Splits, classes: Classes | None) -> dict[str, int]:
    """Every split into CVAT's one pool (default.txt), the masks in the labelmap's colours."""
    if classes is None:
        raise ConfigError("a CVAT export names its classes and colours in labelmap.txt: give the classes")
    colors, objects = classes.color_table(), voc_colormap(256)
    counts, names = {}, []
    for split, samples in splits.items():
        counts[split] = 0
        for sample in samples:
            labels = sample.labels
            write_jpeg(root / "JPEGImages" / f"{sample.name}.jpg", sample.image)
            write_png(root / "SegmentationClass" / f"{sample.name}.png", _colour(labels, colors))
            write_png(root / "SegmentationObject" / f"{sample.name}.png", objects[_object_ids(labels, classes)])
            names.append(sample.name)
            counts[split] += 1
    write_text(root / LISTS_DIR / f"{POOL_LIST}.txt", "".join(f"{name}\n" for name in names))
    write_labelmap(root / LABELMAP_FILE, classes)
    return counts


def _colour(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    if labels.max(initial=0) >= len(colors):
        raise ConfigError(f"label value {int(labels.max())} has no colour: {len(colors)} classes")
    return colors[labels]


def _object_ids(labels: np.ndarray, classes: Classes) -> np.ndarray:
    """Object k (1, 2, ...) for the k-th class present that is not background; 0 elsewhere."""
    present = [int(c) for c in np.unique(labels) if c != IGNORE and not _is_background(classes, int(c))]
    lookup = np.zeros(256, np.uint8)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[labels]


def _is_background(classes: Classes | None, class_id: int) -> bool:
    return classes is not None and class_id < len(classes.names) and classes.names[class_id].lower() == "background"


# --- COCO JSON ------------------------------------------------------------------------------------
def write_coco(root: Path, splits: Splits, classes: Classes | None) -> dict[str, int]:
    """CVAT's "COCO 1.0": every split into images/ and one annotations/instances_default.json."""
    if classes is None:
        raise ConfigError("a COCO export names its categories: give the classes")
    categories = coco_categories(classes)
    images, annotations, counts = [], [], {}
    for split, samples in splits.items():
        counts[split] = 0
        for sample in samples:
            image_id = len(images) + 1
            write_jpeg(root / "images" / f"{sample.name}.jpg", sample.image)
            height, width = sample.labels.shape
            images.append({"id": image_id, "file_name": f"{sample.name}.jpg", "height": height, "width": width})
            annotations += coco_annotations(sample.labels, image_id, len(annotations) + 1, categories)
            counts[split] += 1
    write_coco_json(root / COCO_FILE, images, annotations, categories)
    return counts


def coco_categories(classes: Classes) -> list[dict]:
    """Category ids 1..N in class order, with the class id each stands for (``class_id``, not
    written); a class named background has none."""
    kept = [i for i in range(len(classes.names)) if not _is_background(classes, i)]
    return [{"id": k, "name": classes.names[i], "class_id": i} for k, i in enumerate(kept, 1)]


def coco_annotations(labels: np.ndarray, image_id: int, first_id: int, categories: list[dict]) -> list[dict]:
    """One compressed-RLE annotation per category present in ``labels`` (class ids)."""
    mask_api = require("pycocotools.mask", "coco", "writing COCO JSON")
    annotations = []
    for category in categories:
        region = np.asfortranarray((labels == category["class_id"]).astype(np.uint8))
        if not region.any():
            continue
        rle = mask_api.encode(region)
        annotations.append({
            "id": first_id + len(annotations), "image_id": image_id, "category_id": category["id"],
            "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
            "area": float(mask_api.area(rle)), "bbox": [float(v) for v in mask_api.toBbox(rle)], "iscrowd": 0})
    return annotations


def write_coco_json(path: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> None:
    """A COCO file: ``categories`` as {id, name} (plus an empty supercategory)."""
    doc = {"info": {"description": "written by eseg"}, "licenses": [], "images": images, "annotations": annotations,
           "categories": [{"id": c["id"], "name": c["name"], "supercategory": c.get("supercategory", "")}
                          for c in categories]}
    write_text(path, json.dumps(doc))
