"""User-facing errors. Each message names the file, key or value at fault and what to do.

A DataLoader worker's exception reaches the main process re-raised with the worker's whole
traceback as its message; eseg's errors keep only the message they were raised with, so a bad
file is named in one line whether or not it was read in a worker.
"""
from __future__ import annotations

WORKER_MARK = "Original Traceback (most recent call last):"


class ESegError(Exception):
    """Base class for every error eseg raises on purpose."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(_unwrap_worker_message(str(message), type(self)), *args)


class ConfigError(ESegError, ValueError):
    """A config file, key or value is wrong."""


class DataError(ESegError, ValueError):
    """An image, mask or dataset folder cannot be used."""


class CheckpointError(ESegError, ValueError):
    """A saved model or checkpoint is missing, corrupt or does not match."""


def _unwrap_worker_message(message: str, cls: type) -> str:
    if WORKER_MARK not in message:
        return message
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    start = message.rfind(marker)
    return message[start + len(marker):].rstrip() if start >= 0 else message
