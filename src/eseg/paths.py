"""File layouts (a saved model, a checkpoint, a training run folder) and resolving model paths.

A run folder (``eseg train``) holds ``config.yaml``, ``checkpoints/{last,best}`` and the
reports (``RUN_OUTPUTS``); its default name, lock and ``--overwrite`` are :mod:`eseg.rundir`'s.
A checkpoint folder is a saved model (``config.json`` + ``model.safetensors``) plus
``train_state.pt``; after a crash between the two renames of an atomic replace, the complete
copy is ``.NAME.old`` (see :mod:`eseg.engine.checkpoint`). Torch-free.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError
from .export.formats import sniff_graph_format

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
RUN_CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
# What a training run folder holds besides RUN_CONFIG and CHECKPOINTS (eseg train writes them).
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CURVES = "curves.png"
OVERLAYS = "overlays"
PREDICTIONS = "predictions"
FINAL_METRICS = "final_metrics.json"
PER_CLASS_IOU = "per_class_iou.png"
CONFUSION_MATRIX = "confusion_matrix.png"
TENSORBOARD = "tb"
# Everything a run writes: `eseg train --overwrite` removes exactly these (eseg.rundir).
RUN_OUTPUTS = (RUN_CONFIG, METRICS_JSONL, METRICS_CSV, CURVES, OVERLAYS, CHECKPOINTS, PREDICTIONS, FINAL_METRICS,
               PER_CLASS_IOU, CONFUSION_MATRIX, TENSORBOARD)
EXPORT_SUFFIXES = (".onnx", ".xml")


def side_paths(directory: Path) -> tuple[Path, Path]:
    """The temporary and the previous copy of a checkpoint folder during an atomic replace."""
    return directory.parent / f".{directory.name}.tmp", directory.parent / f".{directory.name}.old"


def find_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint folder at ``directory`` (or its ``.old`` copy after a crash)."""
    directory = Path(directory)
    for candidate in (directory, side_paths(directory)[1]):
        if all((candidate / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE, STATE_FILE)):
            return candidate
    return None


def best_checkpoint(run_dir: str | Path) -> Path | None:
    return find_checkpoint(Path(run_dir) / CHECKPOINTS / "best")


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_CONFIG).is_file() or (Path(path) / CHECKPOINTS).is_dir()


def resolve_model_path(path: str | Path) -> Path:
    """What a user may name as a model, resolved to a loadable path:

    - an exported graph (``.onnx``, ``.xml``, or a file holding one whatever its name): itself;
    - a saved model folder, or its ``config.json`` / ``model.safetensors`` / ``train_state.pt``:
      the folder;
    - a training run folder: its best checkpoint;
    - a Hugging Face Hub repo id ``org/name``: itself.
    """
    if not Path(path).exists() and looks_like_repo_id(str(path)):
        return Path(str(path))  # a Hugging Face Hub repo id, fetched by eseg.load_model
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in EXPORT_SUFFIXES or sniff_graph_format(path):  # a graph, whatever its name
            return path
        if path.name in (CONFIG_FILE, WEIGHTS_FILE, STATE_FILE):
            path = path.parent
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return path
    best = best_checkpoint(path) if path.is_dir() else None
    if best is not None:
        return best
    if path.is_dir() and is_run_dir(path):
        raise CheckpointError(f"run folder '{path}' has no complete {CHECKPOINTS}/best yet; "
                              "has the run validated once? (eseg train writes it at each evaluation)")
    what = "does not exist" if not path.exists() else "is not a model"
    raise CheckpointError(
        f"'{path}' {what}: expected a model folder with {CONFIG_FILE} and {WEIGHTS_FILE} (written by save_pretrained "
        f"or training), a training run folder holding {CHECKPOINTS}/best, or an exported .onnx / .xml file")


def run_dir_of_model(model_path: Path) -> Path | None:
    """The training run folder a model belongs to: the run holding a checkpoint
    (``RUN/checkpoints/best``) or an exported graph written into it (``RUN/model.onnx``)."""
    for parent in model_path.parents:
        if parent.name == CHECKPOINTS and (parent.parent / RUN_CONFIG).is_file():
            return parent.parent
    return model_path.parent if model_path.is_file() and (model_path.parent / RUN_CONFIG).is_file() else None


def looks_like_repo_id(text: str) -> bool:
    """``org/name`` that is no existing path (a Hugging Face Hub model id)."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~")) and not Path(text).exists()
