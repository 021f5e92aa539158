"""Experiment configs: YAML files with ``_base_`` inheritance and dotted overrides, loaded into
one typed, range-checked :class:`ExperimentConfig`.

``load_config(path, overrides)`` reads the file (following ``_base_:``), applies overrides such
as ``train.lr=0.05`` (values parsed as YAML) and checks everything before anything is built: an
unknown key names the closest valid one, a bad value names the key, the value and the valid
range (:mod:`eseg.schema`), a model option is checked against its architecture's config, a
dataset spec against its type, a loss spec against :mod:`eseg.loss_spec`. Torch-free: loading
and checking a config imports no torch and nothing of :mod:`eseg.engine`.

The ``model`` section holds the registered ``name``, ``pretrained_backbone``,
``backbone_weights`` and any field of the architecture's config (``fpn_width``, ...), flat in
YAML and kept in ``model.options``.

A saved config (a run's ``config.yaml``) records in its header the file and the overrides it
was made from (:class:`ConfigOrigin`). ``eseg train --resume`` continues a run from that
recorded config (:func:`resume_config`); an override may change only the keys of
:data:`RESUMABLE_KEYS`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Sequence
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
    loss: dict | list = option({"type": "cross_entropy"}, help="loss spec (eseg.loss_spec)")
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


@dataclass(frozen=True)
class ConfigOrigin:
    """Where a config came from: the YAML file (absolute) and the overrides applied to it."""

    path: str | None
    overrides: tuple[str, ...] = ()


SECTIONS = {"model": ModelSection, "data": DataSection, "train": TrainSection, "eval": EvalSection, "run": RunSection}


@dataclass
class ExperimentConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    run: RunSection = field(default_factory=RunSection)
    # The file and overrides this config was made from (written into config.yaml's header).
    origin: ConfigOrigin | None = field(default=None, compare=False, repr=False)

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

    def train_crop(self) -> tuple[int, int]:
        """The training crop (H, W): ``data.crop_size``, else the model's ``train_crop``."""
        if self.data.crop_size is not None:
            return tuple(self.data.crop_size)
        from .models.registry import get_config

        return tuple(get_config(self.model.name, **self.model_options()).train_crop)


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
    from .loss_spec import validate_loss_spec
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


def config_mapping(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """The config as a plain mapping, not yet checked: defaults <- ``_base_`` files <- ``path``
    <- ``overrides``."""
    data = ExperimentConfig().to_dict()
    if path is not None:
        data = merge(data, _read_yaml(Path(path)))
    for override in overrides:
        data = apply_override(data, override)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The checked config: defaults <- ``_base_`` files <- ``path`` <- ``overrides``."""
    data = config_mapping(path, overrides)
    source = "config" if path is None else f"config '{path}'"
    if overrides:
        source += f" with overrides {' '.join(overrides)}"
    config = ExperimentConfig.from_dict(data, source)
    config.origin = _origin(path, tuple(overrides))
    return config


def _origin(path: str | Path | None, overrides: tuple[str, ...]) -> ConfigOrigin:
    """A saved config keeps the origin its header records; any other file is its own origin."""
    recorded = read_origin(path) if path is not None else None
    if recorded is not None:
        return ConfigOrigin(recorded.path, recorded.overrides + overrides)
    return ConfigOrigin(None if path is None else str(Path(path).resolve()), overrides)


ORIGIN_HEADER = "# made from: "
OVERRIDES_HEADER = "# with overrides: "


def dump_config(config: ExperimentConfig) -> str:
    header = ""
    if config.origin is not None and config.origin.path is not None:
        header = (f"{ORIGIN_HEADER}{config.origin.path}\n"
                  f"{OVERRIDES_HEADER}{json.dumps(list(config.origin.overrides))}\n")
    return header + yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def read_origin(path: str | Path) -> ConfigOrigin | None:
    """The origin a saved config's header records (None for a config without one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            head = [handle.readline() for _ in range(2)]
    except (OSError, UnicodeDecodeError):
        return None
    if not head[0].startswith(ORIGIN_HEADER):
        return None
    overrides: Any = []
    if head[1].startswith(OVERRIDES_HEADER):
        try:
            overrides = json.loads(head[1][len(OVERRIDES_HEADER):])
        except ValueError:
            overrides = []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        overrides = []
    return ConfigOrigin(head[0][len(ORIGIN_HEADER):].rstrip("\n"), tuple(overrides))


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config (atomically); ``load_config`` reads it back unchanged."""
    fileio.write_text(path, dump_config(config))
    return Path(path)


# -- resuming a run --------------------------------------------------------------------------------

# What `eseg train --resume` may change in the run it continues, and why that is safe: how long
# it trains and how often it logs, saves and evaluates, never what it trains (the model, the
# data, the loss, the optimiser), which its checkpoint was made with. A key ending a section
# name covers the whole section.
RESUMABLE_KEYS: dict[str, str] = {
    "train.steps": "train on to another step count (README: `train.steps=400 --resume`)",
    "train.log_interval": "how often the loss is logged",
    "train.checkpoint_interval": "how often checkpoints/last is written",
    "data.num_workers": "loader processes only: every sample is seeded by its index, so the batches stay the same",
    "eval": "every evaluation option: interval, batch_size, max_images, num_overlays, num_predictions",
    "run": "where and how the run reports: out, progress, tensorboard, mlflow",
}
_UNSET = object()


def is_resumable(key: str) -> bool:
    """Whether the dotted ``key`` (e.g. ``eval.interval``) may change when a run is resumed."""
    return any(key == name or key.startswith(name + ".") for name in RESUMABLE_KEYS)


def differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every leaf that differs (``_UNSET`` when absent)."""
    found: dict[str, tuple[Any, Any]] = {}
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key, _UNSET), new.get(key, _UNSET)
        dotted = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            found.update(differences(a, b, dotted + "."))
        elif a != b:
            found[dotted] = (a, b)
    return found


