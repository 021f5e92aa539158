"""DeepLabV3+ (Chen et al., 2018) on timm backbones: the atrous baseline of ESeg's claim 3.

- backbone: ``timm.create_model(..., features_only=True, output_stride=OS)`` (timm turns the
  strides beyond OS into dilation), returning the stride-4 low-level map and the deepest map;
- ASPP on the deepest map: a 1x1 branch, three 3x3 atrous branches with rates (6, 12, 18) at
  OS16 (doubled at OS8), and image pooling; concatenated, then a 1x1 conv to ``aspp_width``;
- decoder: the low-level map projected by a 1x1 conv to ``aspp_width * 48 / 256`` channels (the
  paper's 48 against ASPP's 256), concatenated with the bilinearly upsampled ASPP output, then
  ``decoder_layers`` x (3x3 conv + BN + act) of ``decoder_width`` channels and a 1x1 classifier at
  stride 4.

Not a port of any released DeepLab code; written for eseg's comparisons.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..backbone import DilatedBackbone
from ..base import SegmentationModel
from ..layers import conv_bn_act, resize_like
from ..norm import debias_batchnorm
from ..padding import spatial_size
from .config import DeepLabV3PlusConfig

OS16_RATES = (6, 12, 18)  # DeepLabV3's atrous rates at output stride 16
LOW_LEVEL_RATIO = 48 / 256  # low-level projection width relative to ASPP's, as in the paper


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3 and image pooling, fused by 1x1."""

    def __init__(self, in_channels: int, width: int, rates: tuple[int, ...], act: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_act(in_channels, width, 1, act)] + [conv_bn_act(in_channels, width, 3, act, dilation=r) for r in rates]
        )
        self.pool = conv_bn_act(in_channels, width, 1, act)  # applied to the global average
        self.project = conv_bn_act(width * (len(rates) + 2), width, 1, act)

    def forward(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, *spatial_size(x, static_shapes)))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deep map, fused with the projected stride-4 map; returns stride-4 features."""

    def __init__(self, in_channels: list[int], *, width: int, decoder_width: int, num_layers: int,
                 rates: tuple[int, ...], act: str) -> None:
        super().__init__()
        low_channels, deep_channels = in_channels
        low_width = max(8, round(width * LOW_LEVEL_RATIO))
        self.aspp = ASPP(deep_channels, width, rates, act)
        self.low_project = conv_bn_act(low_channels, low_width, 1, act)
        self.refine = nn.Sequential(*[conv_bn_act(width + low_width if i == 0 else decoder_width, decoder_width, 3, act)
                                      for i in range(num_layers)])

    def forward(self, feats: list[torch.Tensor], static_shapes: bool = False) -> torch.Tensor:
        low, deep = feats
        deep = resize_like(self.aspp(deep, static_shapes), low, static_shapes=static_shapes)
        return self.refine(torch.cat([self.low_project(low), deep], dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+; the input is padded to a multiple of the output stride."""

    config_class = DeepLabV3PlusConfig

    def __init__(self, config: DeepLabV3PlusConfig, *, pretrained_backbone: bool = False,
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__(config)
        rates = tuple(r * 16 // config.output_stride for r in OS16_RATES)
        self.backbone = DilatedBackbone(config.backbone, output_stride=config.output_stride, low_stride=4,
                                        pretrained=pretrained_backbone, weights_path=backbone_weights,
                                        needed_by="DeepLabV3+")
        self.decoder = DeepLabV3PlusDecoder(self.backbone.channels, width=config.aspp_width,
                                            decoder_width=config.decoder_width, num_layers=config.decoder_layers,
                                            rates=rates, act=config.act)
        self.dropout = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(config.decoder_width, config.num_classes, 1)
        debias_batchnorm(self)  # running statistics unbiased from the first step (eseg.models.norm)

    @property
    def input_stride(self) -> int:
        return self.config.output_stride

    def forward_logits(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        return self.classifier(self.dropout(self.decoder(self.backbone(x), static_shapes)))
