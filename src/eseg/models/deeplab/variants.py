"""The registered DeepLabV3+ baseline. Torch-free data, read by :mod:`eseg.models.registry`."""
from __future__ import annotations

VARIANTS: dict[str, dict] = {
    # The atrous peer of eseg_lite_s: the same backbone at output stride 16, DeepLab's widths.
    "deeplabv3plus": dict(backbone="tf_efficientnet_lite0", output_stride=16, aspp_width=256, decoder_width=256,
                          train_crop=(512, 1024), eval_size=(512, 1024)),
}

COSTS: dict[str, tuple[float, float, float]] = {"deeplabv3plus": (6.96, 54.96, 219.85)}