def resume_config(run_config: str | Path, config_path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config ``eseg train CONFIG OVERRIDES --resume`` continues a run with: the run's own
    recorded ``run_config``, changed only in :data:`RESUMABLE_KEYS`.

    CONFIG with the overrides the run was started with (its header records them) must still
    give the run's config, else the wrong file was named; a new override of any key that is
    not resumable is refused. Both errors name the keys and both values."""
    recorded = load_config(run_config)
    origin = recorded.origin or ConfigOrigin(None)
    wanted = config_mapping(config_path, origin.overrides + tuple(overrides))
    source = f"config '{config_path}' with the run's overrides and {' '.join(overrides) or 'no new ones'}"
    resumed = ExperimentConfig.from_dict(wanted, source)
    changed = {k: v for k, v in differences(recorded.to_dict(), resumed.to_dict()).items() if not is_resumable(k)}
    if changed:
        raise ConfigError(_not_resumable_message(changed, Path(run_config), config_path, origin, overrides))
    resumed.origin = ConfigOrigin(origin.path, origin.overrides + tuple(overrides))
    return resumed


def _not_resumable_message(changed: dict, run_config: Path, config_path, origin: ConfigOrigin, overrides) -> str:
    """Which keys a resume would change, split into those a new override sets and those the
    CONFIG file itself gives differently."""
    touched = [".".join(parse_override(o)[0]) for o in overrides]

    def by_override(key: str) -> bool:
        return any(key == t or key.startswith(t + ".") or t.startswith(key + ".") for t in touched)

    def listing(keys: list[str]) -> str:
        return ", ".join(f"{k} (run: {_shown(changed[k][0])}, now: {_shown(changed[k][1])})" for k in keys)

    from_overrides = [k for k in changed if by_override(k)]
    from_config = [k for k in changed if k not in from_overrides]
    parts = [f"--resume continues the run's own config {run_config}, and a resumed run may change only "
             f"{', '.join(k if '.' in k else k + '.*' for k in RESUMABLE_KEYS)}."]
    if from_overrides:
        parts.append(f"These overrides would change what it trains: {listing(from_overrides)}; "
                     "drop them, or start a new run with them (another --out, or --overwrite).")
    if from_config:
        started = f" (the run was started from {origin.path})" if origin.path else ""
        parts.append(f"CONFIG '{config_path}' gives other values than the run's{started}: {listing(from_config)}; "
                     f"name the config the run was started from, or {run_config} itself.")
    return " ".join(parts)


def _shown(value: Any) -> str:
    return "unset" if value is _UNSET else json.dumps(value) if not isinstance(value, str) else repr(value)
