"""A short fit of untrained benchmark models on synthetic street scenes (``--fit-steps``).

The mask step of a low-resolution graph costs what its disagreeing cells cost
(:func:`eseg.inference.lowres.disagreeing_cells`), and random weights give noise-like logits
with many of them. So before the end-to-end benchmark times them, every model that is not
already trained gets the same plain loop: the same synthetic images
(:class:`~eseg.data.synthetic.SyntheticStreets`, drawn once for all), in the same order, the same
optimizer (AdamW), learning rate, steps and batch size, pixel-wise cross-entropy on the
full-resolution logits. Each model sees the images in its own normalisation. Then its batch-norm
statistics are recomputed on the same images (precise BN, :func:`eseg.engine.bn.recompute_bn_statistics`):
a few steps barely move running statistics (torchvision's MobileNetV3 updates them with momentum
0.01), and a network evaluated with its initial ones gives one class everywhere. It is not training
for accuracy: it gives logits that are smooth inside regions and change at class borders, like a
trained model's.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.synthetic import SyntheticStreets
from ..data.transforms import normalize

DEFAULT_FIT_SIZE = (256, 512)
MAX_DISTINCT_IMAGES = 64  # the loop cycles over at most this many scenes (memory stays small)
PRECISE_BN_BATCHES = 16  # batches the batch-norm statistics are recomputed over after the fit


@dataclass(frozen=True)
class FitPlan:
    """One plan for every model: ``steps`` AdamW steps of ``batch`` scenes of ``size`` (H, W)."""

    steps: int
    batch: int = 2
    size: tuple[int, int] = DEFAULT_FIT_SIZE
    lr: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class FitRecord:
    """How a fit went: the loss of its first step and the mean loss of its last fifth of steps."""

    steps: int
    loss_first: float
    loss_last: float


def synthetic_batches(plan: FitPlan) -> list[tuple[list[np.ndarray], torch.Tensor]]:
    """The scenes of every step, (uint8 images, (N, H, W) int64 labels) per batch, the same for
    every model: the 'train' stream of SyntheticStreets at ``plan.size``, cycled."""
    count = min(plan.steps * plan.batch, MAX_DISTINCT_IMAGES)
    scenes = SyntheticStreets("train", num_images=count, size=plan.size, seed=plan.seed)
    pool = itertools.cycle([scenes.read_sample(i) for i in range(count)])
    batches = []
    for _ in range(plan.steps):
        chunk = [next(pool) for _ in range(plan.batch)]
        batches.append(([image for image, _ in chunk], torch.from_numpy(np.stack([label for _, label in chunk]))))
    return batches


def fit_model(model: nn.Module, mean, std, batches, plan: FitPlan, log: Callable[[str], None] = print,
              name: str = "") -> FitRecord:
    """``plan.steps`` steps of the one loop on ``batches``, then precise BN on the first of them;
    the model is left in eval mode."""
    from ..engine.bn import recompute_bn_statistics

    torch.manual_seed(plan.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr)
    model.train()
    losses = []
    for images, labels in batches:
        inputs = torch.stack([normalize(image, mean, std) for image in images])
        loss = F.cross_entropy(model(inputs), labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    inputs = ({"image": torch.stack([normalize(image, mean, std) for image in images])}
              for images, _ in batches[:PRECISE_BN_BATCHES])
    recompute_bn_statistics(model, inputs, torch.device("cpu"))
    model.eval()
    tail = losses[-max(1, len(losses) // 5):]
    record = FitRecord(len(losses), losses[0], float(np.mean(tail)))
    log(f"fitted {name}: {record.steps} steps, loss {record.loss_first:.3f} -> {record.loss_last:.3f}")
    return record
