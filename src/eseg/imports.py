"""Imports that may not be there: optional extras, and names a package exports lazily."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .errors import ESegError


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module``, or an ESegError saying that ``what`` needs ``pip install 'eseg[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ESegError(f"{what} needs the {extra} extra: pip install 'eseg[{extra}]' ({exc})") from exc


def lazy_attribute(package: str, exports: dict[str, str], name: str) -> Any:
    """For a package's ``__getattr__``: ``name`` from the module ``exports`` maps it to, or the
    submodule ``package.name``; AttributeError otherwise. Keeps ``import package`` torch-free."""
    if name in exports:
        return getattr(importlib.import_module(exports[name]), name)
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.{name}":
            raise
        raise AttributeError(f"module '{package}' has no attribute '{name}'") from None
