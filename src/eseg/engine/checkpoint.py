"""The one training-checkpoint format: a folder.

A checkpoint folder is what ``model.save_pretrained`` writes (``config.json`` +
``model.safetensors``, so ``eseg.load_model(folder)`` and ``eseg predict folder`` use it
directly) plus ``train_state.pt``: step, best metric, optimizer, scheduler, EMA, grad scaler and
RNG states. ``train_state.pt`` holds only tensors and plain Python values, so it is read with
``torch.load(weights_only=True)`` and never unpickles code.

Folders are replaced atomically: the new one is written completely into a temporary folder
beside the target, then the old one is renamed aside, the new one renamed into place, and the
old one deleted. A crash between the two renames leaves ``.NAME.old``, which
:func:`find_checkpoint` falls back to.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..paths import STATE_FILE, find_checkpoint, side_paths

__all__ = ["STATE_FILE", "find_checkpoint", "save_checkpoint", "load_train_state", "capture_rng_state",
           "restore_rng_state"]


def save_checkpoint(directory: str | Path, model, train_state: dict) -> Path:
    """Write ``model`` (unwrapped, on any device) and ``train_state`` as the folder ``directory``."""
    directory = Path(directory)
    tmp, old = side_paths(directory)
    if tmp.exists():  # a save interrupted earlier
        shutil.rmtree(tmp)
    if old.exists() and directory.exists():  # a save interrupted after its second rename
        shutil.rmtree(old)
    model.save_pretrained(tmp)
    torch.save(train_state, tmp / STATE_FILE)
    _fsync_dir(tmp)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    _fsync_dir(directory.parent)
    if old.exists():
        shutil.rmtree(old)
    return directory


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (and its files) so a power cut cannot reorder the renames."""
    for file in path.iterdir() if path.is_dir() else ():
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_train_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing; '{directory}' is not an eseg training checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"'{path}' is corrupt or not an eseg train state ({exc}); delete it to start over") from exc


def capture_rng_state() -> dict:
    """Python, NumPy, torch and CUDA generator states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
