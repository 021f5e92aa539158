"""The one size syntax of eseg: ``HxW`` (``512x1024``), also accepted as ``H W``.

Torch-free, so the command line can parse sizes without importing torch.
"""
from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError


def parse_size(value: str | int | Sequence[int] | Sequence[str], what: str = "size") -> tuple[int, int]:
    """``'512x1024'``, ``'512 1024'``, ``['512', '1024']``, ``(512, 1024)`` or ``512`` -> (H, W).

    Raises ConfigError naming ``what`` for anything else, including zero or negative sides.
    """
    parts: list = []
    if isinstance(value, int) and not isinstance(value, bool):
        parts = [value, value]
    elif isinstance(value, str):
        parts = value.lower().replace("*", "x").replace("x", " ").split()
    elif isinstance(value, Sequence):
        parts = [p for item in value for p in (str(item).lower().replace("x", " ").split() if isinstance(item, str) else [item])]
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"{what} must be HxW (or H W) with positive integers, e.g. 512x1024; got {value!r}")
    return size  # type: ignore[return-value]


def format_size(size: Sequence[int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"
