"""ONNX export (TorchScript exporter) with eseg's metadata, simplification, fp16 and int8.

The graph is exported with ``dynamo=False``: it records the model's shape arithmetic, so with
``dynamic`` the padding is computed from the input shape inside the graph (the dynamo exporter
needs ``onnxscript``, not a dependency). The model's :class:`~eseg.runtimes.ModelInfo` is stored
in the metadata, its output contract (``lowres`` or ``full``) included, so
:class:`~eseg.runtimes.onnxruntime.OnnxRunner` needs nothing else.
"""
from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from ..errors import CheckpointError, ConfigError, ESegError
from ..evaluation.context import inference_context
from ..imports import require
from ..models.base import SegmentationModel
from ..models.padding import padded_size
from ..runtimes.info import META_INPUT_SIZE, OUTPUT_FULL, OUTPUT_LOWRES, OUTPUTS, ModelInfo
from ..runtimes.onnxruntime import INPUT_NAME, OUTPUT_NAME
from .formats import OPSET, QUANT_MODES


def require_onnx():
    require("onnxruntime", "onnx", "ONNX export (every graph is checked with onnxruntime)")
    return require("onnx", "onnx", "ONNX export")


def export_metadata(model: torch.nn.Module, fixed_size: tuple[int, int] | None, output: str = OUTPUT_FULL,
                    output_stride: int | None = None) -> dict[str, str]:
    """eseg's metadata for an exported graph (its :class:`ModelInfo`, output contract included);
    a benchmark peer (no eseg config) gets only its size."""
    if not isinstance(model, SegmentationModel):
        return {META_INPUT_SIZE: "dynamic" if fixed_size is None else f"{fixed_size[0]}x{fixed_size[1]}"}
    return ModelInfo(model.config, model.input_stride, fixed_size, output=output, output_stride=output_stride,
                     align_corners=False).to_metadata()  # forward's last resize: models.layers.resize_like


class LowResolutionGraph(torch.nn.Module):
    """What a ``lowres`` graph computes: the model's :meth:`~SegmentationModel.forward_lowres`."""

    def __init__(self, model: SegmentationModel, static_shapes: bool) -> None:
        super().__init__()
        self.model, self.static_shapes = model, static_shapes
        # the exporter puts the traced module back in its own mode, recursively: let that be the model's
        self.training = model.training

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_lowres(images, self.static_shapes)


def lowres_output_stride(model: SegmentationModel, size: tuple[int, int]) -> int:
    """The stride of the head's logits in the padded input, measured at ``size``."""
    padded = padded_size(*size, model.input_stride)
    with torch.no_grad(), inference_context(model):
        low = model.forward_lowres(torch.zeros(1, 3, *size)).shape[-2:]
    if padded[0] % low[0] or padded[0] // low[0] != padded[1] // low[1] or padded[1] % low[1]:
        raise ConfigError(f"{type(model).__name__}'s logits ({low[0]}x{low[1]} for a padded {padded[0]}x{padded[1]} "
                          "input) have no single stride; export it with --full-resolution")
    return padded[0] // low[0]


