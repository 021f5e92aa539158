"""The ESeg network: timm backbone -> extra levels up to P(max_level) -> BiFPN -> head."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from torch import nn

from .. import fileio
from ..errors import CheckpointError, ConfigError
from .backbone import TimmBackbone
from .bifpn import FeaturePyramid
from .deeplab import DEEPLAB_KIND, build_deeplabv3plus
from .head import SegmentationHead
from .padding import pad_to_multiple

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class ESegConfig:
    """Everything needed to rebuild an ESeg network (weights aside)."""

    backbone: str = "tf_efficientnet_lite0"
    num_classes: int = 19
    min_level: int = 2
    max_level: int = 9
    fpn_width: int = 64
    fpn_repeats: int = 3
    fpn_kind: str = "bifpn"  # "bifpn", "fpn" (plain top-down) or "deeplabv3plus" (atrous baseline), for ablations
    fusion: str = "fast"  # "fast" normalized, "attn" softmax, or "sum"
    act: str = "swish"
    head_width: int = 64
    head_layers: int = 2
    dropout: float = 0.0
    train_crop: tuple[int, int] = (512, 1024)  # H, W
    eval_size: tuple[int, int] = (1024, 2048)  # H, W
    mean: tuple[float, float, float] | None = None  # None: the backbone's own (timm pretrained_cfg)
    std: tuple[float, float, float] | None = None
    class_names: list[str] | None = None
    variant: str | None = None
    extra: dict = field(default_factory=dict)  # free-form metadata (dataset, palette name, ...)

    def __post_init__(self) -> None:
        for key in ("train_crop", "eval_size", "mean", "std"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, tuple(value))
        if self.mean is None or self.std is None:
            mean, std = backbone_normalization(self.backbone)
            self.mean = self.mean or mean
            self.std = self.std or std
        if not 1 <= self.min_level <= self.max_level:
            raise ConfigError(f"model levels must satisfy 1 <= min_level <= max_level, got {self.min_level}..{self.max_level}")
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class_names given for num_classes={self.num_classes}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "ESegConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown model config keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the backbone's pretrained weights expect (ImageNet's by default)."""
    cfg = timm.models.get_pretrained_cfg(timm.models.split_model_name_tag(name)[0])
    if cfg is None:
        return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return tuple(cfg.mean), tuple(cfg.std)


class ESeg(nn.Module):
    """Any input size: the input is padded to a multiple of ``2**max_level`` and the logits are
    cropped back, so the output always has the input's H x W."""

    def __init__(
        self,
        config: ESegConfig,
        *,
        pretrained_backbone: bool = False,
        backbone_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        if config.fpn_kind == DEEPLAB_KIND:  # the atrous baseline of `eseg reproduce`; max_level = log2(OS)
            self.levels = [config.min_level, config.max_level]
            self.backbone, self.pyramid, self.head = build_deeplabv3plus(
                config, pretrained=pretrained_backbone, weights_path=backbone_weights
            )
            return
        self.backbone = TimmBackbone(
            config.backbone, min_level=config.min_level, pretrained=pretrained_backbone, weights_path=backbone_weights
        )
        if self.backbone.top_level > config.max_level:
            raise ConfigError(
                f"max_level={config.max_level} is below the backbone's deepest level P{self.backbone.top_level}"
            )
        self.levels = list(range(config.min_level, config.max_level + 1))
        self.pyramid = FeaturePyramid(
            self.backbone.channels,
            num_extra=config.max_level - self.backbone.top_level,
            width=config.fpn_width,
            repeats=config.fpn_repeats,
            kind=config.fpn_kind,
            fusion=config.fusion,
            act=config.act,
        )
        self.head = SegmentationHead(
            len(self.levels),
            config.fpn_width,
            config.head_width,
            config.num_classes,
            num_layers=config.head_layers,
            act=config.act,
            dropout=config.dropout,
        )

    @property
    def pad_multiple(self) -> int:
        return 2**self.config.max_level

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized images -> (B, num_classes, H, W) logits."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ESeg expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, self.pad_multiple)
        feats = self.pyramid(self.backbone(x))
        logits = self.head(feats)
        logits = F.interpolate(logits, scale_factor=float(2**self.config.min_level), mode="bilinear", align_corners=False)
        return logits[..., :height, :width]

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with fileio.atomic_path(directory / WEIGHTS_FILE) as tmp:
            safetensors.torch.save_file(state, str(tmp), metadata={"format": "eseg", "version": str(FORMAT_VERSION)})
        fileio.write_json(directory / CONFIG_FILE, {"format_version": FORMAT_VERSION, "model": self.config.to_dict()})
        return directory


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> ESeg:
    """Rebuild a model saved by :meth:`ESeg.save_pretrained`. Never unpickles anything."""
    directory = Path(path)
    if directory.is_file() and directory.name in (CONFIG_FILE, WEIGHTS_FILE):
        directory = directory.parent
    if not directory.is_dir():
        raise CheckpointError(f"model directory '{directory}' does not exist; pass the folder written by save_pretrained")
    config = read_model_config(directory / CONFIG_FILE)
    model = ESeg(config)
    model.load_state_dict(read_weights(directory / WEIGHTS_FILE, model, map_location))
    return model.eval()


def read_model_config(path: Path) -> ESegConfig:
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing; a saved eseg model folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc}); re-save the model") from exc
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"'{path}' has no 'model' section; it was not written by eseg save_pretrained")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has format_version {data['format_version']}; upgrade eseg to read it")
    try:
        return ESegConfig.from_dict(data["model"], source=str(path))
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"'{path}': bad model config: {exc}") from exc


def read_weights(path: Path, model: nn.Module, map_location) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' is missing")
    try:
        state = safetensors.torch.load_file(str(path), device=str(map_location))
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"weights file '{path}' is corrupt or not safetensors ({exc}); re-save the model") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "",
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "",
                "shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5])
                if wrong
                else "",
            )
            if part
        )
        raise CheckpointError(f"weights file '{path}' does not match its config.json: {detail}")
    return state
