"""Typed, range-checked dataclasses for configs: one checker for experiment and model configs.

A field is declared with :func:`option` (default, allowed choices or range, help text); the
dataclass's annotations give its type. :func:`from_mapping` builds an instance from a plain
mapping (YAML), rejecting unknown keys with the closest valid one, converting lists to tuples
where the annotation asks for a tuple, and checking every value. :func:`check` re-checks an
instance (e.g. after a programmatic change). Every failure is a ConfigError that names the key,
the value and what is allowed; :func:`did_you_mean` is the one spelling hint of every name-keyed
check in eseg (config keys, choices, registries, loss and dataset specs). Torch-free.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

_NONE = type(None)


def option(default: Any = dataclasses.MISSING, *, choices: tuple | None = None, min: float | None = None,
           max: float | None = None, above: float | None = None, below: float | None = None, help: str = "",
           length: int | None = None) -> Any:
    """A dataclass field with checks: ``choices``, inclusive ``min``/``max``, exclusive
    ``above``/``below`` (applied to each element of a list or tuple), and a fixed ``length``."""
    metadata = {"choices": choices, "min": min, "max": max, "above": above, "below": below, "help": help,
                "length": length}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: _copy(d), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def did_you_mean(word: object, choices: Iterable[object], *, n: int = 1) -> str:
    """``"did you mean 'x'? "`` with the (up to ``n``) closest of ``choices`` to ``word``, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)
    return f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""


def unknown_key_error(key: str, valid: list[str], where: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key '{key}'; {did_you_mean(key, valid)}valid keys: {', '.join(sorted(valid))}")


def from_mapping(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """An instance of the dataclass ``cls`` from ``data``; ``where`` prefixes every key in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of {sorted(f.name for f in dataclasses.fields(cls))}, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise unknown_key_error(str(key), list(fields), where)
    hints = typing.get_type_hints(cls)
    values = {key: coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    try:
        obj = cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from exc
    check(obj, where)
    return obj


def check(obj: Any, where: str) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation and options,
    converting values in place where that is lossless (lists to tuples, integers to floats)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            check(value, key)
            continue
        value = coerce(value, hints[f.name], key)
        _check_range(value, f.metadata, key)
        object.__setattr__(obj, f.name, value)


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` converted to ``annotation`` where that is lossless (list -> tuple, int -> float),
    else a ConfigError naming ``key``."""
    converted, ok = _convert(value, annotation)
    if not ok:
        raise ConfigError(f"'{key}' must be {describe(annotation)}, got {value!r}")
    return converted


def _convert(value: Any, annotation: Any) -> tuple[Any, bool]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value, True
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            converted, ok = _convert(value, arg)
            if ok:
                return converted, True
        return value, False
    if annotation is _NONE:
        return value, value is None
    if origin in (list, tuple) or annotation in (list, tuple):
        return _convert_sequence(value, origin or annotation, args)
    if origin is dict or annotation is dict:
        return value, isinstance(value, Mapping)
    return _convert_scalar(value, annotation)


def _convert_sequence(value: Any, container: type, args: tuple) -> tuple[Any, bool]:
    if not isinstance(value, (list, tuple)):
        return value, False
    if container is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            return value, False
        items = [_convert(v, a) for v, a in zip(value, args)]
    else:
        item_type = args[0] if args else Any
        items = [_convert(v, item_type) for v in value]
    if not all(ok for _, ok in items):
        return value, False
    return container(v for v, _ in items), True


def _convert_scalar(value: Any, annotation: Any) -> tuple[Any, bool]:
    if annotation is bool:
        return value, isinstance(value, bool)
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value), True
        return value, isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:  # NaN and infinity are never a meaningful setting
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and math.isfinite(value))
        return (float(value) if ok else value), ok
    if annotation is str:
        return value, isinstance(value, str)
    return value, isinstance(value, annotation)


def describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if annotation is _NONE:
        return "null"
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
    if origin in (list, tuple):
        return f"a list of {describe(args[0]) if args else 'values'}"
    if origin is dict or annotation is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if meta.get("length") is not None and isinstance(value, (list, tuple)) and len(value) != meta["length"]:
        raise ConfigError(f"'{key}' must have {meta['length']} values, got {value!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        hint = did_you_mean(value, meta["choices"]).rstrip()
        raise ConfigError(f"'{key}' = {value!r} is not one of {', '.join(map(str, meta['choices']))}"
                          + (f"; {hint}" if hint else ""))
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            _check_bounds(item, value, meta, key)


def _check_bounds(item: float, value: Any, meta: Mapping[str, Any], key: str) -> None:
    bounds = (("min", lambda b: item >= b, ">="), ("max", lambda b: item <= b, "<="),
              ("above", lambda b: item > b, ">"), ("below", lambda b: item < b, "<"))
    for name, test, symbol in bounds:
        bound = meta.get(name)
        if bound is not None and not test(bound):
            raise ConfigError(f"'{key}' = {value!r} is out of range: each value must be {symbol} {bound}"
                              f"{range_text(meta)}")


def range_text(meta: Mapping[str, Any]) -> str:
    parts = [f"{symbol} {meta[name]}" for name, symbol in (("min", ">="), ("above", ">"), ("max", "<="), ("below", "<"))
             if meta.get(name) is not None]
    return f" (valid: {' and '.join(parts)})" if len(parts) > 1 else ""


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain dict (tuples become lists) for YAML and JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return to_dict(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
