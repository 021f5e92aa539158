"""The graph formats eseg writes and reads, their precisions, and the names for them (torch-free).

One home for these names: ``eseg export``'s options, the exporter, the ONNX and OpenVINO
runtimes and the benchmark all read them from here.
"""
from __future__ import annotations

from dataclasses import dataclass

OPSET = 17  # the ONNX opset eseg exports to (the TorchScript exporter's well-tested range)
QUANT_MODES = ("static", "dynamic")  # int8: calibrated QDQ activations, or quantized on the fly (ONNX only)


@dataclass(frozen=True)
class GraphFormat:
    """A format ``eseg export`` writes: its file suffix and the precisions it offers."""

    suffix: str
    precisions: tuple[str, ...]


FORMATS = {
    "onnx": GraphFormat(".onnx", ("fp32", "fp16", "int8")),
    "openvino": GraphFormat(".xml", ("fp32", "bf16", "int8")),  # weights in a .bin beside it
}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # every export precision, in the order the CLI lists them
OPENVINO_PRECISIONS = FORMATS["openvino"].precisions  # what an OpenVINO IR records it is meant to run in

# OpenVINO's INFERENCE_PRECISION_HINT for an export precision (or the hint's own name): int8
# graphs run f32 between their quantized ops. The precision map, named once.
OPENVINO_HINTS = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "int8": "f32"}
OPENVINO_RUN_PRECISIONS = ("fp32", "bf16")  # what a float graph can be asked to run in (benchmark --precision)


def precision_name(hint: str) -> str:
    """eseg's name (``fp32``, ``bf16``) for a precision OpenVINO reports (``f32``, ``bf16``)."""
    return {"f32": "fp32"}.get(hint, hint)
