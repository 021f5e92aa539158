"""Running a Segmenter over a dataset and handing every prediction to evaluators (detectron2's
``DatasetEvaluator`` / ``inference_on_dataset``)."""
from __future__ import annotations

import abc
import sys
import time
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from ..errors import CheckpointError
from ..inference.pipeline import OrderedJobs, masks_later, stop_at_error


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


def collate_list(items: list[dict]) -> list[dict]:
    return items  # images differ in size: keep them as a list (and each item's skipped reasons with it)


def eval_loader(dataset, *, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """Items in dataset order, ``batch_size`` at a time, as lists (sizes may differ)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_list,
                      persistent_workers=False)


def inference_on_dataset(segmenter, data, evaluators: Sequence[DatasetEvaluator], *, batch_size: int = 1,
                         num_workers: int = 0, progress: bool = False, desc: str = "eval") -> dict:
    """Run ``segmenter`` on every item of ``data`` (a dataset, or a loader of item lists) and
    return the evaluators' merged results plus ``num_images``, ``seconds``, ``images_per_s``,
    ``mode`` and ``skipped`` (each bad file's reason once, in the order met)."""
    if hasattr(data, "meta") and segmenter.num_classes != data.meta.num_classes:
        raise CheckpointError(f"the model predicts {segmenter.num_classes} classes but the dataset has "
                              f"{data.meta.num_classes}; evaluate on the data the model was trained for")
    loader = data if isinstance(data, DataLoader) else eval_loader(data, batch_size=batch_size, num_workers=num_workers)
    for evaluator in evaluators:
        evaluator.reset()
    bar = _progress(len(loader.dataset), desc) if progress else None
    start, count, skipped = time.perf_counter(), 0, {}
    try:  # the loader's workers decode ahead; masks and evaluators run behind the network, in order, on one thread
        with OrderedJobs(stop_at_error, workers=1) as behind:
            for items in loader:
                read_masks = masks_later(segmenter, [item["image"] for item in items])
                behind.submit(None, _process, evaluators, items, read_masks)
                count += len(items)
                skipped.update(dict.fromkeys(reason for item in items for reason in item.get("skipped", ())))
                if bar is not None:
                    bar.update(len(items))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    results: dict = {}
    for evaluator in evaluators:
        results.update(evaluator.evaluate())
    results.update(num_images=count, seconds=round(seconds, 3), mode=segmenter.mode, skipped=list(skipped),
                   images_per_s=round(count / seconds, 3) if seconds > 0 else None)
    return results


def _process(evaluators: Sequence[DatasetEvaluator], items: list[dict], read_masks) -> None:
    as_tensors = [torch.from_numpy(mask).long() for mask in read_masks()]
    for evaluator in evaluators:
        evaluator.process(items, as_tensors)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)
