"""Experiment configs: YAML files with ``_base_`` inheritance and dotted overrides, loaded into
one typed, range-checked :class:`ExperimentConfig`.

``load_config(path, overrides)`` reads the file (following ``_base_:``), applies overrides such
as ``train.lr=0.05`` (values parsed as YAML) and checks everything before anything is built: an
unknown key names the closest valid one, a bad value names the key, the value and the valid
range (:mod:`eseg.schema`), a model option is checked against its architecture's config, a
dataset spec against its type, a loss spec against :mod:`eseg.engine.losses`.

The ``model`` section holds the registered ``name``, ``pretrained_backbone``,
``backbone_weights`` and any field of the architecture's config (``fpn_width``, ...), flat in
YAML and kept in ``model.options``.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import fileio, schema
from .errors import ConfigError
from .schema import option

BASE_KEY = "_base_"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


@dataclass
class ModelSection:
    name: str = option("eseg_lite_s", help="registered model (eseg models)")
    pretrained_backbone: bool = option(False, help="timm's ImageNet weights (downloads them)")
    backbone_weights: str | None = option(None, help="a local timm weights file instead")
    options: dict = option({}, help="architecture fields, e.g. fpn_width, max_level")


@dataclass
class DataSection:
    dataset: dict = option({"type": "synthetic"}, help="dataset spec (eseg.data.build_dataset)")
    val_dataset: dict | None = option(None, help="another spec for validation; null: the same as dataset")
    train_split: str = option("train")
    val_split: str = option("val")
    crop_size: tuple[int, int] | None = option(None, min=1, help="[H, W]; null: the model's train_crop")
    scale_range: tuple[float, float] = option((0.5, 2.0), above=0, help="random scale [low, high]")
    hflip: bool = option(True)
    color_jitter: float | list[float] | None = option(None, min=0, length=4, help="a strength s or [b, c, s, hue]")
    num_workers: int = option(2, min=0, help="DataLoader worker processes")


@dataclass
class TrainSection:
    steps: int = option(1000, min=1)
    batch_size: int = option(8, min=1, help="global: split evenly over the DDP processes")
    optimizer: str = option("sgd", choices=("sgd", "adamw"))
    lr: float = option(0.01, above=0)
    momentum: float = option(0.9, min=0, below=1)
    betas: tuple[float, float] = option((0.9, 0.999), min=0, below=1)
    weight_decay: float = option(1e-4, min=0, help="never applied to norms, biases or fusion weights")
    schedule: str = option("poly", choices=("poly", "cosine", "constant"))
    poly_power: float = option(0.9, above=0)
    min_lr: float = option(0.0, min=0)
    warmup_steps: int = option(0, min=0)
    warmup_ratio: float = option(0.1, above=0, max=1, help="lr factor at step 0 of the linear warmup")
    loss: dict | list = option({"type": "cross_entropy"}, help="loss spec (eseg.engine.losses)")
    amp: bool = option(False, help="bf16 autocast on CPU, fp16 + GradScaler on CUDA")
    channels_last: bool = option(False)
    ema_decay: float = option(0.0, min=0, below=1, help="EMA of the weights, 0 = off")
    grad_clip: float = option(0.0, min=0, help="max global grad norm, 0 = off")
    bn_momentum: float | None = option(None, above=0, max=1, help="long-run BN momentum of every layer")
    precise_bn_batches: int = option(0, min=0, help="recompute BN statistics over N batches before evaluations")
    freeze_bn: bool = option(False, help="BN layers use their running statistics")
    sync_bn: bool = option(False, help="SyncBatchNorm across DDP processes (CUDA only)")
    seed: int = option(0, min=0)
    deterministic: bool = option(False)
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    log_interval: int = option(10, min=1)
    checkpoint_interval: int = option(500, min=1)


@dataclass
class EvalSection:
    interval: int = option(500, min=0, help="validate every N steps; 0 = only at the end")
    batch_size: int = option(4, min=1)
    max_images: int | None = option(None, min=1, help="validate on the first N images only")
    num_overlays: int = option(4, min=0, help="validation panels written at each evaluation")
    num_predictions: int = option(8, min=0, help="prediction panels of the best model at the end")


@dataclass
class RunSection:
    out: str | None = option(None, help="run folder; null: runs/<config name>")
    tensorboard: bool = option(True, help="TensorBoard events")
    mlflow: str | None = option(None, help="MLflow tracking URI (needs mlflow); null: off")
    progress: bool = option(True, help="progress bar")


SECTIONS = {"model": ModelSection, "data": DataSection, "train": TrainSection, "eval": EvalSection, "run": RunSection}


@dataclass
class ExperimentConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    run: RunSection = field(default_factory=RunSection)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "ExperimentConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a config is a mapping of sections {list(SECTIONS)}, got {type(data).__name__}")
        try:
            for section in data:
                if section not in SECTIONS:
                    raise schema.unknown_key_error(str(section), list(SECTIONS), "config")
            config = cls(**{name: _section(name, data.get(name) or {}) for name in SECTIONS})
            check_relations(config)
        except ConfigError as exc:
            raise ConfigError(str(exc) if source == "config" else f"{source}: {exc}") from exc
        return config

    def to_dict(self) -> dict:
        out = {name: schema.to_dict(getattr(self, name)) for name in SECTIONS}
        options = out["model"].pop("options")
        out["model"].update(options)
        return out

    def model_options(self) -> dict:
        return dict(self.model.options)


def _section(name: str, values: Any):
    where = name
    if not isinstance(values, dict):
        raise ConfigError(f"section '{where}' must be a mapping, got {values!r}")
    if name == "model":
        known = {f.name for f in dataclasses.fields(ModelSection)} - {"options"}
        values = {**{k: v for k, v in values.items() if k in known},
                  "options": {k: v for k, v in values.items() if k not in known}}
    return schema.from_mapping(SECTIONS[name], values, where)


def check_relations(config: ExperimentConfig) -> None:
    """What no single field can check: the model options, dataset and loss specs, and the rules
    that tie values together."""
    from .data.specs import check_dataset_spec
    from .engine.losses import validate_loss_spec
    from .models.registry import check_model_options

    check_model_options(config.model.name, config.model.options, "model")
    check_dataset_spec(config.data.dataset, "data.dataset")
    if config.data.val_dataset is not None:
        check_dataset_spec(config.data.val_dataset, "data.val_dataset")
    validate_loss_spec(config.train.loss, "train.loss")
    train, data = config.train, config.data
    if train.warmup_steps >= train.steps:
        raise ConfigError(f"train.warmup_steps={train.warmup_steps} must be below train.steps={train.steps}")
    if data.scale_range[0] > data.scale_range[1]:
        raise ConfigError(f"data.scale_range={list(data.scale_range)} must be [low, high] with low <= high")
    if not DEVICE_PATTERN.match(train.device):
        raise ConfigError(f"train.device={train.device!r} must be auto, cpu, mps, cuda or cuda:N")


# -- YAML files ------------------------------------------------------------------------------------


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins. Dataset specs are replaced, not merged, when their
    ``type`` changes (a cityscapes spec must not inherit a synthetic one's keys)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("type", value.get("type")) == value.get("type", old.get("type")):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"'{path}': _base_ inheritance loops back to itself via {[str(p) for p in chain]}")
    where = f" (the _base_ of '{chain[-1]}')" if chain else ""
    data = fileio.read_yaml_mapping(path, "config file", where)
    bases = data.pop(BASE_KEY, None) or []
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = merge(merged, _read_yaml(path.parent / base, chain + (path,)))
    for section in data:
        if section not in SECTIONS:
            raise schema.unknown_key_error(str(section), list(SECTIONS), f"config file '{path}'")
    return merge(merged, data)


# -- overrides -------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML); the one override syntax of
    ``eseg train``, ``eseg reproduce --set`` and ``eseg benchmark --set``."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.lr=0.05")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': the value is not valid YAML ({exc})") from exc
    return [part.strip() for part in dotted.split(".")], value


def apply_override(config: dict, override: str) -> dict:
    """Apply one ``section.key[.sub...]=value`` override to a config mapping. Setting a dataset
    spec's ``type`` to another type starts a fresh spec of that type."""
    path, value = parse_override(override)
    source = f"override '{override}'"
    if path[0] not in SECTIONS:
        raise schema.unknown_key_error(path[0], list(SECTIONS), source)
    if len(path) == 1:
        raise ConfigError(f"{source}: name a key inside section '{path[0]}', e.g. {path[0]}.<key>=...")
    _check_override_key(path, source)
    out = copy.deepcopy(config)
    node = out.setdefault(path[0], {})
    for part in path[1:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if path[-1] == "type" and len(path) == 3 and node.get("type") not in (None, value):
        node.clear()
    node[path[-1]] = value
    return out


def _check_override_key(path: list[str], source: str) -> None:
    section, key = path[0], path[1]
    valid = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if section == "model":
        return  # architecture fields are checked against the model's config
    if key not in valid:
        raise schema.unknown_key_error(key, valid, f"{source}: {section}")
    if len(path) > 2 and (section, key) not in (("data", "dataset"), ("data", "val_dataset")):
        raise ConfigError(f"{source}: '{section}.{key}' has no sub-keys")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The checked config: defaults <- ``_base_`` files <- ``path`` <- ``overrides``."""
    data = ExperimentConfig().to_dict()
    if path is not None:
        data = merge(data, _read_yaml(Path(path)))
    for override in overrides:
        data = apply_override(data, override)
    source = "config" if path is None else f"config '{path}'"
    if overrides:
        source += f" with overrides {' '.join(overrides)}"
    return ExperimentConfig.from_dict(data, source)


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config (atomically); ``load_config`` reads it back unchanged."""
    fileio.write_text(path, dump_config(config))
    return Path(path)
