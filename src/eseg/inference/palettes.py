"""The colours and names predict and val draw with: the model's own, or what the user names."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..palette import PALETTE_NAMES, get_class_names, get_palette


def resolve_palette(palette: str | Path | None, num_classes: int, class_names: Sequence[str] | None,
                    model_palette: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, list[str]]:
    """(colors, names) for ``num_classes`` classes. ``palette`` is one of

    - None: the palette the model recorded when it was trained, else the built-in table whose
      class names match the model's, else distinct colors;
    - a built-in name: ``cityscapes``, ``ade20k``, ``synthetic``;
    - a folder dataset's classes file (``names`` + ``colors``), or its root folder;
    - a dataset spec YAML (``{type: cityscapes}``, ``{type: folder, root: DIR}``).
    """
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if palette is None:
        if model_palette is not None:
            return get_palette(model_palette, num_classes), names
        for known in PALETTE_NAMES:
            if list(get_class_names(known)) == names:
                return get_palette(known, num_classes), names
        return get_palette(None, num_classes), names
    if str(palette).lower() in PALETTE_NAMES:
        return builtin_palette(str(palette).lower(), num_classes)
    info = classes_info(Path(palette))
    if isinstance(info, str):
        return builtin_palette(info, num_classes)
    if len(info["names"]) != num_classes:
        raise ConfigError(f"--palette '{palette}' lists {len(info['names'])} classes but the model predicts {num_classes}")
    return get_palette(info["colors"], num_classes), list(info["names"])


def builtin_palette(name: str, num_classes: int) -> tuple[np.ndarray, list[str]]:
    known_names = list(get_class_names(name))
    if len(known_names) != num_classes:
        raise ConfigError(f"palette '{name}' has {len(known_names)} classes but the model predicts {num_classes}")
    return get_palette(name, num_classes), known_names


def classes_info(path: Path) -> dict | str:
    """A classes file's {'names', 'colors'}, or the built-in palette name a dataset spec implies."""
    from ..data.classes import resolve_classes
    from ..data.folder import find_classes_file, load_classes_file
    from ..data.specs import DATASETS, load_dataset_spec

    if path.is_dir():
        return load_classes_file(find_classes_file(path))
    if not path.is_file():
        raise ConfigError(f"--palette '{path}' is neither a built-in palette {list(PALETTE_NAMES)} nor an existing file or folder")
    if path.suffix not in (".yaml", ".yml") or "type" not in _peek(path):
        return load_classes_file(path)
    spec = load_dataset_spec(path)
    builtin = DATASETS.metadata(spec["type"])["palette"]
    if builtin:
        return builtin
    root = Path(spec["root"]) if spec.get("root") else None  # classes: a file or a list of names
    return resolve_classes(spec.get("classes"), root, f"--palette '{path}': classes")


def _peek(path: Path) -> dict:
    from ..fileio import read_yaml_mapping

    data = read_yaml_mapping(path, "palette file")
    return data.get("dataset", data) if "type" not in data and isinstance(data.get("dataset"), dict) else data
