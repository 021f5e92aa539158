"""Deprecated: the run folder moved to :mod:`eseg.rundir` (beside :mod:`eseg.paths`); this alias
goes in the next release."""
from __future__ import annotations

import warnings

from ..paths import RUN_OUTPUTS
from ..rundir import LOCK_FILE, RunLock, default_run_dir, latest_run, next_free, numbered, prepare_run_dir

__all__ = ["LOCK_FILE", "RUN_OUTPUTS", "RunLock", "default_run_dir", "latest_run", "next_free", "numbered",
           "prepare_run_dir"]

warnings.warn("eseg.engine.rundir moved to eseg.rundir; import it from there", DeprecationWarning, stacklevel=2)
