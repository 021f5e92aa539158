"""A benchmark variant of a model, ready to time: its runner and the input it takes.

Every variant runs through eseg's runners (:mod:`eseg.runtimes`), the ones ``eseg predict``
uses: ``eager``, ``channels_last`` and ``compile`` are a
:class:`~eseg.runtimes.torch.TorchRunner` with those options; ``onnxruntime`` and ``openvino``
run the fixed-shape ONNX graph (batch dynamic) exported by :func:`eseg.export.onnx.export_onnx`
in an :class:`~eseg.runtimes.onnxruntime.OnnxRunner` (its threads do not spin after a call, so
they do not steal the cores of the next entry of the interleaved loop) or an
:class:`~eseg.runtimes.openvino.OpenVINORunner`. OpenVINO runs in the stated ``precision``
(fp32 unless told bf16), never the CPU's silent default, and reports the one the CPU compiled for.
Inputs are made outside the timed call, already on the device, in the memory format and dtype
the runner wants, so its own conversions cost nothing.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..export.formats import precision_name
from .variants import VARIANTS, Variant


@dataclass
class Runnable:
    """``fn(inputs)`` runs one forward (a runner); ``make_input(batch)`` builds what ``fn`` takes;
    ``precision`` is what it computes in."""

    fn: Callable
    make_input: Callable[[int], object]
    precision: str = "fp32"


def prepare_variant(model: nn.Module, variant: str, size: tuple[int, int], *, device: torch.device, threads: int,
                    onnx_path: Path | None = None, precision: str = "fp32", seed: int = 0) -> Runnable:
    """``model`` run as ``variant`` at ``size``. ``onnx_path``: where the graph of a graph variant
    is (exported there first when missing); ``precision``: OpenVINO's inference precision."""
    chosen = VARIANTS.get(variant)

    def tensor(batch: int) -> torch.Tensor:
        return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed)).to(device)

    if chosen.runs_a_graph:
        return _graph_variant(model, chosen, size, threads, onnx_path, precision, tensor)
    if chosen.compile and device.type == "cuda":  # the fp16 GPU path: half weights and inputs, compiled
        runner = _torch_runner(copy.deepcopy(model).to(device).half(), chosen, device)
        return Runnable(runner, lambda b: tensor(b).half(), "fp16")
    memory_format = torch.channels_last if chosen.channels_last else torch.contiguous_format
    return Runnable(_torch_runner(model, chosen, device), lambda b: tensor(b).contiguous(memory_format=memory_format))


def _torch_runner(model: nn.Module, variant: Variant, device: torch.device):
    from ..runtimes.torch import TorchRunner

    return TorchRunner(model, device=device, channels_last=variant.channels_last, compile=variant.compile)


def _graph_variant(model: nn.Module, variant: Variant, size, threads: int, onnx_path: Path | None, precision: str,
                   tensor) -> Runnable:
    if onnx_path is None:
        raise ConfigError(f"the {variant.name} variant needs a path for the exported graph")
    if not onnx_path.is_file():
        from ..export.onnx import export_onnx

        export_onnx(_on_cpu(model), onnx_path, size=size)
    make = lambda b: tensor(b).cpu()  # noqa: E731
    if variant.runtime == "onnxruntime":
        from ..runtimes.onnxruntime import OnnxRunner

        return Runnable(OnnxRunner(onnx_path, threads=threads, spin=False, with_info=False), make)
    from ..runtimes.openvino import OpenVINORunner

    runner = OpenVINORunner(onnx_path, threads=threads, precision=precision, with_info=False)
    return Runnable(runner, make, precision_name(runner.precision))  # what the CPU compiled for, in eseg's names


def _on_cpu(model: nn.Module) -> nn.Module:
    """The model, or a CPU copy of it: the graph is traced on the CPU."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return model if on_cpu else copy.deepcopy(model).cpu()
