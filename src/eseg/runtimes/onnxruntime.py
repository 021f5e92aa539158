"""The ONNX Runtime backend: an ``.onnx`` file written by ``eseg export`` in, logits out as the
graph's recorded output contract says (``info.output``: low-resolution by default, full for
``--full-resolution`` graphs and those exported before the contract was recorded)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..imports import require
from .info import ModelInfo

INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def require_onnxruntime():
    return require("onnxruntime", "onnx", "the onnxruntime backend")


def onnx_session(path: str | Path, *, threads: int | None = None, device: str | torch.device | None = None,
                 spin: bool = True):
    """An InferenceSession with all graph optimizations; CUDA provider when ``device`` is CUDA.
    ``spin=False`` stops its threads from busy-waiting after a run (they would steal the cores
    from whatever runs next, e.g. the other entries of an interleaved benchmark)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: fp16 graphs log a line per op without a CPU fp16 kernel
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device is not None and torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("device is CUDA but this onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ort raises its own exception types (Fail, InvalidGraph, NoSuchFile...)
        raise CheckpointError(f"onnxruntime cannot load '{path}': {exc}") from exc


class OnnxRunner:
    """Runs an exported ``.onnx`` graph; the eseg metadata in the file gives its :class:`ModelInfo`.

    ``spin=False``: see :func:`onnx_session`. ``with_info=False`` runs the graph as it is, its eseg
    metadata (if any) unread and ``info`` None: a benchmark peer's graph, or another version's.
    """

    def __init__(self, path: str | Path, *, device: str | torch.device | None = None, threads: int | None = None,
                 spin: bool = True, with_info: bool = True) -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file '{path}' does not exist; write one with 'eseg export MODEL --format onnx'")
        self.session = onnx_session(path, threads=threads, device=device, spin=spin)
        meta = self.session.get_modelmeta().custom_metadata_map  # the file is parsed once, by onnxruntime
        self.info = ModelInfo.from_metadata(meta, source=str(path)) if with_info else None
        self.device = torch.device("cpu")  # outputs come back as CPU tensors
        self.source = str(path)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        except Exception as exc:  # onnxruntime's own types (Fail, RuntimeException, ...)
            raise CheckpointError(f"onnxruntime cannot run '{self.source}' on a {tuple(array.shape)} input: "
                                  f"{str(exc).strip().splitlines()[-1]}") from exc
        return torch.from_numpy(logits).float()
