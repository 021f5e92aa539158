"""Segmentation losses and the ``train.loss`` spec that combines them.

A spec is one mapping or a list of mappings, each with a ``type`` and the keys that
:data:`LOSS_TYPES` allows for it (defaults fill the rest)::

    train:
      loss:
        - {type: cross_entropy, weight: 1.0, class_weights: null, label_smoothing: 0.0,
           ohem: false, ohem_thresh: 0.7, ohem_min_kept: 100000}
        - {type: dice, weight: 0.5}
        - {type: focal, weight: 1.0, gamma: 2.0}
        - {type: lovasz, weight: 1.0}

:func:`validate_loss_spec` checks keys, types and ranges without knowing the dataset (call it at
config-load time); :func:`build_loss` also checks ``class_weights`` against ``num_classes`` and
returns a :class:`CombinedLoss`: the weighted sum, with the unweighted terms kept in
``last_terms`` for logging. Dice, Focal and Lovasz come from segmentation_models_pytorch,
imported only when a spec asks for one of them. Every loss runs in float32, autocast or not.
"""
from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

# --------------------------------------------------------------------------- spec checking


def _is_number(value: Any) -> bool:
    # bool is an int subclass; `weight: true` in YAML is a mistake, not 1.0
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(lo: float, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False,
            text: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_number(value):
            return f"must be a finite number {text}, got {value!r}"
        if value < lo or (lo_open and value == lo) or value > hi or (hi_open and value == hi):
            return f"must be {text}, got {value!r}"
        return None
    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else f"must be an integer >= 1, got {value!r}"


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else check(value)


def _class_weights(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        return f"must be null or a non-empty list with one number >= 0 per class, got {value!r}"
    for i, w in enumerate(value):
        if not _is_number(w) or w < 0:
            return f"[{i}]: must be a finite number >= 0, got {w!r}"  # path suffix, see _check_entry
    if not any(value):
        return "are all 0, so no pixel would count; give at least one positive weight"
    return None


_WEIGHT = (1.0, _number(0.0, text=">= 0"))

# The one table of loss types: key -> (default, checker returning an error text or None).
LOSS_TYPES: dict[str, dict[str, tuple[Any, Callable[[Any], str | None]]]] = {
    "cross_entropy": {
        "weight": _WEIGHT,
        "class_weights": (None, _class_weights),  # one per class; torch's weighted-mean rule
        "label_smoothing": (0.0, _number(0.0, 1.0, hi_open=True, text="in [0, 1)")),
        "ohem": (False, _boolean),  # online hard example mining over pixels
        "ohem_thresh": (0.7, _number(0.0, 1.0, lo_open=True, text="in (0, 1]")),
        "ohem_min_kept": (100000, _positive_int),
    },
    "dice": {
        "weight": _WEIGHT,
        "smooth": (0.0, _number(0.0, text=">= 0")),  # smp: (I + smooth) / ((|P| + |T|) / 2 + smooth)
    },
    "focal": {
        "weight": _WEIGHT,
        "gamma": (2.0, _number(0.0, text=">= 0")),
        "alpha": (None, _optional(_number(0.0, 1.0, text="in [0, 1]"))),
    },
    "lovasz": {
        "weight": _WEIGHT,
    },
}

# Names of the terms in CombinedLoss.last_terms (log keys loss/<name>).
TERM_NAMES = {"cross_entropy": "ce", "dice": "dice", "focal": "focal", "lovasz": "lovasz"}


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'? " if close else ""


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    """One loss mapping with its defaults filled in, or a ConfigError naming the key."""
    types = list(LOSS_TYPES)
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type' key (one of {', '.join(types)}), "
                          f"got {entry!r}")
    if "type" not in entry:
        raise ConfigError(f"{where}: missing 'type'; one of {', '.join(types)}")
    kind = entry["type"]
    if not isinstance(kind, str) or kind not in LOSS_TYPES:
        raise ConfigError(f"{where}.type: unknown loss type {kind!r}; {_hint(str(kind), types)}"
                          f"valid types: {', '.join(types)}")
    table = LOSS_TYPES[kind]
    valid = ["type", *table]
    for key in entry:
        if key not in valid:
            raise ConfigError(f"{where}.{key}: unknown key for type '{kind}'; {_hint(str(key), valid)}"
                              f"valid keys: {', '.join(valid)}")
    out: dict[str, Any] = {"type": kind}
    for key, (default, check) in table.items():
        value = entry.get(key, default)
        problem = check(value)
        if problem is not None:
            sep = "" if problem.startswith("[") else ": "  # "[i]: ..." names a list element
            raise ConfigError(f"{where}.{key}{sep}{problem}")
        out[key] = copy.deepcopy(value)
    return out


def validate_loss_spec(spec: Any, where: str = "train.loss") -> list[dict[str, Any]]:
    """Check a loss spec's keys, types and ranges (no dataset needed) and return it as a list of
    mappings with every default filled in. Raises ConfigError naming the offending key path."""
    if isinstance(spec, Mapping):
        entries = [_check_entry(spec, where)]
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where}: empty list; give at least one loss, e.g. [{{type: cross_entropy}}]")
        entries = [_check_entry(entry, f"{where}[{i}]") for i, entry in enumerate(spec)]
    else:
        raise ConfigError(f"{where}: expected a mapping or a list of mappings with a 'type' key, got {spec!r}")
    if not any(entry["weight"] > 0 for entry in entries):
        raise ConfigError(f"{where}: every loss weight is 0, so nothing would be trained; make one > 0")
    return entries


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
        base = TERM_NAMES[entry["type"]]
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        terms.append((name, entry["weight"], _build_term(entry, path, num_classes, ignore_index)))
    return CombinedLoss(terms)
