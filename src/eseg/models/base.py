"""The base of every eseg architecture: padding, cropping, saving and loading.

A :class:`SegmentationModel` takes normalized ``(B, 3, H, W)`` images of any size and returns
``(B, num_classes, H, W)`` logits. It pads the input (the one padding rule,
:mod:`eseg.models.padding`) to a multiple of :attr:`~SegmentationModel.input_stride`, asks the
architecture for logits at a coarser stride (:meth:`~SegmentationModel.forward_logits`), resizes
them bilinearly to the padded size and crops the padding away.

A saved model is a folder of ``config.json`` (the architecture's config, with its ``arch``),
``model.safetensors`` and a model card ``README.md``, written through huggingface_hub's
``ModelHubMixin``: ``save_pretrained(dir)``, ``from_pretrained(dir or "org/name")`` and
``push_to_hub("org/name")``. :func:`load_model` dispatches on ``arch``; nothing is unpickled.
"""
from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, ClassVar

import safetensors
import safetensors.torch
import torch
from huggingface_hub import ModelHubMixin
from torch import nn

from .. import fileio
from ..errors import CheckpointError, ConfigError, DataError
from ..paths import CONFIG_FILE, WEIGHTS_FILE, looks_like_repo_id
from .config import ModelConfig, resolve_normalization
from .layers import resize_like
from .norm import batchnorm_layers
from .padding import pad_to_multiple, shape_ops_needed

CARD_FILE = "README.md"
FORMAT_VERSION = 2
REPO_URL = "https://arxiv.org/abs/2203.12683"


class SegmentationModel(nn.Module, ModelHubMixin, abc.ABC, library_name="eseg", tags=["semantic-segmentation", "eseg"],
                        paper_url=REPO_URL):
    """Base class: subclasses set ``config_class`` and implement :meth:`forward_logits` and
    :attr:`input_stride`."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        resolve_normalization(config)
        config.validate()
        self.config = config

    # -- what an architecture provides ---------------------------------------------------------

    @property
    @abc.abstractmethod
    def input_stride(self) -> int:
        """Inputs are padded to a multiple of this."""

    @abc.abstractmethod
    def forward_logits(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        """Logits of a padded input, at any stride that divides ``input_stride``; ``static_shapes``
        goes on to every resize (:mod:`eseg.models.padding`)."""

    # -- shared ----------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    batchnorm_frozen: bool = False  # see freeze_batchnorm

    def freeze_batchnorm(self, frozen: bool = True) -> "SegmentationModel":
        """Keep every BN layer on its running statistics (eval mode) also while the model trains
        (``train.freeze_bn``); returns the model. Its own :meth:`train` honours this, as smp's
        models keep a frozen encoder frozen, so no later ``train()`` undoes it."""
        self.batchnorm_frozen = frozen
        return self.train(self.training)

    def train(self, mode: bool = True) -> "SegmentationModel":
        """``nn.Module.train``, with the BN layers left in eval mode while frozen."""
        super().train(mode)
        if mode and self.batchnorm_frozen:
            for _, layer in batchnorm_layers(self):
                layer.eval()
        return self

    def forward(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        """(B, 3, H, W) normalized images -> (B, num_classes, H, W) logits, for any H and W.
        ``static_shapes``: export traces a fixed-size graph (see :mod:`eseg.models.padding`)."""
        height, width = x.shape[-2], x.shape[-1]
        padded = self._padded(x, static_shapes)
        logits = self.forward_logits(padded, static_shapes)
        logits = resize_like(logits, padded, static_shapes=static_shapes)
        if padded is x and not shape_ops_needed(static_shapes):
            return logits
        return logits[..., :height, :width]

    def forward_lowres(self, x: torch.Tensor, static_shapes: bool = False) -> torch.Tensor:
        """(B, 3, H, W) normalized images -> the head's low-resolution logits of the input padded
        to a multiple of :attr:`input_stride` (the one padding rule): what :meth:`forward`
        computes before its last bilinear resize (``align_corners=False``) to the padded size and
        its crop. The deployed graphs output these (``eseg export``); the mask is their exact
        upsampled argmax, :func:`eseg.inference.lowres.lowres_argmax`."""
        return self.forward_logits(self._padded(x, static_shapes), static_shapes)

    def _padded(self, x: torch.Tensor, static_shapes: bool) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"{type(self).__name__} expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        return pad_to_multiple(x, self.input_stride, static_shapes=static_shapes)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path:  # type: ignore[override]
        """Write ``config.json``, ``model.safetensors`` and a model card into the folder (each
        atomically); ``push_to_hub=True, repo_id=...`` also uploads it. Returns the folder."""
        super().save_pretrained(save_directory, **kwargs)
        return Path(save_directory)

    def _save_pretrained(self, save_directory: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with fileio.atomic_path(save_directory / WEIGHTS_FILE) as tmp:
            safetensors.torch.save_file(state, str(tmp), metadata={"format": "eseg", "version": str(FORMAT_VERSION)})
        fileio.write_json(save_directory / CONFIG_FILE, {"format_version": FORMAT_VERSION, "model": self.config.to_dict()})
        if not (save_directory / CARD_FILE).exists():
            fileio.write_text(save_directory / CARD_FILE, model_card(self.config))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):  # type: ignore[override]
        """A folder written by :meth:`save_pretrained` (or a file in it), or a Hub repo id
        ``org/name`` (downloaded, or read from the Hub cache when offline)."""
        path = Path(pretrained_model_name_or_path)
        if path.exists() or not looks_like_repo_id(str(pretrained_model_name_or_path)):
            return _check_class(cls, load_model(path, map_location=kwargs.get("map_location", "cpu")))
        # straight to the download: the config is eseg's own, not the mixin's __init__ arguments
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None, cache_dir: str | Path | None = None,
                         force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None,
                         map_location: str = "cpu", **_: Any):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
        )

        try:
            folder = snapshot_download(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                       local_files_only=local_files_only, token=token,
                                       allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE])
        except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot get model '{model_id}' from the Hugging Face Hub or its cache ({exc})") from exc
        return _check_class(cls, load_model(folder, map_location=map_location))


def _check_class(cls: type, model: SegmentationModel) -> SegmentationModel:
    if not isinstance(model, cls):
        raise CheckpointError(f"the saved model is a {type(model).__name__} ({model.config.arch}), not a {cls.__name__}")
    return model


def model_card(config: ModelConfig) -> str:
    classes = ", ".join(config.class_names or [str(i) for i in range(config.num_classes)])
    return (f"---\nlibrary_name: eseg\ntags: [semantic-segmentation, eseg]\n---\n\n"
            f"# {config.variant or config.arch}\n\n"
            f"An eseg `{config.arch}` model ({config.backbone} backbone, {config.num_classes} classes: {classes}).\n\n"
            "```python\nimport eseg\nseg = eseg.Segmenter.from_pretrained(\"<this folder or repo id>\")\nmask = seg(\"image.png\")\n```\n")


# -- loading -------------------------------------------------------------------------------------


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild the model saved in ``path`` (its folder, or its config.json / model.safetensors);
    a Hub repo id ``org/name`` is fetched through :meth:`SegmentationModel.from_pretrained`."""
    directory = Path(path)
    if not directory.exists() and looks_like_repo_id(str(path)):
        return SegmentationModel.from_pretrained(str(path), map_location=str(map_location))
    if directory.is_file() and directory.name in (CONFIG_FILE, WEIGHTS_FILE):
        directory = directory.parent
    if not directory.is_dir():
        raise CheckpointError(f"model folder '{directory}' does not exist; pass a folder written by save_pretrained "
                              "(config.json + model.safetensors) or a training run folder")
    config = read_model_config(directory / CONFIG_FILE)
    from .registry import ARCHITECTURES

    model = ARCHITECTURES.get(config.arch)(config)
    model.load_state_dict(read_weights(directory / WEIGHTS_FILE, model, map_location))
    return model.eval()


