"""Segmentation head: fuse every pyramid level at the finest one, refine, classify."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import SeparableConvBN, activation
from .bifpn import WeightedFusion


class SegmentationHead(nn.Module):
    """Bilinear-resample each level to the finest, fuse with normalized weights, then
    ``num_layers`` x (separable conv + BN + act) and a 1x1 classifier at the finest stride."""

    def __init__(
        self,
        num_levels: int,
        in_channels: int,
        width: int,
        num_classes: int,
        *,
        num_layers: int = 2,
        act: str = "swish",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fuse = WeightedFusion(num_levels, "fast")
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [SeparableConvBN(in_channels if i == 0 else width, width), activation(act)]
        self.refine = nn.Sequential(*layers)
        out_channels = width if num_layers > 0 else in_channels
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(out_channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        # A generator: each level is resized to P2 just before it is added, so the 7+ resized
        # maps are never alive together (the peak memory of the head at P2).
        finest = feats[0]
        resized = (
            f if i == 0 else F.interpolate(f, size=finest.shape[-2:], mode="bilinear", align_corners=False)
            for i, f in enumerate(feats)
        )
        x = self.refine(self.fuse(resized))
        return self.classifier(self.dropout(x))
