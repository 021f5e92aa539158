"""Which samples each split holds, and where that came from, so a split never leaks silently.

A dataset lists a *pool* of samples by name and picks a split from it, in this order:

1. a split list: ``splits: {train: FILE, val: FILE}`` in the spec (one sample name per line, as
   VOC's ``ImageSets/Segmentation/train.txt``; a FILE is relative to the dataset root), or the
   lists a format keeps by itself (VOC, CVAT);
2. the format's own split folders or files (``images/train``, one COCO file per split, ...);
3. ``val_fraction: f`` for a pool without splits: ``val`` holds the ``max(1, round(f * N))``
   samples with the smallest SHA-1 of their name, ``train`` the rest. The choice depends only on
   the names, so it is the same on every machine and run, and adding files moves few others;
4. otherwise every split name reads the whole pool, which suits evaluating a folder.

The spec's split keys reach a dataset as one :class:`SplitOptions`. :func:`check_disjoint`
refuses train and val sets that share files unless the spec says ``allow_train_val_overlap: true``. Every dataset says where its samples came from in
``split_source`` (printed by the training header).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

TRAIN, VAL = "train", "val"


def name_hash(name: str) -> str:
    """A stable hash of a sample name (SHA-1 of its UTF-8 bytes), unlike Python's ``hash()``."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def held_out(names: Sequence[str], fraction: float) -> set[str]:
    """The ``max(1, round(fraction * N))`` names with the smallest :func:`name_hash`."""
    count = max(1, round(fraction * len(names)))
    return set(sorted(names, key=lambda n: (name_hash(n), n))[:count])


def read_split_list(path: Path) -> list[str]:
    """Sample names, one per line (the first word: VOC's Main lists add a flag); blank lines and
    ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: split list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the split list ({exc})") from exc
    names = [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise DataError(f"{path}: the split list names no samples")
    return names


def check_fraction(val_fraction: Any, where: str) -> float | None:
    if val_fraction is None:
        return None
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(f"{where}.val_fraction must be a number between 0 and 1 (e.g. 0.2), got {val_fraction!r}")
    return float(val_fraction)


def list_files(splits: Any, root: Path, where: str) -> dict[str, Path]:
    """The spec's ``splits: {name: FILE}`` as paths (relative ones under ``root``)."""
    if splits is None:
        return {}
    if not isinstance(splits, Mapping) or not splits or not all(isinstance(v, (str, Path)) for v in splits.values()):
        raise ConfigError(f"{where}.splits must map split names to list files, e.g. {{train: train.txt, val: val.txt}}; "
                          f"got {splits!r}")
    return {str(name): (root / path if not Path(path).is_absolute() else Path(path)) for name, path in splits.items()}


@dataclass(frozen=True)
class SplitOptions:
    """A spec's split keys (``splits``: split -> list file, ``val_fraction``,
    ``allow_train_val_overlap``), checked; ``where`` names the spec in errors."""

    splits: Mapping[str, str | Path] | None = None
    val_fraction: float | None = None
    allow_train_val_overlap: bool = False
    where: str = "data.dataset"

    def __post_init__(self):
        object.__setattr__(self, "val_fraction", check_fraction(self.val_fraction, self.where))
        list_files(self.splits, Path("."), self.where)
        if not isinstance(self.allow_train_val_overlap, bool):
            raise ConfigError(f"{self.where}.allow_train_val_overlap must be true or false, "
                              f"got {self.allow_train_val_overlap!r}")

    def lists(self, root: Path) -> dict[str, Path]:
        """The split lists as paths, relative ones under the dataset ``root``."""
        return list_files(self.splits, root, self.where)

    def rule(self, split: str, source: str, root: Path) -> SplitRule:
        """How ``split`` is picked from the pool ``source`` (named in messages) with these options."""
        return SplitRule(split, source, self.lists(root), self.val_fraction)


