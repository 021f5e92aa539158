"""One small registry mechanism for every name-keyed table of eseg.

Models, architectures, dataset types, inference backends and palettes are each a
:class:`Registry`: a name maps to an entry (a class, a builder, or a ``"module:attribute"``
string imported only when the entry is used, so listing names never imports torch), plus
free-form metadata. Unknown names raise :class:`~eseg.errors.ConfigError` with the closest
registered names.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError
from .schema import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> entry`` with metadata; ``kind`` names the table in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(self, name: str, entry: T | str, **metadata: Any) -> T | str:
        """Register ``entry`` (an object, or a lazy ``"module:attribute"``) under ``name``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        self._metadata[name] = dict(metadata)
        return entry

    def get(self, name: str) -> T:
        """The entry of ``name``, importing a lazy ``"module:attribute"`` entry on first use."""
        entry = self._entries.get(self.check(name))
        if isinstance(entry, str):
            entry = _import_target(entry, f"{self.kind} '{name}'")
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def check(self, name: str) -> str:
        """``name`` if registered, else a ConfigError listing the closest names."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; {did_you_mean(name, self._entries, n=3)}"
                              f"registered: {', '.join(self.names())}")
        return name

    def metadata(self, name: str) -> dict[str, Any]:
        return self._metadata[self.check(name)]

    def names(self, contains: str | None = None) -> list[str]:
        """Sorted names, optionally only those containing ``contains``."""
        return sorted(n for n in self._entries if contains is None or contains in n)

    def find(self, predicate: Callable[[str, dict[str, Any]], bool]) -> list[str]:
        """Names whose (name, metadata) satisfy ``predicate``, in registration order."""
        return [n for n in self._entries if predicate(n, self._metadata[n])]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _import_target(target: str, what: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} needs module '{module_name}', which failed to import ({exc})") from exc
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj
