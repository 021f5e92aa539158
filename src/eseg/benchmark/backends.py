"""Moved: a benchmark variant is prepared by :func:`eseg.benchmark.prepare.prepare_variant`, through
eseg's runners (this module kept for one release)."""
from __future__ import annotations

import warnings

from .prepare import Runnable, prepare_variant

warnings.warn("eseg.benchmark.backends moved to eseg.benchmark.prepare (prepare_backend is prepare_variant)",
              DeprecationWarning, stacklevel=2)

prepare_backend = prepare_variant

__all__ = ["Runnable", "prepare_backend"]