def traced_module(model: torch.nn.Module, dummy: torch.Tensor, dynamic: bool, output: str):
    """(module, inputs) to trace: a fixed-size eseg graph gets ``static_shapes`` (constant sizes,
    no zero pad or identity crop: models.padding); a peer's forward takes only the images."""
    eseg_model = isinstance(model, SegmentationModel)
    if output == OUTPUT_LOWRES:
        if not eseg_model:
            raise ConfigError(f"{type(model).__name__} is not an eseg model: only its full-resolution output "
                              "can be exported")
        return LowResolutionGraph(model, static_shapes=not dynamic), (dummy,)
    return model, ((dummy, True) if eseg_model and not dynamic else (dummy,))


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    size: tuple[int, int],
    dynamic: bool = False,
    opset: int = OPSET,
    output: str = OUTPUT_FULL,
) -> Path:
    """Write ``model`` as ONNX (input ``images`` (N, 3, H, W) normalized, output ``logits``).

    The batch axis is always dynamic; H and W are too with ``dynamic``, else the graph is for
    ``size``. ``output`` is the contract (:mod:`eseg.runtimes.info`): ``full``, the model's
    forward (this function's default: the module as it is), or ``lowres``, the head's logits of
    the padded input (``eseg export``'s default). The model config and the contract go into the
    metadata and the file passes ``onnx.checker``.
    """
    onnx = require_onnx()
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    path = Path(path)
    dummy = torch.randn(1, 3, *size)
    module, inputs = traced_module(model, dummy, dynamic, output)
    stride = lowres_output_stride(model, size) if output == OUTPUT_LOWRES else None
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    out_axes = {0: "batch", 2: "logit_height", 3: "logit_width"} if dynamic and stride else axes
    with fileio.atomic_path(path) as tmp, warnings.catch_warnings():
        # the tracer warns about every shape-to-int conversion; parity is checked explicitly instead
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad(), inference_context(model):  # eval mode while traced, the caller's mode after
            torch.onnx.export(
                module, inputs, str(tmp), dynamo=False, opset_version=opset, do_constant_folding=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: out_axes},
            )
        proto = onnx.load(str(tmp))
        set_metadata(proto, export_metadata(model, None if dynamic else size, output, stride))
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return path


def set_metadata(proto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in values.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | Path) -> dict[str, str]:
    onnx = require_onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def simplify_onnx(path: str | Path) -> Path:
    """Simplify in place with onnxslim (constant folding, dead-node and shape-op elimination)."""
    onnx = require_onnx()
    try:
        import onnxslim
    except ImportError as exc:
        raise ESegError(f"--simplify needs onnxslim: pip install onnxslim ({exc})") from exc
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    slim = onnxslim.slim(proto)
    set_metadata(slim, meta)
    onnx.checker.check_model(slim)
    with fileio.atomic_path(path) as tmp:
        onnx.save(slim, str(tmp))
    return Path(path)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """fp16 weights and activations inside; float32 input and output (``keep_io_types``)."""
    onnx = require_onnx()
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _sort_topologically(proto.graph)  # the converter appends its input casts at the end
    onnx.checker.check_model(proto)
    with fileio.atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
    return Path(dst)


def _sort_topologically(graph) -> None:
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise CheckpointError("the fp16 graph has a cycle or a dangling input; export without --fp16")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(id(n) != id(r) for r in ready)]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def quantize_onnx(src: str | Path, dst: str | Path, mode: str, calibration: Iterable[np.ndarray] | None = None) -> Path:
    """int8 quantization with onnxruntime.quantization.

    ``dynamic``: int8 weights, activations quantized on the fly. ``static``: QDQ int8 weights
    (per channel) and activations, with activation ranges calibrated on ``calibration`` batches.
    """
    require_onnx()
    from onnxruntime import quantization as q

    if mode not in QUANT_MODES:
        raise ConfigError(f"unknown quantization '{mode}'; choose from {QUANT_MODES}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        prepared = Path(tmp_dir) / "prepared.onnx"
        q.quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        with fileio.atomic_path(dst) as tmp:
            if mode == "dynamic":
                q.quantize_dynamic(str(prepared), str(tmp), weight_type=q.QuantType.QInt8, per_channel=True)
            else:
                if calibration is None:
                    raise ConfigError("static quantization needs calibration data (--calib-data)")
                reader = CalibrationReader(calibration)
                q.quantize_static(
                    str(prepared), str(tmp), reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                    activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                )
            set_metadata_file(tmp, read_metadata(src))
    return Path(dst)


def set_metadata_file(path: Path, values: dict[str, str]) -> None:
    onnx = require_onnx()
    proto = onnx.load(str(path))
    set_metadata(proto, values)
    onnx.save(proto, str(path))


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over (1, 3, H, W) float32 arrays."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
