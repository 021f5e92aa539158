"""Inference runtimes behind one runner protocol: PyTorch, ONNX Runtime, OpenVINO.

A *runner* is any object with

- ``info``: a :class:`ModelInfo` (classes, palette, normalisation, padding stride, sizes);
- ``device``: where inputs and accumulators live (a ``torch.device``);
- ``__call__(batch) -> logits``: ``batch`` is a float32 (N, 3, H, W) tensor, already normalized
  and padded (bottom/right, zeros) by :func:`eseg.models.padding.pad_to_size` to a multiple of
  ``info.input_stride`` (or to ``info.fixed_size``); it returns (N, num_classes, H, W) logits.

``BACKENDS`` maps a backend name to its runner class (imported on first use) and the file
suffixes it reads; :func:`load_runner` picks the backend from the path when none is named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..paths import resolve_model_path
from ..registry import Registry

BACKENDS: Registry = Registry("inference backend")
BACKENDS.register("torch", "eseg.runtimes.torch:TorchRunner.from_path", suffixes=(), extra=None)
BACKENDS.register("onnxruntime", "eseg.runtimes.onnxruntime:OnnxRunner", suffixes=(".onnx",), extra="onnx")
BACKENDS.register("openvino", "eseg.runtimes.openvino:OpenVINORunner", suffixes=(".xml",), extra="openvino")


def backend_for(path: str | Path) -> str:
    """The backend that reads ``path``: by suffix, else torch (model and run folders)."""
    suffix = Path(path).suffix.lower()
    found = BACKENDS.find(lambda name, meta: suffix in meta["suffixes"])
    return found[0] if found else "torch"


def load_runner(path: str | Path, backend: str | None = None, *, device: Any = None, **options: Any):
    """A runner for ``path`` (a model or run folder, an ``.onnx`` or an ``.xml`` file);
    ``device`` may be ``"auto"``."""
    resolved = resolve_model_path(path)
    expected = backend_for(resolved)
    name = backend or expected
    if device == "auto":  # torch picks CUDA when it has it; the other runtimes choose for themselves
        from ..devices import resolve_device

        device = resolve_device("auto") if name == "torch" else None
    if backend is not None and expected != "torch" and backend != expected:
        raise ConfigError(f"'{path}' is a {expected} file; drop --backend or use --backend {expected}")
    return BACKENDS.get(name)(resolved, device=device, **options)


__all__ = ["BACKENDS", "backend_for", "load_runner"]
