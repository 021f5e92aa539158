"""Small labelled datasets written in the on-disk layouts labelling tools export (VOC, CVAT
"Segmentation mask 1.1", COCO JSON from CVAT and the COCO sets, Hugging Face save_to_disk and
parquet, eseg folders), each returning the class ids it painted so tests compare against them.
What is drawn (boxes, VOC's void borders, COCO's polygon / RLE / crowd mix) is here; the files are
written by eseg.data.exports, the writers ``eseg data synth --format`` uses."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from eseg.data import exports
from eseg.data.exports import Classes, LabelledImage
from eseg.fileio import write_png as save_png  # noqa: F401 - the tests write deliberately broken masks with it

H, W = 64, 96
CLASSES = ["background", "circle", "square", "triangle"]
COLORS = [(0, 0, 0), (250, 50, 83), (51, 221, 255), (255, 204, 51)]
VOC_IDS = {1: 15, 2: 8, 3: 12}  # our classes as VOC ids: person, cat, dog


def rectangles(rng, count: int = 3) -> list[tuple[int, int, int, int, int]]:
    """(class 1..3, x0, y0, x1, y1) boxes, at least 8x8, in painting order (later on top)."""
    boxes = []
    for class_id in range(1, count + 1):
        x0, y0 = int(rng.integers(0, W - 24)), int(rng.integers(0, H - 20))
        boxes.append((class_id, x0, y0, x0 + int(rng.integers(8, 24)), y0 + int(rng.integers(8, 20))))
    return boxes


def paint(boxes, fill: int = 0) -> np.ndarray:
    labels = np.full((H, W), fill, np.uint8)
    for class_id, x0, y0, x1, y1 in boxes:
        labels[y0:y1, x0:x1] = class_id
    return labels


def photo(rng, labels: np.ndarray) -> np.ndarray:
    """An RGB image whose colour follows the labels (so a few steps learn something) plus noise."""
    base = np.array(COLORS + [(128, 128, 128)] * 252, np.int16)[labels]
    return np.clip(base + rng.integers(-30, 30, (H, W, 3)), 0, 255).astype(np.uint8)


def voc_colormap_reference(n: int = 256) -> np.ndarray:
    """The VOC devkit's VOClabelcolormap.m, transcribed independently: bitget per channel."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def write_voc(root: Path, n: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012 with palette PNGs (a 255 void border round each object) and
    ImageSets/Segmentation/{train,val,trainval}.txt; returns {name: VOC ids}."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        boxes = rectangles(rng)
        ours = paint(boxes)
        ids = np.zeros_like(ours)
        for class_id, x0, y0, x1, y1 in boxes:  # the void border VOC draws round objects
            ids[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = 255
        for class_id, x0, y0, x1, y1 in boxes:
            ids[y0:y1, x0:x1] = VOC_IDS[class_id]
        samples.append(LabelledImage(f"2007_{i:06d}", photo(rng, ours), ids))
    exports.write_voc(root / "VOCdevkit" / "VOC2012", {"train": samples[:8], "val": samples[8:]}, None,
                      palette=voc_colormap_reference())
    return {sample.name: sample.labels for sample in samples}


def write_cvat(root: Path, n: int = 12, seed: int = 1) -> dict[str, np.ndarray]:
    """CVAT "Segmentation mask 1.1": RGB colour masks, labelmap.txt, ImageSets/Segmentation/default.txt."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        ours = paint(rectangles(rng))
        samples.append(LabelledImage(f"frame_{i:06d}", photo(rng, ours), ours))
    exports.write_cvat(root, {"": samples}, Classes(CLASSES, np.array(COLORS, np.uint8)))
    return {sample.name: sample.labels for sample in samples}


# --- COCO -------------------------------------------------------------------------------------------
CATEGORIES = [{"id": 7, "name": "square"}, {"id": 3, "name": "circle"}, {"id": 11, "name": "triangle"}]
CATEGORY_OF_CLASS = {2: 7, 1: 3, 3: 11}  # our class -> COCO category id (sparse, listed out of order)
CLASS_ORDER = {7: 1, 3: 2, 11: 3}  # category id -> eseg class id: contiguous in 'categories' order


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: run lengths in column-major order, starting with a run of zeros."""
    flat = mask.T.ravel().astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def coco_image(rng, image_id: int, first_ann_id: int, file_name: str):
    """One image's annotations (a polygon, a compressed RLE, an uncompressed RLE, a crowd region)
    and the mask eseg's rules give: largest region first, crowd -> 255, unannotated -> 0."""
    from pycocotools import mask as mask_api

    boxes = rectangles(rng)
    anns, regions = [], []
    for k, (class_id, x0, y0, x1, y1) in enumerate(boxes):
        region = np.zeros((H, W), bool)
        region[y0:y1, x0:x1] = True
        if k == 0:  # polygon vertices on pixel corners cover exactly the box's pixels
            segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        elif k == 1:
            rle = mask_api.encode(np.asfortranarray(region.astype(np.uint8)))
            segmentation = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
        else:
            segmentation = {"size": [H, W], "counts": rle_counts(region)}
        anns.append({"id": first_ann_id + k, "image_id": image_id, "category_id": CATEGORY_OF_CLASS[class_id],
                     "segmentation": segmentation, "iscrowd": 0, "area": float(region.sum()),
                     "bbox": [x0, y0, x1 - x0, y1 - y0]})
        regions.append((-int(region.sum()), k, region, CLASS_ORDER[CATEGORY_OF_CLASS[class_id]]))
    crowd = np.zeros((H, W), bool)
    crowd[H - 6:, W - 10:] = True
    anns.append({"id": first_ann_id + 3, "image_id": image_id, "category_id": 3, "iscrowd": 1, "area": 60.0,
                 "segmentation": {"size": [H, W], "counts": rle_counts(crowd)}, "bbox": [W - 10, H - 6, 10, 6]})
    regions.append((-int(crowd.sum()), 3, crowd, 255))
    expected = np.zeros((H, W), np.uint8)
    for _, _, region, value in sorted(regions, key=lambda r: r[:2]):
        expected[region] = value
    ours = paint(boxes)
    info = {"id": image_id, "file_name": file_name, "height": H, "width": W}
    return info, anns, expected, photo(rng, ours)


def write_coco_cvat(root: Path, n: int = 12, seed: int = 2) -> dict[str, np.ndarray]:
    """CVAT "COCO 1.0": annotations/instances_default.json + images/; returns {name: expected ids}."""
    rng = np.random.default_rng(seed)
    images, anns, expected = [], [], {}
    for i in range(n):
        name = f"img_{i:04d}"
        info, image_anns, mask, rgb = coco_image(rng, i + 1, 10 * i + 1, f"{name}.jpg")
        exports.write_jpeg(root / "images" / f"{name}.jpg", rgb)
        images.append(info)
        anns += image_anns
        expected[name] = mask
    exports.write_coco_json(root / "annotations" / "instances_default.json", images, anns, CATEGORIES)
    return expected


def write_coco_sets(root: Path, seed: int = 3) -> dict[str, dict[str, np.ndarray]]:
    """The COCO sets' layout: annotations/instances_{train,val}2017.json + {train,val}2017/."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in (("train", 8), ("val", 4)):
        images, anns, out[split] = [], [], {}
        for i in range(count):
            name = f"{split}_{i:012d}"
            info, image_anns, mask, rgb = coco_image(rng, i + 1, 10 * i + 1, f"{name}.jpg")
            exports.write_jpeg(root / f"{split}2017" / f"{name}.jpg", rgb)
            images.append(info)
            anns += image_anns
            out[split][name] = mask
        exports.write_coco_json(root / "annotations" / f"instances_{split}2017.json", images, anns, CATEGORIES)
    return out


# --- Hugging Face -------------------------------------------------------------------------------------
def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_hf(root: Path, kind: str = "save_to_disk", seed: int = 4) -> dict[str, dict[str, np.ndarray]]:
    """A DatasetDict {train: 8, validation: 4} with ``image`` and ``annotation`` Image columns, the
    annotation ADE-style (0 = other, class c stored as c + 1): ``save_to_disk`` with an
    id2label.json beside it, or parquet files in the Hub's ``data/<split>-*.parquet`` layout.
    Returns {split: {name: class ids (255 = ignore)}}."""
    import datasets

    rng = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()})
    tables, truth = {}, {}
    for split, count in (("train", 8), ("validation", 4)):
        rows = {"image": [], "annotation": []}
        truth[split] = {}
        for i in range(count):
            ours = paint(rectangles(rng))
            stored = ours + 1
            stored[:4, :4] = 0  # "other"
            name = f"{split}_{i:03d}"
            rows["image"].append({"bytes": _png_bytes(photo(rng, ours)), "path": f"{name}.png"})
            rows["annotation"].append({"bytes": _png_bytes(stored.astype(np.uint8)), "path": None})
            ids = ours.copy()
            ids[:4, :4] = 255
            truth[split][name] = ids
        tables[split] = datasets.Dataset.from_dict(rows, features=features)
    if kind == "save_to_disk":
        datasets.DatasetDict(tables).save_to_disk(str(root))
        (root / "id2label.json").write_text(json.dumps({str(i): c for i, c in enumerate(CLASSES)}))
    else:
        for split, table in tables.items():
            (root / "data").mkdir(parents=True, exist_ok=True)
            table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return truth


# --- eseg's folder ------------------------------------------------------------------------------------
def write_folder(root: Path, n: int = 12, seed: int = 5, *, ids=(0, 1, 2, 3), names=CLASSES,
                 colour_masks: bool = False, split_folders: bool = False) -> dict[str, np.ndarray]:
    """A folder dataset, flat (or images/{train,val}) with masks holding ``ids[c]`` for class c
    (or colours when ``colour_masks``); returns {name: stored values (or class ids for colours)}."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[LabelledImage]] = {}
    stored = {}
    for i in range(n):
        name = f"s{i:03d}"
        split = ("train" if i < n * 3 // 4 else "val") if split_folders else ""
        ours = paint(rectangles(rng))
        values = np.array(ids, np.uint8)[ours]
        mask = np.array(COLORS, np.uint8)[ours] if colour_masks else values
        splits.setdefault(split, []).append(LabelledImage(name, photo(rng, ours), mask))
        stored[name] = ours if colour_masks else values
    exports.write_folder(root, splits, Classes(list(names), np.array(COLORS, np.uint8) if colour_masks else None))
    return stored
