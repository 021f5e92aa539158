"""The generic folder dataset for users' own data.

Layout (``root``)::

    classes.yaml            # or classes.yml / classes.json
    images/train/xxx.jpg    # any of io.IMAGE_EXTENSIONS
    masks/train/xxx.png     # single-channel label image with the same stem (+ mask_suffix)
    images/val/...  masks/val/...

Without split subfolders (``images/xxx.jpg`` + ``masks/xxx.png``) every split name reads the whole
folder, which suits evaluation and prediction; use split folders to hold data out of training.

``classes.yaml``::

    names: [road, car, ...]            # required, class id i is names[i]
    colors: [[128, 64, 128], ...]      # optional, one RGB triplet per class
    ignore_index: 255                  # optional (default 255); the spec's ignore_index wins

Mask pixel values are the class ids; pixels equal to ``ignore_index`` are ignored.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..errors import DataError
from .base import Sample, SegDataset, Transform
from .io import IMAGE_EXTENSIONS, MASK_EXTENSIONS

CLASSES_FILES = ("classes.yaml", "classes.yml", "classes.json")


def load_classes_file(path: str | Path) -> dict:
    """Read and check a classes file; returns {'names': [...], 'colors': [...] | None, 'ignore_index': int | None}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: classes file not found")
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot parse classes file ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping with 'names' (and optional 'colors', 'ignore_index')")
    unknown = sorted(set(doc) - {"names", "colors", "ignore_index"})
    if unknown:
        raise DataError(f"{path}: unknown key(s) {unknown}; allowed: names, colors, ignore_index")
    names = doc.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{path}: 'names' must be a non-empty list of class-name strings")
    colors = doc.get("colors")
    if colors is not None:
        ok = isinstance(colors, list) and len(colors) == len(names) and all(
            isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in colors)
        if not ok:
            raise DataError(f"{path}: 'colors' must be {len(names)} [r, g, b] triplets of integers 0..255")
    ignore_index = doc.get("ignore_index")
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise DataError(f"{path}: 'ignore_index' must be an integer, got {ignore_index!r}")
    return {"names": names, "colors": colors, "ignore_index": ignore_index}


def find_classes_file(root: Path) -> Path:
    for name in CLASSES_FILES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no {' / '.join(CLASSES_FILES)} listing the class names was found in the dataset root")


def _files_by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """{stem: file}; two files with one stem (a.png and a.jpg) are an error, not one silently dropped."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in files:
                raise DataError(f"{files[path.stem]} and {path}: two files with the stem '{path.stem}'; images and "
                                "masks are matched by stem, so keep only one of them")
            files[path.stem] = path
    return files


class FolderDataset(SegDataset):
    """Images and masks matched by file stem; see the module docstring for the layout."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        classes: str | Path | None = None,
        ignore_index: int | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        mask_suffix: str = "",
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        info = load_classes_file(Path(classes) if classes else find_classes_file(self.root))
        ignore = ignore_index if ignore_index is not None else info["ignore_index"]
        super().__init__(split=split, class_names=info["names"], palette=info["colors"],
                         ignore_index=255 if ignore is None else ignore,
                         transform=transform, on_bad_data=on_bad_data)
        image_folder, mask_folder = self._split_folders(self.root / images_dir, self.root / masks_dir)
        masks = _files_by_stem(mask_folder, MASK_EXTENSIONS) if mask_folder.is_dir() else {}
        for stem, image in _files_by_stem(image_folder, IMAGE_EXTENSIONS).items():
            self.samples.append(Sample(image=image, mask=masks.get(stem + mask_suffix), name=stem))
        self._finalize_samples(image_folder, "images")

    def _split_folders(self, images: Path, masks: Path) -> tuple[Path, Path]:
        if not images.is_dir():
            raise DataError(f"{images}: image folder not found (expected {images}/{self.split}/ or images directly in it)")
        if (images / self.split).is_dir():
            return images / self.split, masks / self.split
        subfolders = sorted(p.name for p in images.iterdir() if p.is_dir())
        if subfolders:
            raise DataError(f"{images / self.split}: split folder not found; available splits: {', '.join(subfolders)}")
        return images, masks
