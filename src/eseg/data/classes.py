"""Where a dataset's class names (and colours) come from: a classes file, a list, or a CVAT
``labelmap.txt``.

``classes.yaml`` (or ``.yml`` / ``.json``)::

    names: [road, car, ...]            # required, class id i is names[i]
    colors: [[128, 64, 128], ...]      # optional, one RGB triplet per class
    ignore_index: 255                  # optional (default 255)

CVAT's ``labelmap.txt`` ("Segmentation mask 1.1" export), one class per line in id order::

    # label:color_rgb:parts:actions
    background:0,0,0::
    car:250,50,83::

Each reader returns ``{'names': [...], 'colors': [...] | None, 'ignore_index': int | None}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, DataError

CLASSES_FILES = ("classes.yaml", "classes.yml", "classes.json")
LABELMAP_FILE = "labelmap.txt"


def load_classes_file(path: str | Path) -> dict:
    """Read and check a classes file (a ``labelmap.txt`` is read as CVAT's)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: classes file not found")
    if path.name == LABELMAP_FILE:
        return read_labelmap(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot parse classes file ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping with 'names' (and optional 'colors', 'ignore_index')")
    unknown = sorted(set(doc) - {"names", "colors", "ignore_index"})
    if unknown:
        raise DataError(f"{path}: unknown key(s) {unknown}; allowed: names, colors, ignore_index")
    names = doc.get("names")
    if not _is_name_list(names):
        raise DataError(f"{path}: 'names' must be a non-empty list of class-name strings")
    colors = doc.get("colors")
    if colors is not None and not _is_color_list(colors, len(names)):
        raise DataError(f"{path}: 'colors' must be {len(names)} [r, g, b] triplets of integers 0..255")
    ignore_index = doc.get("ignore_index")
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise DataError(f"{path}: 'ignore_index' must be an integer, got {ignore_index!r}")
    return {"names": names, "colors": colors, "ignore_index": ignore_index}


def read_labelmap(path: str | Path) -> dict:
    """CVAT's ``labelmap.txt``: ``name:r,g,b:parts:actions`` per line, class id = line order."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the label map ({exc})") from exc
    names, colors = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            color = [int(v) for v in rest.split(":")[0].split(",")]
        except ValueError:
            color = []
        if not name.strip() or len(color) != 3 or not all(0 <= v <= 255 for v in color):
            raise DataError(f"{path}, line {number}: expected 'name:r,g,b::' (CVAT labelmap.txt), got {line!r}")
        names.append(name.strip())
        colors.append(color)
    if not names:
        raise DataError(f"{path}: the label map lists no classes")
    return {"names": names, "colors": colors, "ignore_index": None}


def find_classes_file(root: Path, *, labelmap: bool = True) -> Path:
    """``root``'s classes.yaml / .yml / .json, else (with ``labelmap``) its CVAT labelmap.txt."""
    names = CLASSES_FILES + ((LABELMAP_FILE,) if labelmap else ())
    for name in names:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no {' / '.join(names)} listing the class names was found in the dataset root; "
                    "add one, or give the names in the spec: classes: [background, ...]")


def resolve_classes(classes: Any, root: Path | None, where: str = "classes") -> dict:
    """The classes a spec's ``classes`` option names: a list of names, a file, or (None) the file
    found in ``root``; with ``source``, where they came from."""
    if isinstance(classes, (list, tuple)):
        if not _is_name_list(list(classes)):
            raise ConfigError(f"{where}: a list of classes must hold non-empty class-name strings, got {classes!r}")
        return {"names": [str(n) for n in classes], "colors": None, "ignore_index": None, "source": where}
    if classes not in (None, ""):
        if not isinstance(classes, (str, Path)):
            raise ConfigError(f"{where}: expected a classes file or a list of class names, got {classes!r}")
        path = Path(classes)
    elif root is None:
        raise ConfigError(f"{where}: name the classes (a list of names or a classes.yaml)")
    else:
        path = find_classes_file(root)
    return {**load_classes_file(path), "source": str(path)}


def classes_yaml_text(names, colors=None, ignore_index: int = 255) -> str:
    """A classes.yaml (names, colors unless None, ignore_index) as text."""
    doc: dict = {"names": list(names)}
    if colors is not None:
        doc["colors"] = [[int(c) for c in color] for color in colors]
    doc["ignore_index"] = int(ignore_index)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def _is_name_list(names: Any) -> bool:
    return isinstance(names, list) and bool(names) and all(isinstance(n, str) and n for n in names)


def _is_color_list(colors: Any, count: int) -> bool:
    return isinstance(colors, list) and len(colors) == count and all(
        isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in colors)
