"""Experiment configs: one YAML file per experiment, checked against a schema of defaults.

``load_config(path, overrides)`` reads the file (following ``_base_:`` inheritance), applies
dotted command-line overrides such as ``train.lr=0.05`` (values parsed as YAML), and returns a
plain nested dict holding every key of :data:`DEFAULTS`. A key the schema does not know is an
error that names the key and suggests the closest valid one.

The ``model`` section holds the registry ``name``, ``pretrained_backbone``, ``backbone_weights``
and any :class:`eseg.ESegConfig` field as an override (``fpn_width``, ``max_level``, ...).
``data.dataset`` and ``data.val_dataset`` are free-form dataset specs that
:func:`eseg.data.build_dataset` checks itself.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
from pathlib import Path
from typing import Any

import yaml

from . import fileio
from .errors import ConfigError
from .models.eseg import ESegConfig

BASE_KEY = "_base_"

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "name": "eseg_lite_s",
        "pretrained_backbone": False,  # timm's ImageNet weights (downloads them)
        "backbone_weights": None,  # or a local timm weights file
    },
    "data": {
        "dataset": {"type": "synthetic"},  # spec for eseg.data.build_dataset
        "val_dataset": None,  # a different spec for validation; None: same as dataset
        "train_split": "train",
        "val_split": "val",
        "crop_size": None,  # [H, W]; None: the model variant's train_crop
        "scale_range": [0.5, 2.0],
        "hflip": True,
        "color_jitter": None,  # photometric jitter: a strength s or [b, c, s, hue]; None/0 = off
        "num_workers": 2,
    },
    "train": {
        "steps": 1000,
        "batch_size": 8,  # global: split evenly over the DDP processes
        "optimizer": "sgd",  # sgd | adamw
        "lr": 0.01,
        "momentum": 0.9,
        "betas": [0.9, 0.999],
        "weight_decay": 1e-4,  # never applied to norms, biases or BiFPN fusion weights
        "schedule": "poly",  # poly | cosine | constant
        "poly_power": 0.9,
        "min_lr": 0.0,
        "warmup_steps": 0,
        "warmup_ratio": 0.1,  # lr factor at step 0 of the linear warmup
        "ohem": False,  # online hard example mining over pixels
        "ohem_thresh": 0.7,  # keep pixels whose ground-truth probability is below this...
        "ohem_min_kept": 100000,  # ...but at least this many per batch
        "amp": False,  # bf16 autocast on CPU, fp16 + GradScaler on CUDA
        "channels_last": False,  # NHWC memory format: faster convolutions on CPU (oneDNN) and tensor cores
        "ema_decay": 0.0,  # EMA of the weights, 0 = off
        "grad_clip": 0.0,  # max global grad norm, 0 = off
        "bn_momentum": None,  # override every BN layer's momentum; EfficientDet's 0.01 suits long
        # schedules, a run of a few hundred steps needs ~0.1 for the running statistics to keep up
        "freeze_bn": False,  # BN layers in eval mode (running statistics)
        "sync_bn": False,  # SyncBatchNorm across DDP processes (CUDA only)
        "seed": 0,
        "deterministic": False,
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "log_interval": 10,
        "checkpoint_interval": 500,
    },
    "eval": {
        "interval": 500,  # validate (and maybe save checkpoints/best) every N steps; 0 = only at the end
        "batch_size": 4,
        "max_images": None,  # validate on the first N images only (None: all)
        "num_overlays": 4,  # validation overlays written at each evaluation
        "num_predictions": 8,  # predictions written at the end of training
    },
    "run": {
        "out": None,  # run folder; None: runs/<config file stem>
        "tensorboard": True,  # TensorBoard events, when tensorboard is installed
        "progress": True,  # tqdm progress bar
    },
}

# Keys whose value is a free-form mapping (checked by its consumer, not by this schema).
FREEFORM = {("data", "dataset"), ("data", "val_dataset")}
# Model overrides forwarded to eseg.create_model; the dataset sets num_classes/class_names.
MODEL_OVERRIDES = sorted(
    f.name for f in dataclasses.fields(ESegConfig) if f.name not in ("num_classes", "class_names", "variant")
)


def _valid_keys(section: str) -> list[str]:
    keys = list(DEFAULTS[section])
    return keys + MODEL_OVERRIDES if section == "model" else keys


def _unknown_key(dotted: str, candidates: list[str], source: str) -> ConfigError:
    name = dotted.rsplit(".", 1)[-1]
    prefix = dotted[: -len(name)]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
    return ConfigError(f"{source}: unknown config key '{dotted}'; {hint}valid keys here: {sorted(candidates)}")


def _check_value(dotted: str, default: Any, value: Any, source: str) -> None:
    """Light type check against the default: catches ``train.lr=abc`` and ``train.steps=[1]``."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(default, int) and not isinstance(value, int) and not float(value).is_integer():
            ok = False
    elif isinstance(default, list):
        ok = isinstance(value, list)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{source}: '{dotted}' must be like {default!r} ({type(default).__name__}), got {value!r}")


