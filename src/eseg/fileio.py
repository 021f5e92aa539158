"""Atomic file writes: write a temporary file next to the target, then rename over it."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from .errors import ConfigError, DataError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600, and some writers (safetensors) create the file anew: give the
        # finished file the usual permissions
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """Read once (at import): reading it sets it for a moment, which must not happen while
    another thread creates files or folders (predict writes on a thread pool)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_umask()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON: NaN (e.g. the IoU of a class absent from a split) is written as null."""
    write_text(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines log. A run killed mid-write leaves a partial last line, which is
    dropped; damage anywhere else raises ``DataError`` naming the line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number} is not valid JSON ({exc})") from exc
    return rows


PNG_LEVEL = 6  # zlib level for every PNG eseg writes (PIL's default)


def write_png(path: str | Path, array: np.ndarray, *, palette: np.ndarray | None = None,
              compress_level: int = PNG_LEVEL) -> None:
    """uint8 (H, W, 3) pictures or (H, W) uint8/uint16 label maps as PNG. With ``palette``
    ((N <= 256, 3) uint8 RGB), a uint8 (H, W) array is written as a palette PNG (mode 'P'):
    viewers show each id in its colour, readers get the ids back."""
    image = Image.fromarray(array)
    if palette is not None:
        palette = np.asarray(palette, dtype=np.uint8)
        ids_ok = array.dtype == np.uint8 and array.ndim == 2
        if not ids_ok or palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 256:
            raise ValueError(f"a palette PNG needs (H, W) uint8 ids and an (N <= 256, 3) palette, got "
                             f"{array.dtype} {array.shape} and {palette.shape}")
        image = Image.frombuffer("P", image.size, np.ascontiguousarray(array), "raw", "P", 0, 1)
        image.putpalette(palette.reshape(-1).tobytes(), rawmode="RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level)


def read_yaml_mapping(path: str | Path, what: str, hint: str = "") -> dict:
    """The mapping a YAML (or JSON) file holds; ``ConfigError`` naming ``what`` and the file when
    it is missing, unparsable or not a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist{hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping, got {type(data).__name__}")
    return data