@dataclass(frozen=True)
class SplitRule:
    """How one dataset picks ``split`` from its pool: ``lists`` (split -> list file) win, then
    ``val_fraction``, else the whole pool. ``where`` names the dataset in messages."""

    split: str
    where: str
    lists: Mapping[str, Path]
    val_fraction: float | None = None

    def select(self, names: Sequence[str]) -> tuple[list[int], str]:
        """Indices into ``names`` of the split's samples, and where they came from."""
        if self.lists:
            return self._from_list(names)
        if self.val_fraction is not None:
            return self._held_out(names)
        return list(range(len(names))), f"all {len(names)} images of {self.where} (no split folders or lists)"

    def _from_list(self, names: Sequence[str]) -> tuple[list[int], str]:
        if self.split not in self.lists:
            raise DataError(f"{self.where}: no split list for split {self.split!r}; lists given: "
                            f"{', '.join(f'{k}: {v}' for k, v in self.lists.items())}")
        path = self.lists[self.split]
        listed = read_split_list(path)
        position = {name: i for i, name in enumerate(names)}
        missing = [name for name in listed if name not in position]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DataError(f"{path}: {len(missing)} listed sample(s) are not in {self.where}: {shown}")
        if len(set(listed)) != len(listed):
            raise DataError(f"{path}: lists a sample more than once; each name once, please")
        return [position[name] for name in listed], f"split list {path} ({len(listed)} images)"

    def _held_out(self, names: Sequence[str]) -> tuple[list[int], str]:
        if self.split not in (TRAIN, VAL):
            raise DataError(f"{self.where}: val_fraction makes the splits '{TRAIN}' and '{VAL}' only, not {self.split!r}")
        if len(names) < 2:
            raise DataError(f"{self.where}: val_fraction needs at least 2 images to hold one out, found {len(names)}")
        val = held_out(names, self.val_fraction)
        if len(val) == len(names):
            raise DataError(f"{self.where}: val_fraction {self.val_fraction} of {len(names)} images leaves none to train on")
        keep = [i for i, name in enumerate(names) if (name in val) == (self.split == VAL)]
        what = "held out" if self.split == VAL else "not held out"
        return keep, (f"val_fraction {self.val_fraction}: the {len(keep)} of {len(names)} images of {self.where} "
                      f"{what} (the smallest SHA-1 of their names go to val)")


def refuse_mixed(rule: SplitRule, has_own_splits: bool, own: str) -> None:
    """A pool that has its own splits (``own``, e.g. 'split folders') takes no val_fraction."""
    if has_own_splits and rule.val_fraction is not None:
        raise ConfigError(f"{rule.where}: val_fraction is for data without splits, but this has {own}; "
                          "remove val_fraction (or the splits)")


def _keys(dataset) -> list:
    indices = getattr(dataset, "indices", None)
    base = getattr(dataset, "dataset", dataset) if indices is not None else dataset
    return [base.sample_key(i) for i in (indices if indices is not None else range(len(dataset)))]


def check_disjoint(train_set, val_set) -> None:
    """``DataError`` when train and val share samples, unless either spec allows it by name."""
    if getattr(train_set, "allow_train_val_overlap", False) or getattr(val_set, "allow_train_val_overlap", False):
        return
    train_keys = {key for key in _keys(train_set) if key is not None}
    shared = [key for key in _keys(val_set) if key in train_keys]
    if not shared:
        return
    shown = ", ".join(str(k) for k in shared[:3]) + (" ..." if len(shared) > 3 else "")
    raise DataError(
        f"train and val share {len(shared)} of the {len(val_set)} val images ({shown}): the val score would measure "
        f"memory, not generalisation.\n  train: {getattr(train_set, 'split_source', '?')}\n  val:   "
        f"{getattr(val_set, 'split_source', '?')}\nHold images out: data.dataset.val_fraction=0.2 (a fixed, "
        "name-hashed choice), split lists (splits: {train: FILE, val: FILE}), or the format's own splits (folder: "
        "images/train + images/val). To validate on training images on purpose, set "
        "data.dataset.allow_train_val_overlap=true")
