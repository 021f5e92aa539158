"""The training run folder: its default name, what a new run clears, and one trainer at a time.

``runs/<config>`` for a new run, then ``-2``, ``-3``... when that exists (as Ultralytics does),
unless ``--out`` names a folder or ``--overwrite`` reuses it. A lock file (host and pid) keeps a
second trainer out of a busy folder; a lock left by a process that no longer runs is taken over.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from ..errors import ConfigError
from ..paths import RUN_CONFIG

LOCK_FILE = ".eseg.lock"
# Files and folders a run writes; `--overwrite` removes exactly these before starting over.
RUN_OUTPUTS = (RUN_CONFIG, "metrics.jsonl", "metrics.csv", "curves.png", "overlays", "checkpoints", "predictions",
               "final_metrics.json", "per_class_iou.png", "confusion_matrix.png", "tb")


def default_run_dir(config_path: str | Path, root: str | Path = "runs") -> Path:
    """``runs/<path below a 'configs' folder, without suffix>`` (configs/cityscapes/x.yaml ->
    runs/cityscapes/x), else ``runs/<stem>``."""
    path = Path(config_path).resolve()
    parts = path.with_suffix("").parts
    if "configs" in parts:
        below = parts[len(parts) - 1 - parts[::-1].index("configs") + 1:]
        return Path(root).joinpath(*below)
    return Path(root) / path.stem


def numbered(base: Path) -> list[Path]:
    """``base``, ``base-2``, ``base-3``... that exist, oldest (lowest number) first."""
    found = {1: base} if base.exists() else {}
    if base.parent.is_dir():
        for path in base.parent.glob(f"{base.name}-*"):
            suffix = path.name[len(base.name) + 1:]
            if suffix.isdigit() and int(suffix) >= 2:
                found[int(suffix)] = path
    return [found[n] for n in sorted(found)]


def next_free(base: Path) -> Path:
    """``base`` if free, else the first free ``base-N``."""
    if not base.exists():
        return base
    n = 2
    while base.with_name(f"{base.name}-{n}").exists():
        n += 1
    return base.with_name(f"{base.name}-{n}")


def latest_run(base: Path) -> Path:
    """The newest of ``base``, ``base-2``, ... (``base`` itself when none exists)."""
    found = numbered(base)
    return found[-1] if found else base


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check ``run_dir`` before a run starts in it (rank 0): refuse a file, a busy folder, or an
    old run unless resuming or ``overwrite`` (which clears exactly the run's own outputs)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out '{run_dir}' is a file, not a folder; name a folder for the run")
    existing = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not existing or resume:
        return
    if not overwrite:
        raise ConfigError(f"run folder '{run_dir}' already holds a run ({', '.join(existing)}); pass --resume to "
                          "continue it, --overwrite to start over in it, or --out for another folder")
    for name in existing:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


class RunLock:
    """``run_dir/.eseg.lock`` holding host and pid while a trainer writes the folder."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self.held = False

    def acquire(self) -> str | None:
        """Take the lock; returns a message when a stale lock was taken over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        message = None
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise ConfigError(f"run folder '{self.path.parent}' is in use by process {holder.get('pid')} on "
                                      f"{holder.get('host')} (lock {self.path}); wait for it, stop it, or use --out")
                self.path.unlink(missing_ok=True)
                message = f"took over the stale lock of process {(holder or {}).get('pid', '?')} ({self.path})"
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
            self.held = True
            return message
        raise ConfigError(f"cannot take the lock {self.path}; remove it if no trainer runs in this folder")

    def _holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs (another host's process is assumed alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except (OSError, ValueError, TypeError, OverflowError):
        return False
    return True
