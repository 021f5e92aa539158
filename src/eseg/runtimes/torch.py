"""The PyTorch runtime: a :class:`~eseg.models.base.SegmentationModel` in eval mode, no gradients.

The runner never changes the model it is given for good. It runs the caller's model inside the
one evaluation context (:func:`eseg.evaluation.context.inference_context`: eval mode during the
call, every module's mode restored after), and a model that must move to another device or to
channels_last is copied first, so the caller's stays where and as it was.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import ConfigError
from ..evaluation.context import inference_context
from .info import OUTPUT_FULL, OUTPUT_LOWRES, OUTPUTS, ModelInfo

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _on_device(model: torch.nn.Module, device: torch.device) -> bool:
    current = next(model.parameters()).device
    return current.type == device.type and (device.index is None or current.index == device.index)


def _placed(model: torch.nn.Module, device, channels_last: bool) -> torch.nn.Module:
    """The caller's model when it is already on ``device`` and no memory format is asked for,
    else the runner's own copy, moved there (and in eval mode for good: nobody else holds it)."""
    device = None if device is None else torch.device(device)
    if (device is None or _on_device(model, device)) and not channels_last:
        return model
    own = copy.deepcopy(model)
    own.to(device=device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return own.eval()


class TorchRunner:
    """Runs a model (or a DDP wrapper of one). ``amp`` autocasts to fp16 on CUDA; ``channels_last``
    and ``compile`` are the speed options the benchmark compares. ``output`` is the contract of
    what it returns (:mod:`eseg.runtimes.info`): ``full``, the model's forward, or ``lowres``,
    the head's logits of the padded input (:meth:`~eseg.models.base.SegmentationModel.forward_lowres`),
    as an exported graph returns them; :meth:`with_output` switches."""

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device | None = None, amp: bool = False,
                 channels_last: bool = False, compile: bool = False, source: str = "",
                 output: str = OUTPUT_FULL) -> None:
        model = getattr(model, "module", model)  # unwrap DistributedDataParallel
        self.model = _placed(model, device, channels_last)
        self.device = next(self.model.parameters()).device
        self.amp = amp
        self.memory_format = MEMORY_FORMATS["channels_last" if channels_last else "contiguous"]
        self.compile = compile
        # a model that is not eseg's (a benchmark peer) runs too, without metadata
        self.info = ModelInfo(model.config, model.input_stride) if hasattr(model, "input_stride") else None
        self.source = source or type(model).__name__
        self._set_output(output)

    def _set_output(self, output: str) -> None:
        if output not in OUTPUTS:
            raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if output == OUTPUT_LOWRES and not hasattr(self.model, "forward_lowres"):
            raise ConfigError(f"{self.source} has no low-resolution output (forward_lowres); use output='full'")
        function = self.model if output == OUTPUT_FULL else self.model.forward_lowres
        self.forward = torch.compile(function, dynamic=False) if self.compile else function
        if self.info is not None:
            self.info = replace(self.info, output=output)
        self.output = output

    def with_output(self, output: str) -> "TorchRunner":
        """This runner (same model, same options) returning ``output`` (``full`` or ``lowres``):
        a new runner, so the caller's keeps its own contract."""
        if output == self.output:
            return self
        runner = copy.copy(self)
        runner._set_output(output)
        return runner

    @classmethod
    def from_path(cls, path: str | Path, *, device: str | torch.device | None = None, **options) -> "TorchRunner":
        from ..models.base import load_model

        device = device or "cpu"
        return cls(load_model(path).to(device), device=device, source=str(path), **options)  # its own model

    def with_amp(self, amp: bool) -> "TorchRunner":
        """This runner (same model, same compiled forward) with fp16 autocast on or off: a new
        runner, so the caller's keeps its own setting."""
        runner = copy.copy(self)
        runner.amp = amp
        return runner

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if self.amp and self.device.type != "cuda":
            raise ConfigError("amp (fp16 autocast) needs a CUDA device")
        with inference_context(self.model):
            if self.amp:
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.forward(batch).float()
            return self.forward(batch)
