"""The registered LR-ASPP decoder. Torch-free data, read by :mod:`eseg.models.registry`."""
from __future__ import annotations

VARIANTS: dict[str, dict] = {
    # torchvision's LR-ASPP design (OS16, stride-8 low level, 128 channels) on eseg_lite_s's backbone.
    "lraspp": dict(backbone="tf_efficientnet_lite0", output_stride=16, low_stride=8, inter_width=128,
                         train_crop=(512, 1024), eval_size=(512, 1024)),
}

COSTS: dict[str, tuple[float, float, float]] = {"lraspp": (3.04, 7.23, 28.92)}
