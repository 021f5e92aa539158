"""OpenVINO IR (``.xml`` + ``.bin``) from a checked ONNX graph, with eseg's metadata.

The metadata lives in the IR's ``rt_info`` under ``eseg`` (the keys of
:meth:`~eseg.runtimes.info.ModelInfo.to_metadata`), beside ``eseg_precision``: the precision the
graph is meant to run in (``fp32``, ``bf16`` or ``int8``), which
:class:`~eseg.runtimes.openvino.OpenVINORunner` compiles it for. Weights are saved as they are
(fp32, or int8 for a quantized QDQ graph): OpenVINO's default fp16 weight compression is off.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..runtimes.openvino import (
    META_PRECISION,
    RT_NAMESPACE,
    compile_openvino,
    openvino_core,
    require_openvino,
)
from .formats import OPENVINO_PRECISIONS

__all__ = ["save_openvino", "compile_openvino", "openvino_core", "quantized_op_count"]


def save_openvino(onnx_path: str | Path, xml_path: str | Path, *, precision: str) -> Path:
    """Convert ``onnx_path`` to an IR at ``xml_path`` (its weights beside it as ``.bin``).

    ``precision`` is recorded, not applied: ``fp32`` and ``bf16`` graphs hold the same fp32
    weights (the CPU converts them when it compiles for bf16); an ``int8`` graph is expected to
    be a QDQ-quantized ONNX, which OpenVINO turns into FakeQuantize ops and runs in int8.
    """
    from .onnx import read_metadata

    if precision not in OPENVINO_PRECISIONS:
        raise ConfigError(f"OpenVINO precision '{precision}' is not one of {', '.join(OPENVINO_PRECISIONS)}")
    ov = require_openvino()
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise ConfigError(f"an OpenVINO IR is an .xml file (weights in a .bin beside it), got '{xml_path}'")
    model = ov.convert_model(str(onnx_path))
    for key, value in read_metadata(onnx_path).items():
        model.set_rt_info(value, [RT_NAMESPACE, key])
    model.set_rt_info(precision, [RT_NAMESPACE, META_PRECISION])
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return xml_path


def quantized_op_count(model: Any) -> int:
    """FakeQuantize ops in an ``ov.Model`` (what an int8 QDQ graph becomes)."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