def read_model_config(path: Path) -> ModelConfig:
    """The architecture config saved in ``path`` (config.json), dispatched on its ``arch``."""

    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing; a saved eseg model folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc}); re-save the model") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"'{path}' has no 'model' section; it was not written by eseg save_pretrained")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has format_version {version!r}; upgrade eseg to read it")
    return config_from_dict(data["model"] if version >= 2 else upgrade_v1(data["model"], path), source=str(path))


def config_from_dict(data: dict, *, source: str) -> ModelConfig:
    """A saved or embedded (ONNX/OpenVINO metadata) model config, as its architecture's class."""
    from .registry import ARCHITECTURES

    arch = data.get("arch")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{source}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES.names())}")
    config_class = ARCHITECTURES.metadata(arch)["config"]
    try:
        return config_class.from_dict(data, source=f"{source} model")
    except ConfigError as exc:
        raise CheckpointError(f"{source}: bad model config: {exc}") from exc


def upgrade_v1(data: dict, path: Path) -> dict:
    """eseg 0.1 configs: ESeg only, dataset metadata under ``extra``."""
    data = dict(data)
    if data.pop("fpn_kind", "bifpn") not in ("bifpn", "fpn"):
        raise CheckpointError(f"'{path}' holds an eseg 0.1 DeepLab baseline, which this version cannot read; retrain it")
    extra = data.pop("extra", None) or {}
    data.setdefault("palette", extra.get("palette"))
    data.setdefault("ignore_index", extra.get("ignore_index", 255))
    return {"arch": "eseg", **data}


def read_weights(path: Path, model: nn.Module, map_location) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked key by key and shape by shape against ``model``."""
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' is missing")
    try:
        state = safetensors.torch.load_file(str(path), device=str(map_location))
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"weights file '{path}' is corrupt or not safetensors ({exc}); re-save the model") from exc
    expected = model.state_dict()
    problems = weight_mismatches(state, expected)
    if problems:
        raise CheckpointError(f"weights file '{path}' does not match its config.json: {problems}")
    return state


def weight_mismatches(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """'' when ``state`` fits ``expected``, else what is missing, unexpected or mis-shaped."""
    def listed(keys: list[str]) -> str:
        return f"{keys[:5]}{'...' if len(keys) > 5 else ''}"

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    parts = [f"missing {listed(missing)}" if missing else "", f"unexpected {listed(unexpected)}" if unexpected else ""]
    if wrong:
        parts.append("shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                                                   for k in wrong[:5]))
    return "; ".join(p for p in parts if p)
