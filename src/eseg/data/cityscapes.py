"""Cityscapes in its official layout::

    root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
                                        <city>_<seq>_<frame>_gtFine_labelTrainIds.png  (optional)

``label_format``: 'labelIds' reads the official labelId PNGs and maps them to the 19 trainIds
through cityscapesscripts' label table (every other id -> 255); 'labelTrainIds' reads PNGs already
converted by ``csCreateTrainIdLabelImgs``; 'auto' (default) uses labelIds where present and
labelTrainIds otherwise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..palette import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_NUM_LABEL_IDS,
    cityscapes_label_to_train_id,
)
from .base import Sample, SegDataset, Transform

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES = {"labelIds": "_gtFine_labelIds.png", "labelTrainIds": "_gtFine_labelTrainIds.png"}
LABEL_FORMATS = ("auto", "labelIds", "labelTrainIds")


def _label_id_lut() -> np.ndarray:
    """labelId -> trainId over all 256 byte values. Values that are no Cityscapes labelId (34..254)
    map to -1 so ``load`` reports them as corrupt instead of silently ignoring them."""
    lut = cityscapes_label_to_train_id()
    lut[CITYSCAPES_NUM_LABEL_IDS:255] = -1
    return lut


class CityscapesDataset(SegDataset):
    """The 19-class Cityscapes fine annotations. ``sample_name(i)`` is ``<city>_<seq>_<frame>``."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        label_format: str = "auto",
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        if label_format not in LABEL_FORMATS:
            raise ConfigError(f"cityscapes label_format must be one of {LABEL_FORMATS}, got {label_format!r}")
        super().__init__(split=split, class_names=CITYSCAPES_CLASSES, palette="cityscapes",
                         transform=transform, on_bad_data=on_bad_data)
        self.root = Path(root)
        self.label_format = label_format
        self._lut = _label_id_lut()
        self._is_label_ids: list[bool] = []
        image_root = self.root / "leftImg8bit" / split
        if not image_root.is_dir():
            raise DataError(f"{image_root}: Cityscapes split folder not found (expected root/leftImg8bit/{split}/<city>/)")
        for image in sorted(image_root.glob(f"*/*{IMAGE_SUFFIX}")):
            stem = image.name[: -len(IMAGE_SUFFIX)]
            mask, is_label_ids = self._find_label(self.root / "gtFine" / split / image.parent.name, stem)
            self.samples.append(Sample(image=image, mask=mask, name=stem))
            self._is_label_ids.append(is_label_ids)
        self._finalize_samples(image_root, f"*{IMAGE_SUFFIX} images")

    def _find_label(self, folder: Path, stem: str) -> tuple[Path | None, bool]:
        formats = ("labelIds", "labelTrainIds") if self.label_format == "auto" else (self.label_format,)
        for fmt in formats:
            path = folder / f"{stem}{LABEL_SUFFIXES[fmt]}"
            if path.is_file():
                return path, fmt == "labelIds"
        return None, False

    def map_labels(self, raw: np.ndarray, index: int) -> np.ndarray:
        if not self._is_label_ids[index]:
            return raw
        labels = self._lut[np.clip(raw, 0, 255)]
        labels[(raw < 0) | (raw > 255)] = -1  # 16-bit PNGs can hold values past the table
        return labels

    def city(self, index: int) -> str:
        return self.samples[index].image.parent.name

    def label_path(self, index: int) -> Path:
        """The official ``*_gtFine_labelIds.png`` of sample ``index`` (what the Cityscapes evaluator
        compares against); predictions for it are named ``<sample_name(index)>*.png``."""
        image = self.samples[index].image
        path = self.root / "gtFine" / self.split / image.parent.name / f"{self.sample_name(index)}{LABEL_SUFFIXES['labelIds']}"
        if not path.is_file():
            raise DataError(f"{path}: labelIds ground truth not found; the official evaluator needs the labelIds PNGs")
        return path
