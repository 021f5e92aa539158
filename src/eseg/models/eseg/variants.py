"""The registered ESeg variants. Torch-free data, read by :mod:`eseg.models.registry`.

The paper (Meng et al., arXiv 2203.12683) publishes no per-variant configuration. Every number
here is eseg's own design, following EfficientDet's compound scaling of backbone, BiFPN width W
and depth D. ``COSTS`` holds what ``eseg models --flops`` counts (params in millions, GMACs at the
variant's eval size and at 1024x2048, torch.utils.flop_counter, 19 classes); a test keeps them
in step with the code.
"""
from __future__ import annotations

CITYSCAPES_CROP = (512, 1024)
LARGE_CROP = (768, 1536)

VARIANTS: dict[str, dict] = {
    # Full models: EfficientNet B-series, swish, EfficientDet-like W/D (S ~ D1, M ~ D4, L ~ D7).
    "eseg_s": dict(backbone="efficientnet_b1", fpn_width=88, fpn_repeats=4, head_width=88,
                   train_crop=CITYSCAPES_CROP, eval_size=(1024, 2048)),
    "eseg_m": dict(backbone="efficientnet_b4", fpn_width=224, fpn_repeats=7, head_width=224,
                   train_crop=LARGE_CROP, eval_size=(1024, 2048)),
    "eseg_l": dict(backbone="efficientnet_b7", fpn_width=384, fpn_repeats=8, head_width=384, fusion="sum",
                   train_crop=LARGE_CROP, eval_size=(1024, 2048)),
    # Lite models: EfficientNet-Lite (no SE, ReLU6), ReLU6 in BiFPN and head; plain conv/pool/resize ops.
    "eseg_lite_s": dict(backbone="tf_efficientnet_lite0", fpn_width=64, fpn_repeats=3, head_width=64, head_layers=1,
                        act="relu6", train_crop=CITYSCAPES_CROP, eval_size=(512, 1024)),
    "eseg_lite_m": dict(backbone="tf_efficientnet_lite2", fpn_width=88, fpn_repeats=4, head_width=88, act="relu6",
                        train_crop=CITYSCAPES_CROP, eval_size=(768, 1536)),
    "eseg_lite_l": dict(backbone="tf_efficientnet_lite4", fpn_width=112, fpn_repeats=5, head_width=112, act="relu6",
                        train_crop=LARGE_CROP, eval_size=(1024, 2048)),
}

# name -> (params M, GMACs at eval size, GMACs at 1024x2048)
COSTS: dict[str, tuple[float, float, float]] = {
    "eseg_l": (80.07, 521.5, 521.5),
    "eseg_lite_l": (12.27, 74.76, 74.76),
    "eseg_lite_m": (4.94, 18.94, 33.66),
    "eseg_lite_s": (3.22, 4.87, 19.47),
    "eseg_m": (22.27, 157.1, 157.1),
    "eseg_s": (6.68, 33.38, 33.38),
}
