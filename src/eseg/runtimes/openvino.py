"""The OpenVINO backend: an IR (``.xml`` + ``.bin``) written by ``eseg export`` in, logits out
as the graph's recorded output contract says (``info.output``, :mod:`eseg.runtimes.info`).

The eseg metadata is read from the IR's ``rt_info`` (section ``eseg``). An ``.onnx`` file is
read directly too (the benchmark compiles its exported graphs so). Many CPUs (those with
AVX-512 BF16 or AMX) run OpenVINO in bf16 unless told otherwise, so the precision is always set
explicitly: the one recorded at export (``f32`` for fp32 and int8 graphs, ``bf16`` for bf16),
unless ``precision`` names another; :attr:`OpenVINORunner.precision` reports the one in use.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataError
from ..export.formats import OPENVINO_HINTS, OPENVINO_PRECISIONS, sniff_graph_format
from ..imports import require
from .info import ModelInfo

RT_NAMESPACE = "eseg"  # rt_info section holding ModelInfo.to_metadata() and META_PRECISION
META_PRECISION = "eseg_precision"
VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")  # OpenVINO devices that dispatch to others


def require_openvino():
    return require("openvino", "openvino", "the openvino backend")


@functools.lru_cache(maxsize=1)
def openvino_core():
    """One ``ov.Core`` per process: creating it loads the device plugins."""
    return require_openvino().Core()


def inference_hint(precision: str) -> str:
    """``fp32``/``f32`` -> ``f32``, ``bf16`` -> ``bf16`` (int8 graphs run f32 between quantized ops)."""
    if precision not in OPENVINO_HINTS:
        raise ConfigError(f"OpenVINO precision '{precision}' is not one of f32, bf16 (or an export precision: "
                          f"{', '.join(OPENVINO_PRECISIONS)})")
    return OPENVINO_HINTS[precision]


def compile_openvino(model: Any, *, threads: int | None = None, precision: str = "f32", device: str = "CPU",
                     source: str | None = None):
    """A compiled model for ``model`` (an ``ov.Model``, or a path to an ``.xml`` or any ``.onnx``,
    eseg's or not) with a latency hint, ``threads`` and an explicit inference precision;
    ``source`` names the model in errors."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": inference_hint(precision)}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    given = str(model) if isinstance(model, (str, Path)) else model
    try:
        return openvino_core().compile_model(given, device, config)
    except Exception as exc:  # OpenVINO raises RuntimeError and its own exception types
        name = source or (given if isinstance(given, str) else given.get_friendly_name())
        raise CheckpointError(f"OpenVINO cannot compile '{name}' for device {device}: {exc}") from exc


def compiled_precision(compiled, requested: str) -> str:
    """The inference precision the device chose (a CPU without bf16 falls back to f32); the
    requested one where the device does not report it (AUTO)."""
    try:
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except Exception:  # OpenVINO raises RuntimeError and its own exception types
        return requested


def openvino_device(device: Any) -> str:
    """An OpenVINO device name from eseg's ``device`` (None or torch's cpu -> ``CPU``)."""
    name = "cpu" if device is None else str(device)
    if name.lower() == "cpu":
        return "CPU"
    if name.startswith(("cuda", "mps")):
        raise ConfigError(f"OpenVINO does not run on {name}; pass --device cpu (or an OpenVINO device such as GPU), "
                          "or use the torch or onnxruntime backend")
    available = openvino_core().available_devices  # CPU, GPU.0, NPU...
    if name.split(":")[0].split(".")[0] not in {*VIRTUAL_DEVICES, *(d.split(".")[0] for d in available)}:
        raise ConfigError(f"OpenVINO has no device '{name}' here; available: {', '.join(available)}")
    return name


