"""What every architecture's config shares: the classes and their metadata, normalisation, sizes.

An architecture's config (``ESegConfig``, ``DeepLabV3PlusConfig``) subclasses :class:`ModelConfig`
and sets ``arch``, the name :func:`eseg.models.load_model` dispatches on. Configs are plain
dataclasses checked by :mod:`eseg.schema` (types, choices, ranges), so a bad value is a
ConfigError naming the key before any tensor exists. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .. import schema
from ..errors import ConfigError

ACTIVATIONS = ("swish", "relu6", "relu", "hardswish")  # models.layers.activation builds them
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_RECORDED_SIZES = 8  # more distinct validation sizes only tell again that they vary


@dataclass
class ModelConfig:
    """Fields shared by every architecture. ``palette`` and ``ignore_index`` travel with the
    weights so that predictions are coloured like the training data without it."""

    arch: ClassVar[str] = ""

    backbone: str = schema.option("tf_efficientnet_lite0", help="timm model name (features_only)")
    num_classes: int = schema.option(19, min=1, help="number of classes")
    class_names: list[str] | None = schema.option(None, help="one name per class")
    palette: list[tuple[int, int, int]] | None = schema.option(None, min=0, max=255, help="one RGB colour per class")
    ignore_index: int = schema.option(255, min=0, help="label value of unlabelled pixels")
    mean: tuple[float, float, float] | None = schema.option(None, help="input normalisation; None: the backbone's")
    std: tuple[float, float, float] | None = schema.option(None, above=0, help="input normalisation; None: the backbone's")
    train_crop: tuple[int, int] = schema.option((512, 1024), min=1, help="training crop H, W (a trained model: the "
                                                "crop its training really used)")
    eval_size: tuple[int, int] | None = schema.option((1024, 2048), min=1, help="evaluation size H, W (a trained "
                                                      "model: its validation images' one size; null: they varied)")
    val_sizes: list[tuple[int, int]] | None = schema.option(
        None, help=f"a trained model's validation image sizes H, W, most common first (at most "
                          f"{MAX_RECORDED_SIZES}); null: not recorded")
    variant: str | None = schema.option(None, help="registered model name this config came from")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "model") -> None:
        """Types and ranges of every field, then the rules that tie fields together."""
        schema.check(self, where)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{where}: {len(self.class_names)} class_names given for num_classes={self.num_classes}")
        if self.palette is not None and len(self.palette) != self.num_classes:
            raise ConfigError(f"{where}: {len(self.palette)} palette colours given for num_classes={self.num_classes}")
        check_ignore_index(self.ignore_index, self.num_classes, f"{where}.ignore_index")

    def design(self) -> str:
        """A one-line summary of the architecture's shape, for ``eseg models``."""
        return self.arch

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **schema.to_dict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model") -> "ModelConfig":
        data = {k: v for k, v in data.items() if k != "arch"}
        return schema.from_mapping(cls, data, source)


def validated_size(config: ModelConfig) -> tuple[int, int] | None:
    """The one size (H, W) the model was validated at, the size to export it at by default; None
    when its validation images varied in size (export a dynamic graph then). A config that records
    no validation sizes (a registered model's, or a checkpoint saved before they were recorded)
    gives its ``eval_size``."""
    if config.val_sizes is None:
        return None if config.eval_size is None else tuple(config.eval_size)
    return tuple(config.val_sizes[0]) if len(config.val_sizes) == 1 else None


def check_ignore_index(ignore_index: int, num_classes: int, where: str = "ignore_index") -> None:
    """The label value of unlabelled pixels must not be a class id (0..num_classes-1), for a
    model's config and for a dataset alike."""
    if 0 <= ignore_index < num_classes:
        raise ConfigError(f"{where}={ignore_index} collides with a class id 0..{num_classes - 1}; "
                          "give unlabelled pixels a value outside the classes (255 is usual)")


def resolve_normalization(config: ModelConfig) -> None:
    """Fill ``mean``/``std`` from the backbone's timm pretrained config (ImageNet's by default)."""
    if config.mean is not None and config.std is not None:
        return
    import timm

    cfg = timm.models.get_pretrained_cfg(timm.models.split_model_name_tag(config.backbone)[0])
    mean, std = (tuple(cfg.mean), tuple(cfg.std)) if cfg is not None else (IMAGENET_MEAN, IMAGENET_STD)
    config.mean = config.mean or mean
    config.std = config.std or std
