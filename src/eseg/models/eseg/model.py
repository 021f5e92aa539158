"""The ESeg network: timm backbone -> extra levels up to P(max_level) -> BiFPN -> head."""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ConfigError
from ..backbone import TimmBackbone
from ..base import SegmentationModel
from ..norm import debias_batchnorm
from .bifpn import FeaturePyramid
from .config import ESegConfig
from .head import SegmentationHead


class ESeg(SegmentationModel):
    """ESeg over levels ``min_level..max_level``. The input is padded only to the backbone's
    stride (32 for the usual backbones); the levels above it have ceil sizes down to 1 x 1, so
    the cost follows the image's pixels, not the next multiple of ``2**max_level``."""

    config_class = ESegConfig

    def __init__(self, config: ESegConfig, *, pretrained_backbone: bool = False,
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, min_level=config.min_level, pretrained=pretrained_backbone,
                                     weights_path=backbone_weights)
        if self.backbone.top_level > config.max_level:
            raise ConfigError(f"model.max_level={config.max_level} is below the backbone's deepest level "
                              f"P{self.backbone.top_level}; raise model.max_level")
        self.levels = list(range(config.min_level, config.max_level + 1))
        self.pyramid = FeaturePyramid(
            self.backbone.channels, num_extra=config.max_level - self.backbone.top_level, width=config.fpn_width,
            repeats=config.fpn_repeats, kind=config.fpn_kind, fusion=config.fusion, act=config.act,
            num_side=config.bifpn_min_level - config.min_level, extra_kind=config.extra_kind,
        )
        self.head = SegmentationHead(len(self.levels), config.fpn_width, config.head_width, config.num_classes,
                                     num_layers=config.head_layers, act=config.act, dropout=config.dropout,
                                     kind=config.head_kind)
        debias_batchnorm(self)  # running statistics unbiased from the first step (eseg.models.norm)

    @property
    def input_stride(self) -> int:
        return 2**self.backbone.top_level

    def forward_logits(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        return self.head(self.pyramid(self.backbone(x), static_shapes), static_shapes)
