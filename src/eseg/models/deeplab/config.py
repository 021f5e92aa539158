"""The DeepLabV3+ baseline's config. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import schema
from ..config import ACTIVATIONS, ModelConfig


@dataclass
class DeepLabV3PlusConfig(ModelConfig):
    """DeepLabV3+ on a timm backbone whose last stages are dilated to ``output_stride``."""

    arch: ClassVar[str] = "deeplabv3plus"

    output_stride: int = schema.option(16, choices=(8, 16), help="16: last stage dilated x2; 8: last two stages")
    aspp_width: int = schema.option(256, min=1, help="ASPP channels")
    decoder_width: int = schema.option(256, min=1, help="decoder 3x3 conv channels")
    decoder_layers: int = schema.option(2, min=1, help="decoder 3x3 conv layers")
    act: str = schema.option("relu", choices=ACTIVATIONS, help="activation")
    dropout: float = schema.option(0.0, min=0.0, below=1.0, help="dropout before the classifier")

    def design(self) -> str:
        return f"OS{self.output_stride} / ASPP {self.aspp_width} / decoder {self.decoder_width}x{self.decoder_layers}"
