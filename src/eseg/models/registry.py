"""The ESeg variant table and keyword-only builders.

The paper (Meng et al., arXiv 2203.12683) publishes no per-variant configuration. Every number in
``VARIANTS`` is eseg's own design, following EfficientDet's compound scaling of backbone, BiFPN
width W and depth D. This table is the only place those numbers live.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

from ..errors import ConfigError
from .eseg import ESeg, ESegConfig

_CITYSCAPES_CROP = (512, 1024)
_LARGE_CROP = (768, 1536)

VARIANTS: dict[str, ESegConfig] = {
    # Full models: EfficientNet B-series, swish, EfficientDet-like W/D (S ~ D1, M ~ D4, L ~ D7).
    "eseg_s": ESegConfig(backbone="efficientnet_b1", fpn_width=88, fpn_repeats=4, head_width=88,
                         train_crop=_CITYSCAPES_CROP, eval_size=(1024, 2048)),
    "eseg_m": ESegConfig(backbone="efficientnet_b4", fpn_width=224, fpn_repeats=7, head_width=224,
                         train_crop=_LARGE_CROP, eval_size=(1024, 2048)),
    "eseg_l": ESegConfig(backbone="efficientnet_b7", fpn_width=384, fpn_repeats=8, head_width=384,
                         fusion="sum", train_crop=_LARGE_CROP, eval_size=(1024, 2048)),
    # Lite models: EfficientNet-Lite (no SE, ReLU6), ReLU6 in BiFPN and head; plain conv/pool/resize ops.
    "eseg_lite_s": ESegConfig(backbone="tf_efficientnet_lite0", fpn_width=64, fpn_repeats=3, head_width=64,
                              head_layers=1, act="relu6", train_crop=_CITYSCAPES_CROP, eval_size=(512, 1024)),
    "eseg_lite_m": ESegConfig(backbone="tf_efficientnet_lite2", fpn_width=88, fpn_repeats=4, head_width=88,
                              act="relu6", train_crop=_CITYSCAPES_CROP, eval_size=(768, 1536)),
    "eseg_lite_l": ESegConfig(backbone="tf_efficientnet_lite4", fpn_width=112, fpn_repeats=5, head_width=112,
                              act="relu6", train_crop=_LARGE_CROP, eval_size=(1024, 2048)),
}
for _name, _cfg in VARIANTS.items():
    _cfg.variant = _name


def list_models(pattern: str | None = None) -> list[str]:
    """Registered variant names, optionally filtered by a shell-style pattern."""
    names = sorted(VARIANTS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_config(name: str, **overrides) -> ESegConfig:
    """A fresh copy of a variant's config with ``overrides`` applied."""
    if name not in VARIANTS:
        import difflib

        close = difflib.get_close_matches(name, VARIANTS, n=3)
        raise ConfigError(f"unknown model '{name}'; did you mean {close}? Registered: {list_models()}")
    valid = {f.name for f in dataclasses.fields(ESegConfig)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ConfigError(f"unknown model option(s) {bad} for '{name}'; valid options: {sorted(valid)}")
    base = VARIANTS[name].to_dict()
    if "backbone" in overrides and ("mean" not in overrides or "std" not in overrides):
        base["mean"] = base["std"] = None  # re-derive from the new backbone
    base.update(overrides)
    return ESegConfig(**base)


def create_model(
    name: str,
    *,
    num_classes: int = 19,
    pretrained_backbone: bool = False,
    backbone_weights: str | Path | None = None,
    class_names: list[str] | None = None,
    **overrides,
) -> ESeg:
    """Build a registered variant, e.g. ``create_model("eseg_lite_s", num_classes=19)``.

    ``pretrained_backbone=True`` downloads timm's ImageNet weights (needs internet);
    ``backbone_weights`` loads them from a local file instead. Whole-model weights are loaded with
    :func:`eseg.load_model` from a folder written by ``save_pretrained``.
    """
    config = get_config(name, num_classes=num_classes, class_names=class_names, **overrides)
    return ESeg(config, pretrained_backbone=pretrained_backbone, backbone_weights=backbone_weights)
