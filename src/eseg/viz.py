"""Pictures of masks and metrics: color masks, overlays, legends, training curves and eval charts.

Every function that writes a file writes it atomically (``eseg.fileio``). Plots are drawn on
matplotlib ``Figure`` objects rendered by Agg, never through pyplot, so they work without a display
and leave the caller's matplotlib backend alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import fileio
from .errors import DataError

IGNORE_COLOR = (0, 0, 0)


def _palette_array(palette) -> np.ndarray:
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"a palette is a (num_classes, 3) array of RGB colors, got shape {palette.shape}")
    return palette


def colorize(mask: np.ndarray, palette) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB. Ids outside the palette (e.g. 255 = ignore) are black."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"colorize expects an (H, W) mask, got shape {mask.shape}")
    palette = _palette_array(palette)
    # One extra row for every id the palette does not cover.
    lut = np.concatenate([palette, np.array([IGNORE_COLOR], dtype=np.uint8)])
    ids = mask.astype(np.int64)
    ids = np.where((ids >= 0) & (ids < len(palette)), ids, len(palette))
    return lut[ids]


def overlay(image: np.ndarray, mask: np.ndarray, palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the color mask over a uint8 RGB image; ignored pixels keep the image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay expects an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"image size {image.shape[:2]} differs from mask size {np.asarray(mask).shape}")
    palette = _palette_array(palette)
    colors = colorize(mask, palette).astype(np.float32)
    mask = np.asarray(mask)
    labelled = ((mask >= 0) & (mask < len(palette)))[..., None]
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    return np.where(labelled, np.clip(np.rint(blended), 0, 255), image).astype(np.uint8)


def legend(class_names: Sequence[str], palette, *, columns: int | None = None, swatch: int = 20) -> np.ndarray:
    """A uint8 RGB image listing each class name next to its color."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    palette = _palette_array(palette)
    names = list(class_names)[: len(palette)]
    columns = columns or max(1, math.ceil(len(names) / 20))
    rows = math.ceil(len(names) / columns)
    dpi = 100
    fig = Figure(figsize=(2.6 * columns, 0.1 + rows * swatch * 1.3 / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    ax.axis("off")
    for i, name in enumerate(names):
        col, row = divmod(i, rows)
        color = palette[i] / 255.0
        ax.add_patch(Rectangle((col + 0.03, row + 0.1), 0.15, 0.8, color=color, ec="black", lw=0.5))
        ax.text(col + 0.22, row + 0.5, f"{i} {name}", va="center", fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _save_figure(fig, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    with fileio.atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return out_png


def plot_curves(metrics_jsonl_path: str | Path, out_png: str | Path) -> Path:
    """Plot loss, learning rate and val mIoU against step from a metrics JSONL file.

    Rows carry ``step`` and any of ``loss``, ``lr`` and ``val/mIoU``; a panel is drawn for each key
    that occurs at least once.
    """
    from matplotlib.figure import Figure

    path = Path(metrics_jsonl_path)
    if not path.is_file():
        raise DataError(f"metrics file '{path}' does not exist")
    rows = [r for r in fileio.read_jsonl(path) if "step" in r]
    keys = [k for k in ("loss", "lr", "val/mIoU") if any(k in r for r in rows)]
    fig = Figure(figsize=(4.5 * max(1, len(keys)), 3.5), dpi=100)
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    if not keys:
        axes[0].text(0.5, 0.5, "no loss / lr / val/mIoU rows yet", ha="center", va="center")
        axes[0].axis("off")
    for ax, key in zip(axes, keys):
        points = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if key == "val/mIoU" else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    return _save_figure(fig, out_png)


def plot_per_class_iou(per_class: dict[str, dict], out_png: str | Path, *, title: str = "per-class IoU") -> Path:
    """Horizontal bar chart of the per-class IoU from ``metrics_from_confusion(...)['per_class']``.

    Classes with an undefined IoU (absent from ground truth and prediction) are drawn as "n/a".
    """
    from matplotlib.figure import Figure

    names = list(per_class)
    ious = [per_class[n]["IoU"] for n in names]
    fig = Figure(figsize=(7, 0.6 + 0.28 * len(names)), dpi=100)
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, [0.0 if math.isnan(v) else 100 * v for v in ious], color="tab:blue")
    for yi, v in zip(y, ious):
        ax.text(1 if math.isnan(v) else 100 * v + 1, yi, "n/a" if math.isnan(v) else f"{100 * v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU (%)")
    ax.set_title(title)
    fig.tight_layout()
    return _save_figure(fig, out_png)


def plot_confusion_matrix(confusion, class_names: Sequence[str], out_png: str | Path) -> Path:
    """Row-normalized confusion matrix (rows = ground truth) as a heat map."""
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    n = len(cm)
    size = min(4 + 0.35 * n, 30)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    names = list(class_names)
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (row-normalized)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if normalized[i, j] >= 0.01:
                    color = "white" if normalized[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{normalized[i, j]:.2f}", ha="center", va="center", fontsize=5, color=color)
    fig.tight_layout()
    return _save_figure(fig, out_png)
