"""The ESeg architecture's config. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import schema
from ...errors import ConfigError
from ..config import ModelConfig

FPN_KINDS = ("bifpn", "fpn")
FUSIONS = ("fast", "attn", "sum")
ACTIVATIONS = ("swish", "relu6", "relu", "hardswish")


@dataclass
class ESegConfig(ModelConfig):
    """Everything needed to rebuild an ESeg network (weights aside)."""

    arch: ClassVar[str] = "eseg"

    min_level: int = schema.option(2, min=1, max=5, help="finest pyramid level P_min (stride 2**min_level)")
    max_level: int = schema.option(9, min=3, max=12, help="deepest pyramid level P_max (stride 2**max_level)")
    fpn_width: int = schema.option(64, min=1, help="BiFPN channels W")
    fpn_repeats: int = schema.option(3, min=1, help="BiFPN layers D")
    fpn_kind: str = schema.option("bifpn", choices=FPN_KINDS, help="bifpn, or fpn (plain top-down, an ablation)")
    fusion: str = schema.option("fast", choices=FUSIONS, help="fast normalized, attn (softmax) or sum")
    act: str = schema.option("swish", choices=ACTIVATIONS, help="activation of BiFPN and head")
    head_width: int = schema.option(64, min=1, help="head channels")
    head_layers: int = schema.option(2, min=0, help="separable conv layers in the head")
    dropout: float = schema.option(0.0, min=0.0, below=1.0, help="dropout before the classifier")

    def validate(self, where: str = "model") -> None:
        super().validate(where)
        if self.min_level > self.max_level:
            raise ConfigError(f"{where}: min_level={self.min_level} must not exceed max_level={self.max_level}")
