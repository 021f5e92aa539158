"""DeepLabV3+ (Chen et al., 2018) on the same timm backbones: the atrous baseline of ESeg's claim 3.

Selected with ``ESegConfig.fpn_kind = "deeplabv3plus"``, so the same trainer, checkpoints,
evaluator and ``eseg.load_model`` handle it. ``max_level`` is log2 of the output stride: 4 is
DeepLab's OS16 (the last backbone stage dilated x2), 3 is OS8 (the last two stages dilated).

- backbone: ``timm.create_model(..., features_only=True, output_stride=2**max_level)`` (timm turns
  the strides beyond it into dilation), returning the P2 low-level map and the deepest map;
- ASPP on the deepest map: a 1x1 branch, three 3x3 atrous branches with rates (6, 12, 18) at
  OS16 (doubled at OS8), and image pooling; concatenated, then 1x1 conv to ``fpn_width``;
- decoder: the low-level map projected by 1x1 conv to ``fpn_width * 48 / 256`` channels (the
  paper's 48 against ASPP's 256), concatenated with the bilinearly upsampled ASPP output, then
  ``head_layers`` x (3x3 conv + BN + act) of ``head_width`` channels and a 1x1 classifier at
  stride 4, upsampled x4 by the model.

Widths, activation and dropout come from the ESeg config, so a DeepLab and an ESeg built from the
same variant share backbone and channel budget. Not a port of any released DeepLab code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .backbone import _create_timm_features
from .bifpn import activation

if TYPE_CHECKING:
    from pathlib import Path

    from .eseg import ESegConfig

DEEPLAB_KIND = "deeplabv3plus"
OS16_RATES = (6, 12, 18)  # DeepLabV3's atrous rates at output stride 16
LOW_LEVEL_RATIO = 48 / 256  # low-level projection width relative to ASPP's, as in the paper
BN_EPS = 1e-5


def conv_bn_act(in_channels: int, out_channels: int, kernel: int, act: str, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels, eps=BN_EPS),
        activation(act),
    )


class DilatedBackbone(nn.Module):
    """timm features at stride 4 (P2) and at the output stride (the deepest, dilated stage)."""

    def __init__(self, name: str, *, output_stride: int, pretrained: bool = False,
                 weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.model = _create_timm_features(name, pretrained=pretrained, weights_path=weights_path,
                                           output_stride=output_stride)
        reductions = self.model.feature_info.reduction()
        if 4 not in reductions:
            raise ConfigError(f"backbone '{name}' has no stride-4 features (strides {reductions}); DeepLabV3+ needs P2")
        self.low_index = reductions.index(4)
        self.channels = [self.model.feature_info.channels()[i] for i in (self.low_index, -1)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        return [features[self.low_index], features[-1]]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3 and image pooling, fused by 1x1."""

    def __init__(self, in_channels: int, width: int, rates: tuple[int, ...], act: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_act(in_channels, width, 1, act)] + [conv_bn_act(in_channels, width, 3, act, r) for r in rates]
        )
        self.pool = conv_bn_act(in_channels, width, 1, act)  # applied to the global average
        self.project = conv_bn_act(width * (len(rates) + 2), width, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deep map, fused with the projected P2 map; returns stride-4 features."""

    def __init__(self, in_channels: list[int], *, width: int, head_width: int, num_layers: int,
                 rates: tuple[int, ...], act: str) -> None:
        super().__init__()
        low_channels, deep_channels = in_channels
        low_width = max(8, round(width * LOW_LEVEL_RATIO))
        self.aspp = ASPP(deep_channels, width, rates, act)
        self.low_project = conv_bn_act(low_channels, low_width, 1, act)
        layers = [conv_bn_act(width + low_width if i == 0 else head_width, head_width, 3, act)
                  for i in range(max(1, num_layers))]
        self.refine = nn.Sequential(*layers)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        low, deep = feats
        deep = F.interpolate(self.aspp(deep), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(torch.cat([self.low_project(low), deep], dim=1))


class Classifier(nn.Sequential):
    def __init__(self, in_channels: int, num_classes: int, dropout: float) -> None:
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), nn.Conv2d(in_channels, num_classes, 1))


def build_deeplabv3plus(
    config: ESegConfig, *, pretrained: bool = False, weights_path: str | Path | None = None
) -> tuple[DilatedBackbone, DeepLabV3PlusDecoder, Classifier]:
    """(backbone, decoder, classifier) for ``ESeg``'s backbone -> pyramid -> head slots."""
    if config.min_level != 2 or config.max_level not in (3, 4):
        raise ConfigError(
            f"DeepLabV3+ fuses P2 with the output stride 2**max_level: it needs min_level=2 and max_level 4 "
            f"(OS16) or 3 (OS8), got min_level={config.min_level}, max_level={config.max_level}"
        )
    output_stride = 2**config.max_level
    rates = tuple(r * 16 // output_stride for r in OS16_RATES)
    backbone = DilatedBackbone(config.backbone, output_stride=output_stride, pretrained=pretrained,
                               weights_path=weights_path)
    decoder = DeepLabV3PlusDecoder(backbone.channels, width=config.fpn_width, head_width=config.head_width,
                                   num_layers=config.head_layers, rates=rates, act=config.act)
    return backbone, decoder, Classifier(config.head_width, config.num_classes, config.dropout)
