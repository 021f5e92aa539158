"""The ``train.loss`` spec: the loss types, their options and ranges. Torch-free.

A spec is one mapping or a list of mappings, each with a ``type`` registered in
:data:`LOSS_TYPES` and that type's options (defaults fill the rest)::

    train:
      loss:
        - {type: cross_entropy, weight: 1.0, class_weights: null, label_smoothing: 0.0,
           ohem: false, ohem_thresh: 0.7, ohem_min_kept: 100000}
        - {type: dice, weight: 0.5}
        - {type: focal, weight: 1.0, gamma: 2.0}
        - {type: lovasz, weight: 1.0}

Each type's options are a dataclass checked by :mod:`eseg.schema` (types, ranges, unknown keys
with the closest valid one), so :func:`validate_loss_spec` runs when a config loads, without
torch and without the dataset; :func:`eseg.engine.losses.build_loss` builds the modules from
its result (and checks ``class_weights`` against the dataset's classes).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import schema
from .errors import ConfigError
from .registry import Registry
from .schema import option


@dataclass
class LossOptions:
    """What every loss type takes."""

    weight: float = option(1.0, min=0, help="this term's factor in the total loss")

    def check_relations(self, where: str) -> None:
        """Rules no single field can check (none by default)."""


@dataclass
class CrossEntropyOptions(LossOptions):
    class_weights: list[float] | None = option(None, min=0, help="one per class (torch's weighted mean); null: equal")
    label_smoothing: float = option(0.0, min=0, below=1)
    ohem: bool = option(False, help="online hard example mining: only the hard pixels count")
    ohem_thresh: float = option(0.7, above=0, max=1, help="hard: the true class's probability is below this")
    ohem_min_kept: int = option(100000, min=1, help="at least this many of the hardest pixels count")

    def check_relations(self, where: str) -> None:
        if self.class_weights is not None and not any(self.class_weights):
            state = "is empty" if not self.class_weights else "are all 0"
            raise ConfigError(f"{where}.class_weights {state}, so no pixel would count; give one weight >= 0 per "
                              "class with at least one positive, or null for equal weights")


@dataclass
class DiceOptions(LossOptions):
    smooth: float = option(0.0, min=0, help="smp: (I + smooth) / ((|P| + |T|) / 2 + smooth)")


@dataclass
class FocalOptions(LossOptions):
    gamma: float = option(2.0, min=0)
    alpha: float | None = option(None, min=0, max=1)


@dataclass
class LovaszOptions(LossOptions):
    pass


# type -> its options class; ``term`` names the type's value in the logs (loss/<term>).
LOSS_TYPES: Registry[type[LossOptions]] = Registry("loss type")
LOSS_TYPES.register("cross_entropy", CrossEntropyOptions, term="ce")
LOSS_TYPES.register("dice", DiceOptions, term="dice")
LOSS_TYPES.register("focal", FocalOptions, term="focal")
LOSS_TYPES.register("lovasz", LovaszOptions, term="lovasz")


def check_loss_entry(entry: Any, where: str) -> dict[str, Any]:
    """One loss mapping with its defaults filled in, or a ConfigError naming the key."""
    types = ", ".join(LOSS_TYPES.names())
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type' key (one of {types}), got {entry!r}")
    if "type" not in entry:
        raise ConfigError(f"{where}: missing 'type'; one of {types}")
    kind = str(entry["type"])
    try:
        options_class = LOSS_TYPES.get(kind)
    except ConfigError as exc:
        raise ConfigError(f"{where}.type: {exc}") from exc
    valid = ["type", *(f.name for f in dataclasses.fields(options_class))]
    for key in entry:
        if key not in valid:
            raise schema.unknown_key_error(str(key), valid, f"{where} (type '{kind}')")
    options = schema.from_mapping(options_class, {k: v for k, v in entry.items() if k != "type"}, where)
    options.check_relations(where)
    return {"type": kind, **schema.to_dict(options)}


def validate_loss_spec(spec: Any, where: str = "train.loss") -> list[dict[str, Any]]:
    """Check a loss spec's keys, types and ranges (no dataset needed) and return it as a list of
    mappings with every default filled in. Raises ConfigError naming the offending key path."""
    if isinstance(spec, Mapping):
        entries = [check_loss_entry(spec, where)]
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where}: empty list; give at least one loss, e.g. [{{type: cross_entropy}}]")
        entries = [check_loss_entry(entry, f"{where}[{i}]") for i, entry in enumerate(spec)]
    else:
        raise ConfigError(f"{where}: expected a mapping or a list of mappings with a 'type' key, got {spec!r}")
    if not any(entry["weight"] > 0 for entry in entries):
        raise ConfigError(f"{where}: every loss weight is 0, so nothing would be trained; make one > 0")
    return entries


def term_name(kind: str) -> str:
    """The log name of a loss type's value (``ce`` for cross_entropy)."""
    return LOSS_TYPES.metadata(kind)["term"]
