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

# Every variant: the BiFPN spans P3..P9 (EfficientDet's BiFPN starts at P3; ESeg extends it to P9)
# and P2 joins the progressive head through its 1x1 lateral, at a fraction of the cost of fusing
# at stride 4 (measured in docs/models.md).
_P3 = dict(fpn_min_level=3, head_kind="progressive")

VARIANTS: dict[str, dict] = {
    # Full models: EfficientNet B-series, swish, EfficientDet-like W/D (S ~ D1, M ~ D4, L ~ D7).
    "eseg_s": dict(backbone="efficientnet_b1", fpn_width=88, fpn_repeats=4, head_width=88,
                   train_crop=CITYSCAPES_CROP, eval_size=(1024, 2048), **_P3),
    "eseg_m": dict(backbone="efficientnet_b4", fpn_width=224, fpn_repeats=7, head_width=224,
                   train_crop=LARGE_CROP, eval_size=(1024, 2048), **_P3),
    "eseg_l": dict(backbone="efficientnet_b7", fpn_width=384, fpn_repeats=8, head_width=384, fusion="sum",
                   train_crop=LARGE_CROP, eval_size=(1024, 2048), **_P3),
    # Lite models: EfficientNet-Lite (no SE, ReLU6), ReLU6 in BiFPN and head; plain conv/pool/resize ops.
    # lite_s is sized for real time on a CPU (W48, D2: measured against W64, D3 in docs/models.md).
    "eseg_lite_s": dict(backbone="tf_efficientnet_lite0", fpn_width=48, fpn_repeats=2, head_width=48, head_layers=1,
                        act="relu6", train_crop=CITYSCAPES_CROP, eval_size=(512, 1024), **_P3),
    "eseg_lite_m": dict(backbone="tf_efficientnet_lite2", fpn_width=88, fpn_repeats=4, head_width=88, act="relu6",
                        train_crop=CITYSCAPES_CROP, eval_size=(768, 1536), **_P3),
    "eseg_lite_l": dict(backbone="tf_efficientnet_lite4", fpn_width=112, fpn_repeats=5, head_width=112, act="relu6",
                        train_crop=LARGE_CROP, eval_size=(1024, 2048), **_P3),
    # Real-time family (ours, not the paper's): the backbone the CPU study measured fastest for its
    # ImageNet accuracy (docs/benchmark.md), with the lite_s decoder.
    "eseg_rt_s": dict(backbone="mobilenetv4_conv_small", fpn_width=48, fpn_repeats=2, head_width=48, head_layers=1,
                      act="relu6", train_crop=CITYSCAPES_CROP, eval_size=(512, 1024), **_P3),
    "eseg_rt_m": dict(backbone="mobilenetv3_large_100", fpn_width=48, fpn_repeats=2, head_width=48, head_layers=1,
                      act="relu6", train_crop=CITYSCAPES_CROP, eval_size=(512, 1024), **_P3),
    "eseg_rt_l": dict(backbone="hgnetv2_b0", fpn_width=64, fpn_repeats=3, head_width=64, head_layers=1,
                      act="relu6", train_crop=CITYSCAPES_CROP, eval_size=(512, 1024), **_P3),
}

# name -> (params M, GMACs at eval size, GMACs at 1024x2048)
COSTS: dict[str, tuple[float, float, float]] = {
    "eseg_l": (77.4, 323.2, 323.2),
    "eseg_lite_l": (12.08, 63.56, 63.56),
    "eseg_lite_m": (4.84, 15.75, 28.01),
    "eseg_lite_s": (3.05, 4.07, 16.27),
    "eseg_m": (21.43, 97.04, 97.04),
    "eseg_rt_l": (2.14, 3.93, 15.73),
    "eseg_rt_m": (3.1, 2.5, 10.02),
    "eseg_rt_s": (1.39, 2.22, 8.88),
    "eseg_s": (6.58, 27.72, 27.72),
}
