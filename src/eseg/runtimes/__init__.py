"""Inference runtimes behind one runner protocol: PyTorch, ONNX Runtime, OpenVINO.

A *runner* is any object with

- ``info``: a :class:`ModelInfo` (classes, palette, normalisation, padding stride, sizes);
- ``device``: where inputs and accumulators live (a ``torch.device``);
- ``__call__(batch) -> logits``: ``batch`` is a float32 (N, 3, H, W) tensor, already normalized
  and padded (bottom/right, zeros) by :func:`eseg.models.padding.pad_to_size` to a multiple of
  ``info.input_stride`` (or to ``info.fixed_size``); it returns (N, num_classes, H, W) logits.

``BACKENDS`` maps a backend name to its runner class (imported on first use), the file suffixes
that name its files, and the graph formats it reads (``reads``; see
:data:`eseg.export.formats.FORMATS`). :func:`load_runner` tells a graph by what the file holds,
whatever its name (:func:`~eseg.export.formats.sniff_graph_format`), and picks the backend from
it when none is named; a named backend is refused only for content it cannot read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..export.formats import sniff_graph_format
from ..paths import resolve_model_path
from ..registry import Registry

BACKENDS: Registry = Registry("inference backend")
BACKENDS.register("torch", "eseg.runtimes.torch:TorchRunner.from_path", suffixes=(), reads=(), extra=None)
BACKENDS.register("onnxruntime", "eseg.runtimes.onnxruntime:OnnxRunner", suffixes=(".onnx",), reads=("onnx",),
                  extra="onnx")
BACKENDS.register("openvino", "eseg.runtimes.openvino:OpenVINORunner", suffixes=(".xml",),
                  reads=("openvino", "onnx"), extra="openvino")
GRAPH_READERS = {"onnx": "onnxruntime", "openvino": "openvino"}  # the backend a graph format runs on by default


def backend_for(path: str | Path) -> str:
    """The backend that reads ``path``: by what the file holds, else by its suffix, else torch
    (model and run folders)."""
    found = sniff_graph_format(path)
    if found:
        return GRAPH_READERS[found]
    suffix = Path(path).suffix.lower()
    named = BACKENDS.find(lambda name, meta: suffix in meta["suffixes"])
    return named[0] if named else "torch"


def model_source(path: str | Path) -> Path:
    """What :func:`load_runner` loads for ``path``: a graph file as it is, whatever its name; a
    run folder's best checkpoint; a model folder (:func:`eseg.paths.resolve_model_path`)."""
    return resolve_model_path(path)


def check_backend_reads(backend: str, path: str | Path, source: Path) -> None:
    """A named backend must read what ``source`` holds: a graph format it reads, or for torch a
    saved model."""
    held = sniff_graph_format(source)
    reads = BACKENDS.metadata(backend)["reads"]
    if held is None and reads:
        raise ConfigError(f"'{path}' is a saved model, not an exported graph: the {backend} backend runs a graph; "
                          f"export one with 'eseg export {path} --format {'onnx' if 'onnx' in reads else 'openvino'}', "
                          "or drop --backend to run it with torch")
    if held is not None and held not in reads:
        readers = [name for name in BACKENDS.names() if held in BACKENDS.metadata(name)["reads"]]
        raise ConfigError(f"'{path}' holds an {held} graph, which the {backend} backend does not read; "
                          f"use --backend {' or --backend '.join(readers)}, or drop --backend")


def load_runner(path: str | Path, backend: str | None = None, *, device: Any = None, **options: Any):
    """A runner for ``path`` (a model or run folder, or an exported ONNX or OpenVINO graph,
    whatever its file name); ``device`` may be ``"auto"``."""
    source = model_source(path)
    name = backend or backend_for(source)
    BACKENDS.check(name)  # an unknown backend is named before anything else
    if backend is not None:
        check_backend_reads(backend, path, source)
    if device == "auto":  # torch picks CUDA when it has it; the other runtimes choose for themselves
        from ..devices import resolve_device

        device = resolve_device("auto") if name == "torch" else None
    return BACKENDS.get(name)(source, device=device, **options)


__all__ = ["BACKENDS", "backend_for", "load_runner", "model_source"]
