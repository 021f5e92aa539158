"""Pictures of a pass: :class:`PanelWriter`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from .evaluator import DatasetEvaluator


class PanelWriter(DatasetEvaluator):
    """Captioned panels (image, ground truth, prediction) with a legend of the classes present,
    for the first ``limit`` items processed; with ``color_masks`` also the coloured prediction."""

    def __init__(self, folder: str | Path, *, mean, std, class_names: Sequence[str], palette,
                 limit: int | None = None, color_masks: bool = False) -> None:
        self.folder, self.limit, self.color_masks = Path(folder), limit, color_masks
        self.mean, self.std = mean, std
        self.class_names, self.palette = list(class_names), np.asarray(palette, dtype=np.uint8)
        self.count = 0

    def reset(self) -> None:
        self.count = 0

    def process(self, items: list[dict], masks: list[torch.Tensor]) -> None:
        from ..data.transforms import denormalize
        from ..viz import colorize, overlay, panel, present_classes

        for item, mask in zip(items, masks):
            if self.limit is not None and self.count >= self.limit:
                return
            image, truth, pred = denormalize(item["image"], self.mean, self.std), item["mask"].numpy(), mask.numpy()
            tiles = [("image", image), ("ground truth", overlay(image, truth, self.palette)),
                     ("prediction", overlay(image, pred, self.palette))]
            classes = present_classes(truth, pred, num_classes=len(self.palette))
            name = f"{int(item['index']):04d}"
            fileio.write_png(self.folder / f"{name}.png",
                             panel(tiles, legend=(self.class_names, self.palette), legend_classes=classes))
            if self.color_masks:
                fileio.write_png(self.folder / f"{name}_pred.png", colorize(pred, self.palette))
            self.count += 1

    def evaluate(self) -> dict:
        return {"panels": {"dir": str(self.folder), "files": self.count}}
