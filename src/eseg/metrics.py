"""Confusion-matrix segmentation metrics with the evaluator pattern reset / process / evaluate.

Classes absent from both the prediction and the ground truth (a row and column of zeros) have an
undefined IoU; they are reported as NaN and excluded from every mean, as in mmsegmentation and
the Cityscapes evaluator.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from .errors import DataError


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction."""
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: np.ndarray, class_names: list[str] | None = None) -> dict:
    """IoU, accuracy and Dice per class and their means from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
        dice = np.where(gt + pred > 0, 2 * tp / (gt + pred), np.nan)
    total = cm.sum()
    freq = gt / total if total > 0 else np.zeros_like(gt)
    present = ~np.isnan(iou)
    names = class_names or [str(i) for i in range(len(tp))]
    return {
        "mIoU": float(np.nanmean(iou)) if present.any() else float("nan"),
        "aAcc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mAcc": float(np.nanmean(acc)) if (~np.isnan(acc)).any() else float("nan"),
        "fwIoU": float(np.nansum(freq * np.nan_to_num(iou))),
        "mDice": float(np.nanmean(dice)) if (~np.isnan(dice)).any() else float("nan"),
        "per_class": {
            name: {"IoU": float(iou[i]), "Acc": float(acc[i]), "Dice": float(dice[i]), "pixels": int(gt[i])}
            for i, name in enumerate(names)
        },
        "num_pixels": int(total),
    }


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches; ``compute`` sums it across DDP ranks."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = class_names
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: (B, H, W) class ids or (B, C, H, W) logits; ``target``: (B, H, W) with class
        ids or ``ignore_index``. Predictions outside [0, num_classes) are an error, not a count."""
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise DataError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        pred, target = pred.cpu(), target.cpu()
        _check_ids(pred, self.num_classes, None, "prediction")
        _check_ids(target, self.num_classes, self.ignore_index, "ground truth")
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self, all_reduce: bool | None = None) -> dict:
        """Metrics of everything so far. ``all_reduce`` (default: whenever a process group is
        initialized) sums the matrix over DDP ranks; pass False when one rank evaluated alone,
        or it would wait for the others forever."""
        cm = self.confusion.clone()
        if all_reduce is None:
            all_reduce = dist.is_available() and dist.is_initialized()
        if all_reduce:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else cm.device
            cm = cm.to(device)
            dist.all_reduce(cm)
            cm = cm.cpu()
        result = metrics_from_confusion(cm.numpy(), self.class_names)
        result["confusion_matrix"] = cm.tolist()
        return result


def _check_ids(ids: torch.Tensor, num_classes: int, ignore_index: int | None, what: str) -> None:
    bad = (ids < 0) | (ids >= num_classes)
    if ignore_index is not None:
        bad &= ids != ignore_index
    if bad.any():
        values = torch.unique(ids[bad])[:10].tolist()
        allowed = f"0..{num_classes - 1}" + (f" or the ignore index {ignore_index}" if ignore_index is not None else "")
        raise DataError(f"{what} holds class ids {values} outside {allowed}")
