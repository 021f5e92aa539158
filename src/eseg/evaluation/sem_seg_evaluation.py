"""Confusion-matrix metrics: :class:`SemSegEvaluator`, and :func:`evaluate_model`, the one
evaluation path that the trainer, ``eseg export``'s int8 check and scripts share."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..metrics import ConfusionMatrix
from .evaluator import DatasetEvaluator, inference_on_dataset


class SemSegEvaluator(DatasetEvaluator):
    """Confusion-matrix metrics over labelled pixels (mIoU, aAcc, mAcc, fwIoU, mDice, per class),
    summed over DDP ranks with ``all_reduce``."""

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


def evaluate_model(model, dataset, *, batch_size: int = 1, device=None, all_reduce: bool | None = False,
                   evaluators: Sequence[DatasetEvaluator] = ()) -> dict:
    """Whole-image metrics of a model (or runner) on a dataset (:class:`SemSegEvaluator`), merged
    with the results of any further ``evaluators``. The model is left exactly as it was: the
    runner evaluates it inside :func:`~eseg.evaluation.context.inference_context`."""
    from ..inference.segmenter import Segmenter

    segmenter = Segmenter(model, batch_size=batch_size, device=device)
    metrics = SemSegEvaluator.for_dataset(dataset, all_reduce=all_reduce)
    return inference_on_dataset(segmenter, dataset, [metrics, *evaluators], batch_size=batch_size)
