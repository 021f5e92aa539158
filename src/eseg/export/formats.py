"""The graph formats eseg writes and reads, their precisions, and the names for them (torch-free).

One home for these names: ``eseg export``'s options, the exporter, the ONNX and OpenVINO
runtimes and the benchmark all read them from here. Also here: what a file holds, whatever its
name (:func:`sniff_graph_format`), and the file ``eseg export --out`` names (:func:`graph_out_path`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

OPSET = 17  # the ONNX opset eseg exports to (the TorchScript exporter's well-tested range)
QUANT_MODES = ("static", "dynamic")  # int8: calibrated QDQ activations, or quantized on the fly (ONNX only)


@dataclass(frozen=True)
class GraphFormat:
    """A format ``eseg export`` writes: its file suffix and the precisions it offers."""

    suffix: str
    precisions: tuple[str, ...]
    companions: tuple[str, ...] = ()  # suffixes of the files written beside the graph

    def files(self, graph: Path) -> list[Path]:
        """The graph and the files beside it (OpenVINO's ``.bin`` weights), the graph last."""
        return [graph.with_suffix(suffix) for suffix in self.companions] + [graph]


FORMATS = {
    "onnx": GraphFormat(".onnx", ("fp32", "fp16", "int8")),
    "openvino": GraphFormat(".xml", ("fp32", "bf16", "int8"), companions=(".bin",)),
}
GRAPH_FILE_SUFFIXES = (".onnx", ".xml", ".bin")  # what --out may not end in for another format
DEFAULT_GRAPH_NAME = "model"  # the file a folder --out gets: model.onnx, model.xml
PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # every export precision, in the order the CLI lists them
OPENVINO_PRECISIONS = FORMATS["openvino"].precisions  # what an OpenVINO IR records it is meant to run in

# OpenVINO's INFERENCE_PRECISION_HINT for an export precision (or the hint's own name): int8
# graphs run f32 between their quantized ops. The precision map, named once.
OPENVINO_HINTS = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "int8": "f32"}
OPENVINO_RUN_PRECISIONS = ("fp32", "bf16")  # what a float graph can be asked to run in (benchmark --precision)


def precision_name(hint: str) -> str:
    """eseg's name (``fp32``, ``bf16``) for a precision OpenVINO reports (``f32``, ``bf16``)."""
    return {"f32": "fp32"}.get(hint, hint)


def sniff_graph_format(path: str | Path) -> str | None:
    """``onnx`` or ``openvino`` by what the file holds, whatever its name; None for a folder or
    anything else. An ONNX model is a protobuf whose first field is ``ir_version`` (the bytes
    0x08, then a small number); an OpenVINO IR is XML whose root is ``<net>``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:  # a folder, a missing or unreadable file
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"<?xml", b"<net")):
        return "openvino"
    if len(head) > 2 and head[0] == 0x08 and 0 < head[1] < 0x80:
        return "onnx"
    return None


def graph_out_path(out: str, format: str) -> Path:
    """The graph file ``eseg export --out OUT`` writes. A folder (an existing one, or OUT ending
    in ``/``) gets ``model.onnx`` / ``model.xml`` inside; a name without the format's suffix gets
    it (``somewhere/model`` -> ``somewhere/model.xml``); another graph format's suffix
    (``--format openvino --out m.onnx``) is refused."""
    graph = FORMATS[format]
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        return Path(out) / f"{DEFAULT_GRAPH_NAME}{graph.suffix}"
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix == graph.suffix:
        return path
    if suffix in GRAPH_FILE_SUFFIXES:
        owner = next(name for name, other in FORMATS.items() if suffix in (other.suffix, *other.companions))
        fix = f"--out {path.with_suffix(graph.suffix)}" + (f", or --format {owner}" if owner != format else "")
        raise ConfigError(f"--out '{out}' ends in {suffix}, which --format {format} does not write (its graph is a "
                          f"{graph.suffix} file{' with a .bin beside it' if graph.companions else ''}); use {fix}")
    return path.with_name(path.name + graph.suffix)
