"""eseg.metrics against torchmetrics as an independent oracle."""
import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from eseg.errors import DataError
from eseg.metrics import ConfusionMatrix, confusion_matrix, metrics_from_confusion

NUM_CLASSES = 7
ABSENT = 5  # never in the ground truth nor the prediction
GT_ONLY = 6  # in the ground truth, never predicted: IoU 0, counted in the mean


def _random_batch(seed: int = 0, shape=(3, 37, 53)):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, NUM_CLASSES, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, torch.randint(0, NUM_CLASSES, shape, generator=g))
    target[target == ABSENT] = 0
    pred[pred == ABSENT] = 1
    pred[pred == GT_ONLY] = 2
    target[torch.rand(shape, generator=g) < 0.15] = 255  # ignored pixels, predictions there don't count
    return pred, target


def _oracle(metric_cls, pred, target, **kwargs):
    metric = metric_cls(num_classes=NUM_CLASSES, ignore_index=255, **kwargs)
    return metric(pred.flatten(), target.flatten()).double().numpy()


def test_per_class_iou_matches_torchmetrics():
    pred, target = _random_batch()
    ours = metrics_from_confusion(confusion_matrix(pred, target, NUM_CLASSES).numpy())
    ours_iou = np.array([ours["per_class"][str(c)]["IoU"] for c in range(NUM_CLASSES)])
    theirs = _oracle(MulticlassJaccardIndex, pred, target, average=None, zero_division=float("nan"))
    np.testing.assert_allclose(ours_iou, theirs, rtol=0, atol=1e-6, equal_nan=True)
    # Absent from both: undefined (NaN) and left out of the mean; predicted-never: IoU 0, kept in.
    assert math.isnan(ours_iou[ABSENT]) and ours_iou[GT_ONLY] == 0.0
    assert ours["mIoU"] == pytest.approx(np.nanmean(theirs), abs=1e-6)
    assert ours["mIoU"] == pytest.approx(np.nansum(ours_iou) / (NUM_CLASSES - 1), abs=1e-12)


def test_accuracy_and_dice_match_torchmetrics():
    pred, target = _random_batch(seed=1)
    ours = metrics_from_confusion(confusion_matrix(pred, target, NUM_CLASSES).numpy())
    acc = _oracle(MulticlassAccuracy, pred, target, average=None)
    dice = _oracle(MulticlassF1Score, pred, target, average=None)
    for c in range(NUM_CLASSES):
        if c == ABSENT:
            assert math.isnan(ours["per_class"][str(c)]["Acc"]) and math.isnan(ours["per_class"][str(c)]["Dice"])
            continue
        assert ours["per_class"][str(c)]["Acc"] == pytest.approx(acc[c], abs=1e-6)
        assert ours["per_class"][str(c)]["Dice"] == pytest.approx(dice[c], abs=1e-6)
    assert ours["aAcc"] == pytest.approx(float(_oracle(MulticlassAccuracy, pred, target, average="micro")), abs=1e-6)
    valid = target != 255
    assert ours["num_pixels"] == int(valid.sum())
    # frequency-weighted IoU, computed directly from its definition
    iou = _oracle(MulticlassJaccardIndex, pred, target, average=None, zero_division=0.0)
    freq = np.bincount(target[valid].numpy(), minlength=NUM_CLASSES) / valid.sum().item()
    assert ours["fwIoU"] == pytest.approx(float((freq * iou).sum()), abs=1e-6)


def test_evaluator_accumulates_batches_and_takes_logits():
    pred, target = _random_batch(seed=2, shape=(4, 20, 30))
    evaluator = ConfusionMatrix(NUM_CLASSES, ignore_index=255, class_names=[f"c{i}" for i in range(NUM_CLASSES)])
    for i in range(4):
        logits = torch.nn.functional.one_hot(pred[i : i + 1], NUM_CLASSES).permute(0, 3, 1, 2).float()
        evaluator.update(logits, target[i : i + 1])
    result = evaluator.compute()
    whole = metrics_from_confusion(confusion_matrix(pred, target, NUM_CLASSES).numpy())
    assert result["mIoU"] == pytest.approx(whole["mIoU"], abs=1e-12)
    assert np.array(result["confusion_matrix"]).sum() == int((target != 255).sum())
    assert list(result["per_class"]) == [f"c{i}" for i in range(NUM_CLASSES)]
    evaluator.reset()
    assert evaluator.confusion.sum() == 0


@pytest.mark.parametrize("bad", [255, NUM_CLASSES, -1])
def test_predictions_outside_the_classes_are_refused(bad):
    """A prediction of 255 or num_classes must not land in some cell of the matrix."""
    pred, target = _random_batch(seed=3, shape=(1, 8, 8))
    pred[0, 0, 0] = bad
    matrix = ConfusionMatrix(NUM_CLASSES)
    with pytest.raises(DataError, match=f"prediction holds class ids \\[{bad}\\] outside 0..{NUM_CLASSES - 1}"):
        matrix.update(pred, target)
    assert matrix.confusion.sum() == 0


def test_ground_truth_outside_the_classes_is_refused_but_ignore_is_fine():
    pred, target = _random_batch(seed=4, shape=(1, 8, 8))
    target[0, 0, 0] = NUM_CLASSES + 3
    with pytest.raises(DataError, match="ground truth holds class ids"):
        ConfusionMatrix(NUM_CLASSES).update(pred, target)
    target[0, 0, 0] = 255
    ConfusionMatrix(NUM_CLASSES).update(pred, target)