def _validate(config: dict, source: str) -> None:
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: a config is a mapping of sections {list(DEFAULTS)}, got {type(config).__name__}")
    for section, values in config.items():
        if section not in DEFAULTS:
            raise _unknown_key(section, list(DEFAULTS), source)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping, got {values!r}")
        valid = _valid_keys(section)
        for key, value in values.items():
            if key not in valid:
                raise _unknown_key(f"{section}.{key}", valid, source)
            if (section, key) in FREEFORM and value is not None and not isinstance(value, dict):
                raise ConfigError(f"{source}: '{section}.{key}' must be a mapping (a dataset spec), got {value!r}")
            _check_value(f"{section}.{key}", DEFAULTS[section].get(key), value, source)


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins. Free-form specs are replaced, not merged, when
    their ``type`` changes (a cityscapes spec should not inherit a synthetic one's keys)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("type", value.get("type")) == value.get("type", old.get("type")):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml_mapping(path: str | Path, what: str, hint: str = "") -> dict:
    """The mapping a YAML (or JSON) file holds; ``ConfigError`` naming ``what`` and the file when
    it is missing, unparsable or not a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist{hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping, got {type(data).__name__}")
    return data


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"'{path}': _base_ inheritance loops back to itself via {[str(p) for p in chain]}")
    where = f" (the _base_ of '{chain[-1]}')" if chain else ""
    data = read_yaml_mapping(path, "config file", where)
    bases = data.pop(BASE_KEY, None) or []
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = merge(merged, _read_yaml(path.parent / base, chain + (path,)))
    _validate(data, str(path))
    return merge(merged, data)


def apply_override(config: dict, override: str) -> dict:
    """Apply one ``section.key[.sub...]=value`` override (the value is parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like section.key=value, e.g. train.lr=0.05")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{override}': the value is not valid YAML ({exc})") from exc
    source = f"override '{override}'"
    if parts[0] not in DEFAULTS:
        raise _unknown_key(parts[0], list(DEFAULTS), source)
    if len(parts) == 1:
        raise ConfigError(f"{source}: name a key inside section '{parts[0]}', e.g. {parts[0]}.{next(iter(DEFAULTS[parts[0]]))}=...")
    section, key = parts[0], parts[1]
    if key not in _valid_keys(section):
        raise _unknown_key(f"{section}.{key}", _valid_keys(section), source)
    if len(parts) > 2 and (section, key) not in FREEFORM:
        raise ConfigError(f"{source}: '{section}.{key}' has no sub-keys")
    out = copy.deepcopy(config)
    node = out.setdefault(section, {})
    for part in parts[1:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    _validate({section: {key: out[section][key]}}, source)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The resolved config: schema defaults <- ``_base_`` files <- ``path`` <- ``overrides``."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        config = merge(config, _read_yaml(Path(path)))
    for override in overrides:
        config = apply_override(config, override)
    return config


def run_dir_of(config: dict, config_path: str | Path) -> Path:
    """Where a config's run lives: ``run.out``, else ``runs/<config file stem>``."""
    return Path(config["run"]["out"] or Path("runs") / Path(config_path).stem)


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def save_config(config: dict, path: str | Path) -> Path:
    """Write the resolved config (atomically); ``load_config`` reads it back unchanged."""
    fileio.write_text(path, dump_config(config))
    return Path(path)
