"""Pixel-wise cross-entropy with an ignore label, plus optional OHEM."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationLoss(nn.Module):
    """Mean cross-entropy over the labelled pixels of the batch.

    With ``ohem=True`` only the hard pixels count: those whose ground-truth probability is below
    ``ohem_thresh``, or the ``ohem_min_kept`` highest-loss pixels when fewer are that hard (the
    rule of mmsegmentation's OHEMPixelSampler).
    """

    def __init__(self, ignore_index: int = 255, *, ohem: bool = False, ohem_thresh: float = 0.7,
                 ohem_min_kept: int = 100000) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.ohem = ohem
        self.ohem_loss_thresh = -math.log(ohem_thresh)  # p < thresh  <=>  -log p > -log thresh
        self.ohem_min_kept = ohem_min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Softmax in float32 even under autocast: bf16/fp16 log-sums lose precision.
        losses = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        if not valid.any():
            return losses.sum() * 0.0  # keeps the graph (and DDP's gradient sync) alive
        losses = losses[valid]
        if self.ohem:
            losses = self._hard(losses)
        return losses.mean()

    def _hard(self, losses: torch.Tensor) -> torch.Tensor:
        hard = losses[losses.detach() > self.ohem_loss_thresh]
        keep = min(self.ohem_min_kept, losses.numel())
        if hard.numel() >= keep:
            return hard
        return torch.topk(losses, keep, sorted=False).values