def read_ir(path: Path):
    """The ``ov.Model`` of an IR (or of an ONNX file, told by what it holds, whatever its name);
    CheckpointError naming the file when it cannot be read."""
    if sniff_graph_format(path) == "onnx":
        try:
            return openvino_core().read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError and its own exception types
            raise CheckpointError(f"OpenVINO cannot read the ONNX file '{path}': {exc}") from exc
    if not path.is_file():
        raise CheckpointError(f"OpenVINO IR '{path}' does not exist; write one with "
                              "'eseg export MODEL --format openvino'")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        if not _looks_like_ir(path):
            raise CheckpointError(f"'{path}' is not an OpenVINO IR (no <net> element); export one with 'eseg export "
                                  "MODEL --format openvino'")
        raise CheckpointError(f"the weights of '{path}' are missing: '{weights.name}' must lie beside it; copy the "
                              ".xml together with its .bin")
    try:
        return openvino_core().read_model(str(path), str(weights))
    except Exception as exc:  # OpenVINO raises RuntimeError and its own exception types
        raise CheckpointError(f"'{path}' is not an OpenVINO IR that OpenVINO can read: {exc}") from exc


def _looks_like_ir(path: Path) -> bool:
    with open(path, "rb") as handle:
        return b"<net" in handle.read(4096)


def rt_metadata(model) -> dict[str, str]:
    """The strings under ``rt_info/eseg``. An IR converted from eseg's ONNX by OpenVINO's own
    tools (``ovc``) has them only under ``rt_info/framework``, where the ONNX reader puts them."""
    for section in (RT_NAMESPACE, "framework"):
        if model.has_rt_info([section]):
            values = {key: value.astype(str) for key, value in model.get_rt_info([section]).astype(dict).items()}
            if any(key.startswith("eseg_") for key in values):
                return {key: value for key, value in values.items() if key.startswith("eseg_")}
    return {}


def layer_precisions(compiled, layer_type: str = "Convolution") -> dict[str, int]:
    """How many ``layer_type`` layers of a compiled model run in each precision (``u8``, ``i8``,
    ``bf16``, ``f32``...): what the device really executes, whatever the hint asked for."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == layer_type:
            precision = info["runtimePrecision"].astype(str)
            counts[precision] = counts.get(precision, 0) + 1
    return counts


class OpenVINORunner:
    """Runs an exported OpenVINO IR; the eseg metadata in its ``rt_info`` gives its :class:`ModelInfo`.

    ``precision`` (``f32`` or ``bf16``) overrides the one recorded at export. :attr:`precision`
    is the inference precision the compiled model reports (``f32``, ``bf16``; ``int8+f32`` for a
    quantized graph, whose float ops between the int8 ones run in f32). ``with_info=False`` runs the
    graph as it is, its eseg metadata (if any) unread and ``info`` None: a benchmark peer's graph,
    or another version's.
    """

    def __init__(self, path: str | Path, *, device: Any = None, threads: int | None = None,
                 precision: str | None = None, with_info: bool = True) -> None:
        path = Path(path)
        model = read_ir(path)
        meta = rt_metadata(model)
        self.info = ModelInfo.from_metadata(meta, source=str(path)) if with_info else None
        self.graph_precision = meta.get(META_PRECISION, "fp32")
        if self.graph_precision not in OPENVINO_PRECISIONS:
            raise CheckpointError(f"'{path}' records precision '{self.graph_precision}', not one of "
                                  f"{', '.join(OPENVINO_PRECISIONS)}; re-export it")
        self.compiled = compile_openvino(model, threads=threads, device=openvino_device(device),
                                         precision=precision or self.graph_precision, source=str(path))
        hint = compiled_precision(self.compiled, inference_hint(precision or self.graph_precision))
        self.precision = f"int8+{hint}" if self.graph_precision == "int8" else hint
        self.request = self.compiled.create_infer_request()  # kept: a new one per call costs memory setup
        self.device = torch.device("cpu")  # outputs come back as CPU tensors
        self.source = str(path)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        fixed = None if self.info is None else self.info.fixed_size
        if fixed is not None and tuple(batch.shape[-2:]) != tuple(fixed):
            raise DataError(f"'{self.source}' is a fixed {fixed[0]}x{fixed[1]} graph; got an input of shape "
                            f"{tuple(batch.shape)} (pad or resize to {fixed[0]}x{fixed[1]}, or export with --dynamic)")
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        # share_outputs=False copies the logits: OpenVINO reuses its output buffer on the next call
        result = self.request.infer({0: array}, share_inputs=True, share_outputs=False)
        return torch.from_numpy(np.asarray(result[0], dtype=np.float32))

    def __repr__(self) -> str:
        return f"OpenVINORunner({self.source!r}, precision={self.precision!r})"
