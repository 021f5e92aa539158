"""LR-ASPP ("Searching for MobileNetV3", Howard et al., 2019) on timm backbones.

- backbone: :class:`~eseg.models.backbone.DilatedBackbone`, the ``low_stride`` map and the deepest
  map at ``output_stride``;
- deep branch: a 1x1 conv + BN + act to ``inter_width``, gated channel-wise by a sigmoid of a 1x1
  conv of the image-level average (a squeeze-and-excitation-like global context, instead of ASPP's
  atrous branches), resized bilinearly to the low-level map;
- logits: a 1x1 classifier of the low-level map plus a 1x1 classifier of the gated deep branch, at
  ``low_stride``.

Written for eseg's comparisons from the paper's description; torchvision's ``LRASPPHead`` has the
same structure.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import DilatedBackbone
from ..base import SegmentationModel
from ..layers import conv_bn_act, resize_like
from ..norm import debias_batchnorm
from .config import LRASPPConfig


class LRASPPHead(nn.Module):
    """Gated deep branch plus low-level classifier; returns logits at the low-level stride."""

    def __init__(self, low_channels: int, deep_channels: int, *, width: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.deep = conv_bn_act(deep_channels, width, 1, act)
        self.gate = nn.Sequential(nn.Conv2d(deep_channels, width, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.deep_classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor], static_shapes: bool = False) -> torch.Tensor:
        low, deep = feats
        gated = self.deep(deep) * self.gate(F.adaptive_avg_pool2d(deep, 1))
        gated = resize_like(gated, low, static_shapes=static_shapes)
        return self.low_classifier(low) + self.deep_classifier(gated)


class LRASPP(SegmentationModel):
    """LR-ASPP; the input is padded to a multiple of the output stride."""

    config_class = LRASPPConfig

    def __init__(self, config: LRASPPConfig, *, pretrained_backbone: bool = False,
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__(config)
        self.backbone = DilatedBackbone(config.backbone, output_stride=config.output_stride,
                                        low_stride=config.low_stride, pretrained=pretrained_backbone,
                                        weights_path=backbone_weights, needed_by="LR-ASPP")
        low_channels, deep_channels = self.backbone.channels
        self.head = LRASPPHead(low_channels, deep_channels, width=config.inter_width,
                               num_classes=config.num_classes, act=config.act)
        debias_batchnorm(self)  # running statistics unbiased from the first step (eseg.models.norm)

    @property
    def input_stride(self) -> int:
        return max(self.config.output_stride, self.config.low_stride)

    def forward_logits(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        return self.head(self.backbone(x), static_shapes)
