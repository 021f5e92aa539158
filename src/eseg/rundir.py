"""Output folders: the training run folder (its default name, what a new run clears, one trainer
at a time, a failed start undone) and the rule every folder-valued ``--out`` follows.

``runs/<config>`` for a new run, then ``-2``, ``-3``... when that exists (as Ultralytics does),
unless ``--out`` names a folder or ``--overwrite`` reuses it. A lock file (host and pid) keeps a
second trainer out of a busy folder; a lock left by a process that no longer runs is taken over.
:class:`RunStart` puts the folder back as it was when a run fails before its first step. The
names of the files a run writes are :mod:`eseg.paths`' (``RUN_OUTPUTS``). Torch-free.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path

from .errors import ConfigError
from .paths import RUN_OUTPUTS

LOCK_FILE = ".eseg.lock"
START_BACKUP = ".eseg-before-start"  # the folder's files from before a start, until its first step
# Names that are files, never folders: an --out ending so is a mistake (eseg writes folders there).
FILE_SUFFIXES = (".json", ".csv", ".txt", ".yaml", ".yml", ".md", ".npy", ".onnx", ".xml", ".bin")


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as an output folder: refused (ConfigError) when it or a parent is an existing
    file, or when its name ends in an image, video or other file suffix."""
    from .data.io import IMAGE_EXTENSIONS
    from .inference.video import VIDEO_EXTENSIONS

    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            what = "is an existing file" if part == path else f"is inside '{part}', an existing file"
            raise ConfigError(f"{option} '{path}' {what}; {option} is a folder the outputs are written into: "
                              "name a new or existing folder (an existing file is never replaced, even with --overwrite)")
    suffix = path.suffix.lower()
    if suffix in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS, *FILE_SUFFIXES):
        raise ConfigError(f"{option} '{path}' ends in '{path.suffix}' like a file name, but {option} is a folder the "
                          f"outputs are written into; name a folder, e.g. {option} {path.with_suffix('')}")
    return path


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
    for path in _old_outputs(run_dir, resume=resume, overwrite=overwrite):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _old_outputs(run_dir: Path, *, resume: bool, overwrite: bool) -> list[Path]:
    """The outputs of an earlier run that a new run replaces (none when resuming); refuses a file
    and, without ``overwrite``, a folder that holds a run."""
    check_output_folder(run_dir)
    existing = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not existing or resume:
        return []
    if not overwrite:
        raise ConfigError(f"run folder '{run_dir}' already holds a run ({', '.join(existing)}); pass --resume to "
                          "continue it, --overwrite to start over in it, or --out for another folder")
    return [run_dir / name for name in existing]


class RunStart:
    """A run's start in its folder (rank 0), undone when the run fails before its first step.

    ``with RunStart(...) as start:`` checks the folder, takes its lock and sets the old files
    aside: with ``overwrite`` the earlier run's outputs move into ``.eseg-before-start``, else
    copies of the top-level files a start rewrites (config.yaml, metrics) go there. Call
    :meth:`committed` once a step is done: the set-aside files are dropped. Leaving the block
    by an exception before that removes a folder the start created and puts an existing one
    back exactly as it was, so the next attempt starts as this one did."""

    def __init__(self, run_dir: Path, *, resume: bool, overwrite: bool) -> None:
        self.run_dir, self.resume, self.overwrite = Path(run_dir), resume, overwrite
        self.lock = RunLock(self.run_dir)
        self.backup = self.run_dir / START_BACKUP
        self.created: list[Path] = []  # the folders this start made, the run folder first
        self.before: set[Path] | None = None  # every path in the folder once the old files were set aside
        self.done = False
        self.message: str | None = None

    def __enter__(self) -> "RunStart":
        check_output_folder(self.run_dir)
        self.created = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        self.message = self.lock.acquire()
        try:
            self._set_aside(_old_outputs(self.run_dir, resume=self.resume, overwrite=self.overwrite))
        except BaseException:
            self._undo()
            raise
        return self

    def _set_aside(self, replaced: list[Path]) -> None:
        if self.backup.is_dir() and not any(self.backup.iterdir()):
            self.backup.rmdir()  # a killed start that had set nothing aside
        if self.backup.exists():
            raise ConfigError(f"'{self.backup}' holds the files of '{self.run_dir}' from before a start that was "
                              "killed before its first step; move them back into the run folder, or delete it")
        self.backup.mkdir()
        for path in replaced:
            os.replace(path, self.backup / path.name)
        for name in RUN_OUTPUTS:
            if not replaced and (self.run_dir / name).is_file():
                shutil.copy2(self.run_dir / name, self.backup / name)
        self.before = self._listing()

    def _listing(self) -> set[Path]:
        """The folder's entries and everything inside the run's outputs (what a start can write;
        other folders in it, say a dataset, are not walked)."""
        found = set(self.run_dir.iterdir())
        for name in RUN_OUTPUTS:
            if (self.run_dir / name).is_dir():
                found.update((self.run_dir / name).rglob("*"))
        return found

    def committed(self) -> None:
        """The run made its first step: what was set aside is dropped."""
        if not self.done:
            self.done = True
            shutil.rmtree(self.backup, ignore_errors=True)

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.committed()
        if self.done:
            self.lock.release()
        else:
            self._undo()

    def _undo(self) -> None:
        """The folder as it was before the start (none at all when the start made it)."""
        self.lock.release()
        if self.created:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            for parent in self.created[1:]:  # empty parents this start made; another run may use one now
                with contextlib.suppress(OSError):
                    parent.rmdir()
            return
        if self.before is None:
            return  # refused before anything was set aside
        for path in sorted(self._listing() - self.before, key=lambda p: len(p.parts), reverse=True):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        for path in self.backup.iterdir():
            target = self.run_dir / path.name
            if target.is_dir() and not path.is_file():
                shutil.rmtree(target)
            os.replace(path, target)
        self.backup.rmdir()


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
