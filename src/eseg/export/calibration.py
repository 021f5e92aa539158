"""Validation images for int8 calibration and for the mIoU check of a quantized graph.

They are found before anything is written: ``--eval-data`` names them, else the training run
the model comes from, else the embedded synthetic set when the model has its 8 classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.padding import pad_to_multiple


def eval_data_spec(eval_data: str | None, model_path: Path, num_classes: int, size: tuple[int, int]) -> tuple[dict, str]:
    """(dataset spec, split) for calibration and the int8 mIoU check, with the class count checked."""
    from ..data.specs import load_dataset_spec
    from ..evaluation import recorded_validation_data
    from ..palette import SYNTHETIC_CLASSES

    if eval_data == "synthetic":
        return {"type": "synthetic", "size": list(size)}, "val"
    if eval_data is not None:
        return load_dataset_spec(eval_data), "val"
    recorded = recorded_validation_data(model_path)  # reads the run's config.yaml once
    if recorded is None and num_classes == len(SYNTHETIC_CLASSES):
        return {"type": "synthetic", "size": list(size)}, "val"
    if recorded is None:
        raise ConfigError(f"int8 export checks the model on validation images, and this {num_classes}-class model "
                          "records none; pass --eval-data SPEC.yaml (e.g. {type: cityscapes, root: DIR})")
    return recorded


def eval_dataset(spec: dict, split: str, *, mean, std, num_classes: int, num_images: int):
    """The first ``num_images`` images of the split, normalized; ConfigError on a class mismatch."""
    from ..data.meta import subset
    from ..data.specs import build_dataset
    from ..data.transforms import build_eval_transform

    dataset = build_dataset(spec, split, transform=build_eval_transform(mean=mean, std=std), where="--eval-data")
    if dataset.num_classes != num_classes:
        raise ConfigError(f"the model has {num_classes} classes but the validation data ({spec.get('type')}) has "
                          f"{dataset.num_classes}; pass --eval-data with a dataset the model was trained for")
    return subset(dataset, range(min(num_images, len(dataset))))


def calibration_batches(dataset, size: tuple[int, int] | None, multiple: int) -> list[np.ndarray]:
    """Normalized (1, 3, H, W) arrays: resized to ``size`` for a fixed-size graph (as the
    Segmenter feeds one), else padded with the one padding rule."""
    batches = []
    for index in range(len(dataset)):
        image = dataset[index]["image"][None].float()
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        elif size is None:
            image = pad_to_multiple(image, multiple)
        batches.append(image.numpy())
    return batches


def compare_miou(runners: dict, dataset) -> dict[str, float]:
    """mIoU of each runner on ``dataset`` with the shared evaluation code."""
    from ..evaluation import evaluate_model

    return {name: evaluate_model(runner, dataset)["mIoU"] for name, runner in runners.items()}
