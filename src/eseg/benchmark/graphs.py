"""The graphs of the end-to-end benchmark (:mod:`.end_to_end`) and the runners that run them.

An eseg model is exported with eseg's default output, the head's low-resolution logits, its
metadata (classes, normalisation, output contract) in the graph. A peer is exported twice, its
native full-resolution forward and its low-resolution form (:func:`.models.peer_lowres`); a
peer's graph carries no eseg metadata, so its runner is given the :class:`ModelInfo` the
pipeline reads (:func:`peer_info`: ImageNet normalisation, as torchvision's models take, no
padding, the graph's fixed size, the output contract and the ``align_corners`` of the upsample
the low-resolution form leaves out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.io import as_rgb
from ..data.transforms import normalize
from ..errors import ConfigError
from ..export.formats import sniff_graph_format
from ..inference.geometry import resize
from ..models.base import SegmentationModel
from ..models.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from ..runtimes.info import OUTPUT_FULL, OUTPUT_LOWRES, ModelInfo
from ..sizes import format_size
from .models import peer_lowres


@dataclass(frozen=True)
class Graph:
    """One exported graph of one model: its file, the ModelInfo a peer's graph is run with
    (None: the graph's own metadata), its output contract and what its weights are."""

    model: str
    output: str
    path: Path
    info: ModelInfo | None
    weights: str


class PeerRunner:
    """A peer graph's runner with the :class:`ModelInfo` eseg's pipeline reads (the graph has none)."""

    def __init__(self, runner, info: ModelInfo) -> None:
        self.runner, self.info, self.device = runner, info, runner.device
        self.precision = getattr(runner, "precision", "f32")

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.runner(batch)


def normalisation(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a model's inputs are normalised with: an eseg model's own, ImageNet's for a peer."""
    if isinstance(model, SegmentationModel):
        return tuple(model.config.mean), tuple(model.config.std)
    return IMAGENET_MEAN, IMAGENET_STD


def peer_info(name: str, num_classes: int, size: tuple[int, int], output: str, output_stride: int | None = None,
              align_corners: bool = False) -> ModelInfo:
    """What the pipeline needs to know about a peer's fixed-size graph (see the module doc)."""
    config = ModelConfig(num_classes=num_classes, mean=IMAGENET_MEAN, std=IMAGENET_STD, train_crop=size,
                         eval_size=size, variant=name)
    return ModelInfo(config, 1, tuple(size), output=output, output_stride=output_stride, align_corners=align_corners)


def model_graphs(name: str, model: torch.nn.Module | None, size: tuple[int, int], folder: Path, weights: str,
                 num_classes: int) -> list[Graph]:
    """The graphs of one model at ``size``, exported into ``folder`` (an exported graph: itself);
    a peer's have ``num_classes`` classes."""
    from ..export.onnx import export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name.strip('./'))}_{format_size(size)}"
    if model is None:
        return [existing_graph(name, size, weights)]
    if isinstance(model, SegmentationModel):
        path = export_onnx(model, stem.with_name(stem.name + "_lowres.onnx"), size=size, output=OUTPUT_LOWRES)
        return [Graph(name, OUTPUT_LOWRES, path, None, weights)]
    full = export_onnx(model, stem.with_name(stem.name + "_full.onnx"), size=size)
    graphs = [Graph(name, OUTPUT_FULL, full, peer_info(name, num_classes, size, OUTPUT_FULL), weights)]
    low = peer_lowres(name, model)
    if low is not None:
        path = export_onnx(low.module, stem.with_name(stem.name + "_lowres.onnx"), size=size)
        info = peer_info(name, num_classes, size, OUTPUT_LOWRES, _stride(low.module, size),
                         low.align_corners)
        graphs.insert(0, Graph(name, OUTPUT_LOWRES, path, info, weights))
    return graphs


def existing_graph(path: str, size: tuple[int, int], weights: str) -> Graph:
    """An exported graph named by its path, as it is; a fixed-size one must be at ``size``."""
    from ..runtimes import load_runner

    info = load_runner(path).info
    if info.fixed_size is not None and tuple(info.fixed_size) != tuple(size):
        raise ConfigError(f"'{path}' is a fixed {format_size(info.fixed_size)} graph; the end-to-end benchmark times "
                          f"every entry at {format_size(size)}: name its run folder (exported here at every --size), "
                          f"or export it with --size {format_size(size)} or --dynamic")
    return Graph(path, info.output, Path(path), None, weights)


def _stride(module: torch.nn.Module, size: tuple[int, int]) -> int | None:
    """The stride of a peer's low-resolution logits at ``size``, when one number gives both sides."""
    with torch.no_grad():
        low = module(torch.zeros(1, 3, *size)).shape[-2:]
    strides = {size[0] / low[0], size[1] / low[1]}
    stride = strides.pop()
    return int(stride) if not strides and stride.is_integer() else None


def entry_runner(graph: Graph, backend: str, threads: int, precision: str):
    """The runner of ``graph`` on ``backend`` (``openvino`` in the stated ``precision``, or
    ``onnxruntime``), with the peer's ModelInfo where the graph carries none."""
    from .trained import check_graph_variant
    from .variants import VARIANTS

    check_graph_variant(str(graph.path), VARIANTS.get(backend))
    with_info = graph.info is None
    if backend == "openvino":
        from ..runtimes.openvino import OpenVINORunner

        runner = OpenVINORunner(graph.path, threads=threads, precision=precision, with_info=with_info)
    else:
        from ..runtimes.onnxruntime import OnnxRunner

        runner = OnnxRunner(graph.path, threads=threads, spin=False, with_info=with_info)
    return runner if with_info else PeerRunner(runner, graph.info)


def network_inputs(entries, images: Path) -> dict[str, list[torch.Tensor]]:
    """Each entry's network inputs: every image decoded, normalised with the entry's own
    normalisation and resized to its graph's size (what its Segmenter feeds it), batch 1;
    entries that normalise alike share the tensors."""
    decoded = [as_rgb(path) for path in sorted(images.iterdir())]
    shared: dict[tuple, list[torch.Tensor]] = {}
    inputs = {}
    for entry in entries:
        info = entry.segmenter.info
        key = (info.mean, info.std, entry.segmenter.size)
        if key not in shared:
            tensors = [normalize(image, info.mean, info.std) for image in decoded]
            size = entry.segmenter.size
            shared[key] = [(resize(x, size) if size else x)[None].contiguous() for x in tensors]
        inputs[entry.key] = shared[key]
    return inputs
