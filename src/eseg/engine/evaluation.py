"""The evaluation API: a Segmenter over a dataset, feeding evaluators (detectron2's pattern).

``inference_on_dataset(segmenter, dataset, evaluators)`` runs the segmenter on every item and
hands each prediction to every :class:`DatasetEvaluator` (``reset`` / ``process`` /
``evaluate``); the results are merged into one dict. Evaluators:

- :class:`SemSegEvaluator`: the confusion matrix and every metric of :mod:`eseg.metrics`
  (summed over DDP ranks when asked);
- :class:`CityscapesExporter`: full-resolution labelIds PNGs for the official evaluator;
- :class:`PanelWriter`: captioned image | ground truth | prediction panels with a legend.
"""
from __future__ import annotations

import abc
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import fileio
from ..errors import CheckpointError, ConfigError
from ..metrics import ConfusionMatrix


class DatasetEvaluator(abc.ABC):
    """``reset`` before a pass, ``process`` every batch, ``evaluate`` at the end. ``reset`` and
    ``evaluate`` default to nothing and no results (writers keep no state)."""

    def reset(self) -> None:
        """Forget the previous pass (evaluators that accumulate override this)."""

    @abc.abstractmethod
    def process(self, items: list[dict], masks: list[torch.Tensor]) -> None:
        """``items``: dataset items (``image`` normalized, ``mask`` ground truth, ``index``);
        ``masks``: the predicted (H, W) class ids of each item, int64 on the CPU."""

    def evaluate(self) -> dict:
        return {}


class SemSegEvaluator(DatasetEvaluator):
    """Confusion-matrix metrics over labelled pixels (mIoU, aAcc, mAcc, fwIoU, mDice, per class)."""

    def __init__(self, num_classes: int, *, ignore_index: int = 255, class_names: Sequence[str] | None = None,
                 all_reduce: bool | None = None) -> None:
        self.matrix = ConfusionMatrix(num_classes, ignore_index, list(class_names) if class_names else None)
        self.all_reduce = all_reduce

    @classmethod
    def for_dataset(cls, dataset, **kwargs) -> "SemSegEvaluator":
        meta = dataset.meta
        return cls(meta.num_classes, ignore_index=meta.ignore_index, class_names=meta.class_names, **kwargs)

    def reset(self) -> None:
        self.matrix.reset()

    def process(self, items: list[dict], masks: list[torch.Tensor]) -> None:
        for item, mask in zip(items, masks):
            self.matrix.update(mask[None], item["mask"][None])

    def evaluate(self) -> dict:
        return self.matrix.compute(all_reduce=self.all_reduce)


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


def collate_list(items: list[dict]) -> list[dict]:
    return items  # images differ in size: keep them as a list


def eval_loader(dataset, *, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """Items in dataset order, ``batch_size`` at a time, as lists (sizes may differ)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_list,
                      persistent_workers=False)


def inference_on_dataset(segmenter, data, evaluators: Sequence[DatasetEvaluator], *, batch_size: int = 1,
                         num_workers: int = 0, progress: bool = False, desc: str = "eval") -> dict:
    """Run ``segmenter`` on every item of ``data`` (a dataset, or a loader of item lists) and
    return the evaluators' merged results plus ``num_images``, ``seconds``, ``images_per_s``."""
    if hasattr(data, "meta") and segmenter.num_classes != data.meta.num_classes:
        raise CheckpointError(f"the model predicts {segmenter.num_classes} classes but the dataset has "
                              f"{data.meta.num_classes}; evaluate on the data the model was trained for")
    loader = data if isinstance(data, DataLoader) else eval_loader(data, batch_size=batch_size, num_workers=num_workers)
    for evaluator in evaluators:
        evaluator.reset()
    bar = _progress(len(loader.dataset), desc) if progress else None
    start, count, skipped = time.perf_counter(), 0, []
    try:
        for items in loader:
            logits = segmenter.logits_from_tensors([item["image"] for item in items])
            masks = [out.argmax(dim=0).cpu() for out in logits]
            for evaluator in evaluators:
                evaluator.process(items, masks)
            count += len(items)
            skipped += [line for item in items for line in item.get("skipped", "").splitlines() if line]
            if bar is not None:
                bar.update(len(items))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    results: dict = {}
    for evaluator in evaluators:
        results.update(evaluator.evaluate())
    results.update(num_images=count, seconds=round(seconds, 3), mode=segmenter.mode, skipped=skipped,
                   images_per_s=round(count / seconds, 3) if seconds > 0 else None)
    return results


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)


def evaluate_model(model, dataset, *, batch_size: int = 1, device=None, all_reduce: bool | None = False) -> dict:
    """Whole-image metrics of a model (or runner) on a dataset; train/eval mode is restored."""
    from ..inference.segmenter import Segmenter

    was_training = isinstance(model, torch.nn.Module) and model.training
    try:
        segmenter = Segmenter(model, batch_size=batch_size, device=device)
        return inference_on_dataset(segmenter, dataset, [SemSegEvaluator.for_dataset(dataset, all_reduce=all_reduce)],
                                    batch_size=batch_size)
    finally:
        if was_training:
            model.train()


def recorded_validation_data(model_path: str | Path) -> tuple[dict, str] | None:
    """(dataset spec, split) that the training run holding ``model_path`` validated on, read
    from the run's config.yaml; None for a model outside a run folder."""
    from ..config import load_config
    from ..paths import RUN_CONFIG, run_dir_of_model

    run_dir = run_dir_of_model(Path(model_path).resolve())
    if run_dir is None:
        return None
    cfg = load_config(run_dir / RUN_CONFIG)
    return dict(cfg.data.val_dataset or cfg.data.dataset), cfg.data.val_split
