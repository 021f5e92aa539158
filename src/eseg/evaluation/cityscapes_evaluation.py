"""Predictions in the Cityscapes benchmark's own format: :class:`CityscapesExporter`."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from ..errors import ConfigError
from .evaluator import DatasetEvaluator


class CityscapesExporter(DatasetEvaluator):
    """Writes trainId predictions as labelIds PNGs named ``<city>_<seq>_<frame>_pred.png``, the
    format of the Cityscapes test server and of cityscapesscripts' evaluator. Predictions have
    the label's size already, so they are written as they come."""

    def __init__(self, dataset, out_dir: str | Path, *, overwrite: bool = False) -> None:
        from ..data.cityscapes import CityscapesDataset
        from ..palette import cityscapes_train_id_to_label_id

        base = getattr(dataset, "dataset", dataset)  # a subset's dataset
        if not isinstance(base, CityscapesDataset):
            raise ConfigError(f"--cityscapes-export needs a Cityscapes dataset (type: cityscapes), got {type(base).__name__}")
        self.dataset = base
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        table = cityscapes_train_id_to_label_id()
        self.lut = np.zeros(256, dtype=np.uint8)  # anything outside the 19 trainIds becomes 0 (unlabeled)
        self.lut[: len(table)] = table
        self.written: list[Path] = []

    def target(self, index: int) -> Path:
        return self.out_dir / f"{self.dataset.sample_name(index)}_pred.png"

    def check_targets(self, indices: Iterable[int]) -> None:
        """ConfigError when an output exists and ``overwrite`` is off (checked before any work)."""
        if self.overwrite:
            return
        existing = [p for p in (self.target(i) for i in indices) if p.exists()]
        if existing:
            raise ConfigError(f"{len(existing)} Cityscapes export file(s) already exist, e.g. '{existing[0]}'; "
                              "pass --overwrite to replace them or choose another --cityscapes-export folder")

    def reset(self) -> None:
        self.written = []

    def process(self, items: list[dict], masks: list[torch.Tensor]) -> None:
        for item, mask in zip(items, masks):
            path = self.target(int(item["index"]))
            fileio.write_png(path, self.lut[np.clip(mask.numpy(), 0, 255).astype(np.uint8)])
            self.written.append(path)

    def evaluate(self) -> dict:
        return {"cityscapes_export": {"dir": str(self.out_dir), "files": len(self.written)}}
