"""The model registries and keyword-only builders.

``ARCHITECTURES`` maps an ``arch`` (saved in every config.json) to its network class, imported
only when a model is built, and its torch-free config class. ``MODELS`` maps a registered model
name to its architecture and config values (``eseg.models.eseg.variants``,
``eseg.models.deeplab.variants``, ``eseg.models.lraspp.variants``) and to the cost table ``eseg models`` prints. Listing and
configuring models never imports torch.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .config import ModelConfig
from .deeplab import variants as deeplab_variants
from .deeplab.config import DeepLabV3PlusConfig
from .eseg import variants as eseg_variants
from .eseg.config import ESegConfig
from .lraspp import variants as lraspp_variants
from .lraspp.config import LRASPPConfig

ARCHITECTURES: Registry = Registry("architecture")
ARCHITECTURES.register("eseg", "eseg.models.eseg.model:ESeg", config=ESegConfig)
ARCHITECTURES.register("deeplabv3plus", "eseg.models.deeplab.model:DeepLabV3Plus", config=DeepLabV3PlusConfig)
ARCHITECTURES.register("lraspp", "eseg.models.lraspp.model:LRASPP", config=LRASPPConfig)

MODELS: Registry = Registry("model")
for _module, _arch in ((eseg_variants, "eseg"), (deeplab_variants, "deeplabv3plus"), (lraspp_variants, "lraspp")):
    for _name, _values in _module.VARIANTS.items():
        _family = "baseline" if _arch != "eseg" else "eseg-rt (ours)" if "_rt_" in _name else "eseg"
        MODELS.register(_name, _values, arch=_arch, family=_family, costs=_module.COSTS.get(_name))


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names: all, those containing ``pattern``, or matching it as a glob."""
    if pattern and any(c in pattern for c in "*?["):
        return [n for n in MODELS.names() if fnmatch.fnmatch(n, pattern)]
    return MODELS.names(pattern)


def config_class(name: str) -> type[ModelConfig]:
    return ARCHITECTURES.metadata(MODELS.metadata(name)["arch"])["config"]


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A fresh config of the registered model ``name`` with ``overrides`` applied and checked."""
    cls = config_class(name)
    values: dict[str, Any] = {**MODELS.get(name), "variant": name}
    if "backbone" in overrides:  # normalisation follows the new backbone unless given
        values.pop("mean", None), values.pop("std", None)
    values.update(overrides)
    return cls.from_dict(values, source=f"model '{name}'")


def create_model(name: str, *, num_classes: int = 19, pretrained_backbone: bool = False,
                 backbone_weights: str | Path | None = None, class_names: list[str] | None = None,
                 **overrides: Any):
    """Build a registered model, e.g. ``create_model("eseg_lite_s", num_classes=19)``.

    ``pretrained_backbone=True`` downloads timm's ImageNet weights (needs internet);
    ``backbone_weights`` loads them from a local file instead. ``overrides`` are any fields of
    the architecture's config (``fpn_width``, ``max_level``, ``backbone``...). Whole-model
    weights are loaded with :func:`eseg.load_model` from a folder written by ``save_pretrained``.
    """
    if class_names is not None:
        overrides["class_names"] = list(class_names)
    config = get_config(name, num_classes=num_classes, **overrides)
    model_class = ARCHITECTURES.get(config.arch)
    return model_class(config, pretrained_backbone=pretrained_backbone, backbone_weights=backbone_weights)


def check_model_options(name: str, options: dict[str, Any], where: str = "model") -> ModelConfig:
    """The config ``name`` + ``options`` would build; ConfigError naming the key if invalid."""
    try:
        MODELS.check(name)
    except ConfigError as exc:
        raise ConfigError(f"{where}.name: {exc}") from exc
    return get_config(name, **options)
