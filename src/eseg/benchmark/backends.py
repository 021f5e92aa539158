"""Each benchmark backend turns a model into a callable on a prepared input.

``eager``, ``channels_last`` and ``compile`` run PyTorch; ``onnxruntime`` and ``openvino`` run
the fixed-shape ONNX graph (batch dynamic) exported by :func:`eseg.export.onnx.export_onnx`.
OpenVINO runs in the stated ``precision`` (fp32 unless told bf16): never the CPU's silent default.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .peers import BACKENDS


@dataclass
class Runnable:
    """``fn(inputs)`` runs one forward; ``make_input(batch)`` builds what ``fn`` takes."""

    fn: Callable
    make_input: Callable[[int], object]
    precision: str = "fp32"


def prepare_backend(model: nn.Module, backend: str, size: tuple[int, int], *, device: torch.device, threads: int,
                    onnx_path: Path | None = None, precision: str = "fp32", seed: int = 0) -> Runnable:
    def tensor(batch: int) -> torch.Tensor:
        return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed)).to(device)

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")
    if backend in ("onnxruntime", "openvino"):
        return _exported(model, backend, size, threads, onnx_path, precision, tensor)
    model = model.to(device)
    if backend == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        return Runnable(no_grad(model), lambda b: tensor(b).contiguous(memory_format=torch.channels_last))
    if backend == "compile":
        if device.type == "cuda":  # the fp16 GPU path: half weights and inputs, compiled
            compiled = torch.compile(model.half(), mode="max-autotune-no-cudagraphs", dynamic=False)
            return Runnable(no_grad(compiled), lambda b: tensor(b).half(), "fp16")
        return Runnable(no_grad(torch.compile(model, dynamic=False)), tensor)
    return Runnable(no_grad(model), tensor)


def _exported(model, backend: str, size, threads: int, onnx_path: Path | None, precision: str, tensor) -> Runnable:
    from ..export.onnx import export_onnx

    if onnx_path is None:
        raise ConfigError(f"the {backend} backend needs a path for the exported graph")
    if not onnx_path.is_file():
        export_onnx(model.cpu(), onnx_path, size=size)
    make = lambda b: tensor(b).cpu().numpy()  # noqa: E731
    if backend == "onnxruntime":
        from ..runtimes.onnxruntime import onnx_session

        session = onnx_session(onnx_path, threads=threads, spin=False)  # no spinning into the next entry
        return Runnable(lambda x: session.run(None, {session.get_inputs()[0].name: x}), make)
    from ..runtimes.openvino import compile_openvino, compiled_precision

    compiled = compile_openvino(onnx_path, threads=threads, precision=precision)
    request = compiled.create_infer_request()
    # the precision the CPU compiled for (bf16 falls back to f32 where the CPU lacks it), as eseg's names
    used = {"f32": "fp32", "bf16": "bf16"}.get(compiled_precision(compiled, precision), precision)
    return Runnable(lambda x: request.infer({0: np.ascontiguousarray(x)}), make, used)


def no_grad(model: Callable) -> Callable:
    def run(x):
        with torch.inference_mode():
            return model(x)

    return run
