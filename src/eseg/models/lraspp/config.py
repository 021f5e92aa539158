"""The LR-ASPP decoder's config. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import schema
from ..config import ACTIVATIONS, ModelConfig


@dataclass
class LRASPPConfig(ModelConfig):
    """LR-ASPP on a timm backbone whose last stage is dilated to ``output_stride``."""

    arch: ClassVar[str] = "lraspp"

    output_stride: int = schema.option(16, choices=(8, 16, 32), help="stride of the deep map (16: torchvision's "
                                       "MobileNetV3 LR-ASPP, its last stage dilated)")
    low_stride: int = schema.option(8, choices=(4, 8), help="stride of the low-level map and of the logits")
    inter_width: int = schema.option(128, min=1, help="channels of the gated deep branch (torchvision: 128)")
    act: str = schema.option("relu", choices=ACTIVATIONS, help="activation of the deep branch")

    def design(self) -> str:
        return f"OS{self.output_stride} / LR-ASPP {self.inter_width} / logits at stride {self.low_stride}"
