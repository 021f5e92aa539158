"""Segmentation heads: bring every pyramid level to the finest one, refine, classify.

``progressive`` (the default): from the coarsest level down, upsample (bilinear, to the exact size
of the next finer map) and add, as an FPN's top-down path without convolutions; each addition
touches one map at a time at its own resolution. ``weighted``: resize every level to the finest
separately and fuse them with fast normalized weights (eseg 0.1's head; every resize runs at the
finest resolution).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import SeparableConvBN, activation, resize_like
from .bifpn import WeightedFusion


class SegmentationHead(nn.Module):
    """Fuse the levels at the finest stride, then ``num_layers`` x (separable conv + BN + act) and a
    1x1 classifier."""

    def __init__(self, num_levels: int, in_channels: int, width: int, num_classes: int, *, num_layers: int = 2,
                 act: str = "swish", dropout: float = 0.0, kind: str = "progressive") -> None:
        super().__init__()
        self.fuse = WeightedFusion(num_levels, "fast") if kind == "weighted" else None
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [SeparableConvBN(in_channels if i == 0 else width, width), activation(act)]
        self.refine = nn.Sequential(*layers)
        out_channels = width if num_layers > 0 else in_channels
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(out_channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor], static_shapes: bool = False) -> torch.Tensor:
        x = self.progressive(feats, static_shapes) if self.fuse is None else self.weighted(feats, static_shapes)
        return self.classifier(self.dropout(self.refine(x)))

    @staticmethod
    def progressive(feats: list[torch.Tensor], static_shapes: bool = False) -> torch.Tensor:
        x = feats[-1]
        for finer in reversed(feats[:-1]):
            x = resize_like(x, finer, static_shapes=static_shapes) + finer
        return x

    def weighted(self, feats: list[torch.Tensor], static_shapes: bool = False) -> torch.Tensor:
        # A generator: each level is resized just before it is added, so the resized maps are
        # never alive together (the head's peak memory at the finest stride).
        finest = feats[0]
        return self.fuse(f if i == 0 else resize_like(f, finest, static_shapes=static_shapes)
                         for i, f in enumerate(feats))
