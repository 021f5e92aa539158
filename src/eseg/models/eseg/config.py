"""The ESeg architecture's config. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import schema
from ...errors import ConfigError
from ..config import ACTIVATIONS, ModelConfig

FPN_KINDS = ("bifpn", "fpn")
HEAD_KINDS = ("progressive", "weighted")
FUSIONS = ("fast", "attn", "sum")
EXTRA_KINDS = ("maxpool", "conv")


@dataclass
class ESegConfig(ModelConfig):
    """Everything needed to rebuild an ESeg network (weights aside)."""

    arch: ClassVar[str] = "eseg"

    min_level: int = schema.option(2, min=1, max=5, help="finest pyramid level P_min (stride 2**min_level)")
    max_level: int = schema.option(9, min=3, max=12, help="deepest pyramid level P_max (stride 2**max_level)")
    fpn_min_level: int | None = schema.option(None, min=1, max=12, help="finest level inside the BiFPN; finer levels "
                                              "reach the head through their 1x1 lateral only (null: min_level)")
    extra_kind: str = schema.option("maxpool", choices=EXTRA_KINDS,
                                    help="how levels above the backbone are made: maxpool (a 3x3 stride-2 max-pool of "
                                         "the level below) or conv (activation + stride-2 separable conv + BN)")
    fpn_width: int = schema.option(64, min=1, help="BiFPN channels W")
    fpn_repeats: int = schema.option(3, min=1, help="BiFPN layers D")
    fpn_kind: str = schema.option("bifpn", choices=FPN_KINDS, help="bifpn, or fpn (plain top-down, an ablation)")
    fusion: str = schema.option("fast", choices=FUSIONS, help="fast normalized, attn (softmax) or sum")
    act: str = schema.option("swish", choices=ACTIVATIONS, help="activation of BiFPN and head")
    head_kind: str = schema.option("progressive", choices=HEAD_KINDS,
                                   help="progressive: upsample-and-add from the coarsest level down; weighted: resize "
                                        "every level to the finest and fuse with fast normalized weights")
    head_width: int = schema.option(64, min=1, help="head channels")
    head_layers: int = schema.option(2, min=0, help="separable conv layers in the head")
    dropout: float = schema.option(0.0, min=0.0, below=1.0, help="dropout before the classifier")

    def validate(self, where: str = "model") -> None:
        super().validate(where)
        if self.min_level > self.max_level:
            raise ConfigError(f"{where}: min_level={self.min_level} must not exceed max_level={self.max_level}")
        bifpn_min = self.bifpn_min_level
        if not self.min_level <= bifpn_min < self.max_level:
            raise ConfigError(f"{where}: fpn_min_level={bifpn_min} must be in [min_level={self.min_level}, "
                              f"max_level={self.max_level}) so the BiFPN has at least two levels")

    @property
    def bifpn_min_level(self) -> int:
        return self.min_level if self.fpn_min_level is None else self.fpn_min_level

    def design(self) -> str:
        levels = f"P{self.min_level}-P{self.max_level}"
        if self.bifpn_min_level != self.min_level:
            levels += f" (BiFPN P{self.bifpn_min_level}+)"
        return f"{levels} / {self.fpn_width} / {self.fpn_repeats} / {self.head_width}x{self.head_layers} {self.head_kind}"
