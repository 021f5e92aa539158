"""The PyTorch runtime: a :class:`~eseg.models.base.SegmentationModel` in eval mode, no gradients."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from .info import ModelInfo

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


class TorchRunner:
    """Runs a model (or a DDP wrapper of one). ``amp`` autocasts to fp16 on CUDA; ``channels_last``
    and ``compile`` are the speed options the benchmark compares."""

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device | None = None, amp: bool = False,
                 channels_last: bool = False, compile: bool = False, source: str = "") -> None:
        model = getattr(model, "module", model)  # unwrap DistributedDataParallel
        if device is not None:
            model.to(device)
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.amp = amp
        self.memory_format = MEMORY_FORMATS["channels_last" if channels_last else "contiguous"]
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(model, dynamic=False) if compile else model
        self.info = ModelInfo(model.config, model.input_stride)
        self.source = source or type(model).__name__

    @classmethod
    def from_path(cls, path: str | Path, *, device: str | torch.device | None = None, **options) -> "TorchRunner":
        from ..models.base import load_model

        return cls(load_model(path), device=device or "cpu", source=str(path), **options)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if self.amp:
            if self.device.type != "cuda":
                raise ConfigError("amp (fp16 autocast) needs a CUDA device")
            with torch.autocast("cuda", dtype=torch.float16):
                return self.forward(batch).float()
        return self.forward(batch)
