"""Segmentation losses, built from a ``train.loss`` spec.

The spec (one mapping or a list, each with a ``type`` and its options) is described and checked,
torch-free, in :mod:`eseg.loss_spec`. :func:`build_loss` checks it again, also checks
``class_weights`` against ``num_classes``, and returns a :class:`CombinedLoss`: the weighted sum,
with the unweighted terms kept in ``last_terms`` for logging. Dice, Focal and Lovasz come from
segmentation_models_pytorch, imported only when a spec asks for one of them. Every loss runs in
float32, autocast or not.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..loss_spec import LOSS_TYPES, term_name, validate_loss_spec

__all__ = ["LOSS_TYPES", "CombinedLoss", "SegmentationLoss", "build_loss", "validate_loss_spec"]

# --------------------------------------------------------------------------- losses


class SegmentationLoss(nn.Module):
    """Cross-entropy over the labelled pixels of the batch, optionally class-weighted, label-smoothed
    and restricted to hard pixels (OHEM).

    The reduction is torch's ``F.cross_entropy`` mean: the sum of per-pixel losses divided by the sum
    of the class weights of the labelled pixels (their count without weights). With label smoothing a
    pixel's loss is ``(1 - e) * w[y] * -log p[y] + e / C * sum_c w[c] * -log p[c]``.

    With ``ohem=True`` only the hard pixels count: those whose ground-truth probability is below
    ``ohem_thresh``, or the ``ohem_min_kept`` least probable ones when fewer are that hard (the rule
    of mmsegmentation's OHEMPixelSampler). Hardness is judged on the plain probability, ignoring class
    weights and smoothing; the kept pixels are then reduced with the same weighted mean as above.
    """

    def __init__(self, ignore_index: int = 255, *, ohem: bool = False, ohem_thresh: float = 0.7,
                 ohem_min_kept: int = 100000, class_weights: list[float] | torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.ohem = ohem
        self.ohem_loss_thresh = -math.log(ohem_thresh)  # p < thresh  <=>  -log p > -log thresh
        self.ohem_min_kept = ohem_min_kept
        self.label_smoothing = label_smoothing
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)  # follows .to(device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Softmax in float32 even under autocast: bf16/fp16 log-sums lose precision.
        logits = logits.float()
        # .to: works even if the caller never moved this module to the logits' device
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        losses = F.cross_entropy(logits, target, weight=weights, ignore_index=self.ignore_index,
                                 reduction="none", label_smoothing=self.label_smoothing)
        valid = target != self.ignore_index
        if not valid.any():
            return losses.sum() * 0.0  # keeps the graph (and DDP's gradient sync) alive
        losses = losses[valid]
        labels = target[valid]
        if self.ohem:
            keep = self._hard(losses, logits, target, valid)
            losses, labels = losses[keep], labels[keep]
        if weights is None:
            return losses.mean()
        total_weight = weights[labels].sum()
        # Only zero-weight classes kept: nothing to learn from, but keep the graph alive.
        return torch.where(total_weight > 0, losses.sum() / total_weight.clamp_min(1e-12), losses.sum() * 0.0)

    def _hard(self, losses: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
              valid: torch.Tensor) -> torch.Tensor:
        """Indices (into the labelled pixels) of the pixels OHEM keeps, judged on the plain
        -log p: that is the training loss itself unless class weights or smoothing change it."""
        if self.class_weights is None and self.label_smoothing == 0:
            nll = losses.detach()
        else:
            with torch.no_grad():
                nll = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")[valid]
        hard = torch.nonzero(nll > self.ohem_loss_thresh).flatten()
        keep = min(self.ohem_min_kept, nll.numel())
        if hard.numel() >= keep:
            return hard
        return torch.topk(nll, keep, sorted=False).indices


class _SmpTerm(nn.Module):
    """A segmentation_models_pytorch loss with float32 logits and a zero, graph-connected loss for
    batches without a labelled pixel (smp's Focal gives NaN there, its Lovasz an empty tensor)."""

    def __init__(self, loss: nn.Module, ignore_index: int) -> None:
        super().__init__()
        self.loss = loss
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        return self.loss(logits, target)


class CombinedLoss(nn.Module):
    """The weighted sum of named loss terms.

    ``forward`` returns the total; afterwards ``last_terms`` maps each term's name (``ce``, ``dice``,
    ``focal``, ``lovasz``; ``ce_2`` for a second ``ce``) to its unweighted value as a detached
    float32 0-dim tensor, so logging costs no GPU sync until the caller reads it.
    """

    def __init__(self, terms: list[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        self.names = [name for name, _, _ in terms]
        self.weights = [float(weight) for _, weight, _ in terms]
        self.terms = nn.ModuleList(module for _, _, module in terms)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Autocast off so the smp losses' reductions also stay in float32.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            total = logits.new_zeros(())
            values = {}
            for name, weight, term in zip(self.names, self.weights, self.terms):
                value = term(logits, target)
                values[name] = value.detach()
                total = total + weight * value
        self.last_terms = values
        return total


# --------------------------------------------------------------------------- building


def _smp_losses(where: str, kind: str) -> Any:
    try:
        from segmentation_models_pytorch import (
            losses,  # lazy: the cross-entropy path needs no smp
        )
    except ImportError as exc:
        raise ConfigError(f"{where}.type: loss type '{kind}' needs segmentation_models_pytorch, which cannot be "
                          f"imported ({exc}); install it with `pip install segmentation-models-pytorch`") from exc
    return losses


def _build_term(entry: dict[str, Any], where: str, num_classes: int, ignore_index: int) -> nn.Module:
    kind = entry["type"]
    if kind == "cross_entropy":
        weights = entry["class_weights"]
        if weights is not None and len(weights) != num_classes:
            raise ConfigError(f"{where}.class_weights: has {len(weights)} values but the dataset has "
                              f"{num_classes} classes; give one weight per class")
        return SegmentationLoss(ignore_index, ohem=entry["ohem"], ohem_thresh=entry["ohem_thresh"],
                                ohem_min_kept=entry["ohem_min_kept"], class_weights=weights,
                                label_smoothing=entry["label_smoothing"])
    smp = _smp_losses(where, kind)
    if kind == "dice":
        loss = smp.DiceLoss(mode="multiclass", ignore_index=ignore_index, smooth=entry["smooth"])
    elif kind == "focal":
        loss = smp.FocalLoss(mode="multiclass", ignore_index=ignore_index, gamma=entry["gamma"],
                             alpha=entry["alpha"])
    else:
        loss = smp.LovaszLoss(mode="multiclass", ignore_index=ignore_index)
    return _SmpTerm(loss, ignore_index)


def build_loss(spec: Any, *, num_classes: int, ignore_index: int, where: str = "train.loss") -> CombinedLoss:
    """The loss module a spec describes (see the module docstring); ConfigError names any bad key."""
    entries = validate_loss_spec(spec, where)
    single = isinstance(spec, Mapping)
    terms = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        path = where if single else f"{where}[{i}]"
        base = term_name(entry["type"])
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        terms.append((name, entry["weight"], _build_term(entry, path, num_classes, ignore_index)))
    return CombinedLoss(terms)
