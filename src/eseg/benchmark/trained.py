"""Trained models on ``eseg benchmark --models``: a run folder, a saved model folder or an exported
graph, named by its path and timed beside the registered models and the peers.

The peers (and registered eseg models) are built for a trained model's classes, and every entry is
timed at its size (the one it was validated at, or a fixed graph's own), unless ``--num-classes``
or ``--size`` say otherwise. An exported graph runs only as what reads it (``onnxruntime``,
``openvino``); a model folder runs as every variant.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..export.formats import sniff_graph_format
from ..sizes import format_size

DEFAULT_SIZE = (512, 1024)
DEFAULT_NUM_CLASSES = 19  # Cityscapes', the paper's


def is_model_path(name: str) -> bool:
    """Whether a ``--models`` entry names a trained model by its path (not a registered name)."""
    from .peers import benchmark_models

    return name not in benchmark_models() and Path(name).exists()


@dataclass
class TrainedModel:
    """A trained model named by ``path``: its config, and for an exported graph its format and
    fixed input size (None: a dynamic graph)."""

    path: str
    config: object  # eseg.models.config.ModelConfig
    graph: str | None = None  # "onnx" or "openvino" for an exported graph
    fixed_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        """The size to time it at: a fixed graph's own, else the one it was validated at (the most
        common of its validation sizes when they varied)."""
        from ..models.config import validated_size

        sizes = self.config.val_sizes or [None]
        return self.fixed_size or validated_size(self.config) or (tuple(sizes[0]) if sizes[0] else None)

    def where_size_comes_from(self) -> str:
        if self.fixed_size:
            return f"the fixed input size of the graph '{self.path}'"
        if self.config.val_sizes is None:
            return f"the eval_size of '{self.path}' (it records no validation sizes)"
        varied = len(self.config.val_sizes) > 1
        return f"the {'most common ' if varied else ''}size '{self.path}' was validated at"


def trained_model(path: str) -> TrainedModel:
    """Read what a trained model path holds: a graph's metadata, or a model folder's config."""
    graph = sniff_graph_format(path)
    if graph:
        from ..runtimes import load_runner

        info = load_runner(path).info
        return TrainedModel(path, info.config, graph, info.fixed_size)
    from ..models.base import read_model_config
    from ..paths import CONFIG_FILE, resolve_model_path

    return TrainedModel(path, read_model_config(resolve_model_path(path) / CONFIG_FILE))


def load_trained(path: str):
    """The model to count (and, for a model folder, to run): a model folder's trained weights; an
    exported graph's architecture (from its metadata, random weights: only its size is used)."""
    from ..models.base import load_model
    from ..models.registry import ARCHITECTURES
    from ..paths import resolve_model_path

    if sniff_graph_format(path):
        config = trained_model(path).config
        return ARCHITECTURES.get(config.arch)(config).eval()
    return load_model(resolve_model_path(path)).eval()


@dataclass(frozen=True)
class Sizing:
    """The size every entry is timed at, the classes the built models get, and the smp peers' encoder."""

    size: tuple[int, int]
    num_classes: int
    encoder: str


def sizing_for(models: list[str], size: tuple[int, int] | None, num_classes: int | None,
               log: Callable[[str], None] = print) -> Sizing:
    """``size`` and ``num_classes`` as given, else those of the first trained model among
    ``models`` (its validated size, its classes), else the defaults; the encoder is the backbone
    of the first eseg model, registered or trained."""
    trained = {name: trained_model(name) for name in models if is_model_path(name)}
    encoder = first_backbone(models, trained)
    if not trained:
        return Sizing(size or DEFAULT_SIZE, num_classes or DEFAULT_NUM_CLASSES, encoder)
    first = next((t for t in trained.values() if t.size), next(iter(trained.values())))
    if size is None and first.size:
        size = first.size
        log(f"timing at {format_size(size)}: {first.where_size_comes_from()} (--size for another)")
    if num_classes is None:
        num_classes = first.config.num_classes
        log(f"building the other models with {num_classes} classes, as '{first.path}' has (--num-classes for another)")
    others = {t.path: t.config.num_classes for t in trained.values() if t.config.num_classes != num_classes}
    if others:
        log("note: " + ", ".join(f"'{p}' has {n} classes" for p, n in others.items()) + f"; the others have {num_classes}")
    return Sizing(size or DEFAULT_SIZE, num_classes, encoder)


def first_backbone(models: list[str], trained: dict[str, TrainedModel]) -> str:
    """The timm backbone of the first eseg model in ``models`` (registered or trained)."""
    from ..models.registry import MODELS, get_config

    for name in models:
        config = trained[name].config if name in trained else get_config(name) if name in MODELS else None
        if getattr(config, "backbone", None):
            return config.backbone
    return "tf_efficientnet_lite0"


def check_graph_variant(path: str, variant) -> None:
    """An exported graph runs only on a runtime that reads it."""
    from ..runtimes import BACKENDS

    graph = sniff_graph_format(path)
    if graph and graph not in BACKENDS.metadata(variant.runtime)["reads"]:
        readers = [name for name in BACKENDS.names() if graph in BACKENDS.metadata(name)["reads"]]
        raise ConfigError(f"'{path}' is an exported {graph} graph: it runs as {' or '.join(readers)}, not {variant.name}")
