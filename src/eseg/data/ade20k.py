"""ADE20K SceneParsing (ADEChallengeData2016)::

    root/images/{training,validation}/ADE_train_00000001.jpg, ...
    root/annotations/{training,validation}/ADE_train_00000001.png, ...

``root`` may be the ADEChallengeData2016 folder or its parent. Split names 'train'/'val' are
accepted for 'training'/'validation'. 150 classes: annotation value 0 ("other") becomes the
ignore index 255 and value v becomes class v - 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..palette import ADE20K_CLASSES
from .base import Sample, SegDataset, Transform

SPLIT_FOLDERS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


class ADE20KDataset(SegDataset):
    """The 150-class ADE20K scene-parsing benchmark."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        super().__init__(split=split, class_names=ADE20K_CLASSES, palette="ade20k",
                         transform=transform, on_bad_data=on_bad_data)
        root = Path(root)
        self.root = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        if split not in SPLIT_FOLDERS:
            raise DataError(f"ADE20K split {split!r} does not exist; use one of {', '.join(SPLIT_FOLDERS)}")
        folder = SPLIT_FOLDERS[split]
        image_root = self.root / "images" / folder
        if not image_root.is_dir():
            raise DataError(f"{image_root}: ADE20K split folder not found (expected ADEChallengeData2016/images/{folder}/)")
        for image in sorted(image_root.glob("*.jpg")):
            mask = self.root / "annotations" / folder / f"{image.stem}.png"
            self.samples.append(Sample(image=image, mask=mask if mask.is_file() else None, name=image.stem))
        self._finalize_samples(image_root, "*.jpg images")

    def map_labels(self, raw: np.ndarray, index: int) -> np.ndarray:
        labels = raw - 1
        labels[raw == 0] = self.ignore_index  # 0 is "other"
        labels[raw > self.num_classes] = -1  # not an ADE20K class: reported by load()
        return labels
