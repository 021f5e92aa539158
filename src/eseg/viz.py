"""Pictures of masks and metrics: color masks, overlays, legends, captioned panels, training curves
and eval charts.

Every function that writes a file writes it atomically (``eseg.fileio``). Plots are drawn on
matplotlib ``Figure`` objects rendered by Agg, never through pyplot, so they work without a display
and leave the caller's matplotlib backend alone.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

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
    mask = _as_mask(mask, "colorize")
    palette = _palette_array(palette)
    ids = _small_ids(mask, len(palette))
    if ids is not None:  # a lookup in a 256-entry table: every uint8 id has a colour
        return np.take(color_table(palette), ids, axis=0)
    # One extra row for every id the palette does not cover.
    lut = np.concatenate([palette, np.array([IGNORE_COLOR], dtype=np.uint8)])
    ids = mask.astype(np.int64)
    ids = np.where((ids >= 0) & (ids < len(palette)), ids, len(palette))
    return lut[ids]


def _as_mask(mask, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what} expects an (H, W) mask, got shape {mask.shape}")
    return mask


def _small_ids(mask: np.ndarray, num_colors: int) -> np.ndarray | None:
    """``mask`` as uint8 ids with every id the palette does not cover mapped to one it does not
    cover either (so it stays uncoloured), or None when that cannot be done in uint8."""
    if mask.dtype == np.uint8:
        return mask
    if num_colors > 255 or mask.dtype.kind not in "iub":
        return None
    return np.where((mask >= 0) & (mask < num_colors), mask, num_colors).astype(np.uint8)


def color_table(palette) -> np.ndarray:
    """(256, 3) uint8: the colour of every uint8 class id; ids past the palette are IGNORE_COLOR."""
    palette = _palette_array(palette)[:256]
    table = np.tile(np.array(IGNORE_COLOR, dtype=np.uint8), (256, 1))
    table[: len(palette)] = palette
    return table


def blend_tables(palette, alpha: float) -> np.ndarray:
    """(3, 256 ids, 256 values) uint8: channel c of a pixel of value v under class id k is
    ``tables[c, k, v]`` = rint((1 - alpha) * v + alpha * colour), computed in float32 as
    :func:`overlay` always has; ids past the palette keep v."""
    palette = _palette_array(palette)[:256]
    values = np.arange(256, dtype=np.float32)
    colors = palette.astype(np.float32)
    tables = np.tile(np.arange(256, dtype=np.uint8), (3, 256, 1))
    for channel in range(3):
        blended = (1.0 - alpha) * values[None, :] + alpha * colors[:, channel, None]
        tables[channel, : len(palette)] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return tables


def overlay(image: np.ndarray, mask: np.ndarray, palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the color mask over a uint8 RGB image; ignored pixels keep the image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay expects an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"image size {image.shape[:2]} differs from mask size {np.asarray(mask).shape}")
    palette = _palette_array(palette)
    mask = np.asarray(mask)
    ids = _small_ids(mask, len(palette))
    if ids is not None:  # per channel, one lookup of (id, value) in a 64k table: no float pass
        tables = blend_tables(palette, alpha)
        rows = ids.astype(np.uint16) << 8
        out = np.empty_like(image)
        for channel in range(3):
            np.take(tables[channel].reshape(-1), rows | image[..., channel], out=out[..., channel])
        return out
    colors = colorize(mask, palette).astype(np.float32)
    labelled = ((mask >= 0) & (mask < len(palette)))[..., None]
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    return np.where(labelled, np.clip(np.rint(blended), 0, 255), image).astype(np.uint8)


def save_color_mask(mask: np.ndarray, palette, out_png: str | Path, *, compress_level: int = fileio.PNG_LEVEL) -> Path:
    """The colour mask as a palette PNG (mode 'P': the class ids and the palette; viewers show
    the colours, and the file is about a third of an RGB PNG's size), written atomically. Masks
    whose ids do not fit a byte are written as RGB."""
    mask = _as_mask(mask, "save_color_mask")
    palette = _palette_array(palette)
    ids = _small_ids(mask, len(palette))
    if ids is None:
        fileio.write_png(out_png, colorize(mask, palette), compress_level=compress_level)
    else:
        fileio.write_png(out_png, ids, palette=color_table(palette), compress_level=compress_level)
    return Path(out_png)


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


# --------------------------------------------------------------------------------------------
# captioned panels (PIL: exact pixels, the tiles are pasted unchanged)

_WHITE = (255, 255, 255)


@functools.lru_cache(maxsize=32)
def _font(size: int):
    import matplotlib  # ships DejaVu Sans, so captions look the same on every machine
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size)


def _text_width(text: str, size: int) -> int:
    left, _, right, _ = _font(size).getbbox(text)
    return int(math.ceil(right - left))


def _fit_text(text: str, size: int, width: int) -> str:
    """``text``, cut with an ellipsis where it would not fit ``width`` pixels (very narrow tiles)."""
    if _text_width(text, size) <= width:
        return text
    while text and _text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


class PanelLayout(NamedTuple):
    """Where ``panel`` puts things: tile i's top-left corner is ``origins[i]`` = (y, x)."""

    font_px: int
    caption_h: int
    gap: int
    origins: tuple[tuple[int, int], ...]
    width: int
    height: int  # without the legend strip


def panel_layout(shapes: Sequence[tuple[int, int]], captions: Sequence[str]) -> PanelLayout:
    """Geometry of a panel of tiles of (H, W) ``shapes``: the caption font grows with the widest
    tile (12 px at 128 wide, 64 px at 2048) and shrinks only as far as needed to fit each tile."""
    widest = max(w for _, w in shapes)
    font_px = max(12, round(widest / 32))
    for caption, (_, w) in zip(captions, shapes):
        while font_px > 10 and _text_width(caption, font_px) > w - 4:
            font_px -= 1
    caption_h, gap = round(font_px * 1.7), max(4, font_px // 2)
    origins, x = [], gap
    for _, w in shapes:
        origins.append((caption_h, x))
        x += w + gap
    height = caption_h + max(h for h, _ in shapes) + gap
    return PanelLayout(font_px, caption_h, gap, tuple(origins), x, height)


def present_classes(*masks: np.ndarray, num_classes: int) -> list[int]:
    """Sorted class ids that occur in any of ``masks`` (ignore and out-of-range ids dropped)."""
    ids = np.unique(np.concatenate([np.unique(np.asarray(m)).ravel() for m in masks])) if masks else []
    return [int(i) for i in ids if 0 <= i < num_classes]


def _legend_entries(names, palette, classes, font_px: int, width: int, gap: int):
    """(entries, column width, columns, row height) of a legend strip ``width`` wide."""
    entries = [(names[i] if i < len(names) else str(i), tuple(int(c) for c in palette[i])) for i in classes]
    swatch = font_px
    col_w = max(swatch + font_px // 2 + _text_width(n, font_px) for n, _ in entries) + font_px
    columns = max(1, min(len(entries), (width - 2 * gap) // col_w))
    return entries, col_w, columns, round(font_px * 1.6)


def _draw_legend(draw, entries, top: int, left: int, col_w: int, columns: int, row_h: int, font_px: int) -> None:
    font = _font(font_px)
    for k, (name, color) in enumerate(entries):
        row, col = divmod(k, columns)
        x, y = left + col * col_w, top + row * row_h
        pad = (row_h - font_px) // 2
        draw.rectangle((x, y + pad, x + font_px, y + pad + font_px), fill=color, outline=(60, 60, 60))
        draw.text((x + font_px + font_px // 2, y + row_h // 2), name, font=font, fill=(0, 0, 0), anchor="lm")


def panel(tiles: Sequence[tuple[str, np.ndarray]], *, legend: tuple[Sequence[str], object] | None = None,
          legend_classes: Sequence[int] | None = None) -> np.ndarray:
    """Tiles side by side on white, each under its caption, e.g. ``[("image", img), ("ground
    truth", overlay(img, gt, pal)), ("prediction", overlay(img, pred, pal))]`` -> uint8 RGB.

    ``legend=(class_names, palette)`` adds a strip of colour swatches and names below the tiles:
    the classes ``legend_classes`` (e.g. ``present_classes(gt, pred, num_classes=...)``) or, when
    that is None, every class of the palette. Tile pixels are copied unchanged (see ``panel_layout``).
    """
    from PIL import Image, ImageDraw

    if not tiles:
        raise ValueError("panel needs at least one (caption, image) tile")
    for caption, image in tiles:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            raise ValueError(f"tile {caption!r} must be an (H, W, 3) uint8 RGB array")
    layout = panel_layout([t.shape[:2] for _, t in tiles], [c for c, _ in tiles])
    width, legend_h, legend_parts = layout.width, 0, None
    if legend is not None:
        names, palette = list(legend[0]), _palette_array(legend[1])
        classes = range(len(palette)) if legend_classes is None else [c for c in legend_classes if 0 <= c < len(palette)]
        if classes:
            legend_font = max(11, round(layout.font_px * 0.85))
            legend_parts = _legend_entries(names, palette, classes, legend_font, width, layout.gap)
            entries, col_w, columns, row_h = legend_parts
            width = max(width, col_w + 2 * layout.gap)  # a tiny panel still shows whole names
            legend_h = math.ceil(len(entries) / columns) * row_h + layout.gap
    canvas = Image.new("RGB", (width, layout.height + legend_h), _WHITE)
    draw = ImageDraw.Draw(canvas)
    for (caption, image), (y, x) in zip(tiles, layout.origins):
        canvas.paste(Image.fromarray(image), (x, y))
        caption = _fit_text(caption, layout.font_px, image.shape[1] - 4)
        draw.text((x + image.shape[1] // 2, layout.caption_h // 2), caption, font=_font(layout.font_px),
                  fill=(0, 0, 0), anchor="mm")
    if legend_parts is not None:
        entries, col_w, columns, row_h = legend_parts
        _draw_legend(draw, entries, layout.height, layout.gap, col_w, columns, row_h, legend_font)
    return np.asarray(canvas, dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# plots (matplotlib Figure + Agg, never pyplot)


def save_figure(fig, out_png: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically, trimmed to its contents."""
    out_png = Path(out_png)
    with fileio.atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return out_png




def lr_series(rows: Sequence[dict], lr_per_step: Sequence[float] | None = None) -> tuple[list[int], list[float]]:
    """(steps, lrs) for the lr panel. ``lr_per_step[i]`` is the lr of optimizer step i + 1 (the
    1-based ``step`` of the metrics rows), so every step, the warmup included, is drawn; without
    it, the lr of the logged rows (one per log interval)."""
    if lr_per_step is not None and len(lr_per_step):
        return list(range(1, len(lr_per_step) + 1)), [float(v) for v in lr_per_step]
    points = [(r["step"], r["lr"]) for r in rows if r.get("lr") is not None]
    return [s for s, _ in points], [float(v) for _, v in points]


def plot_curves(metrics_jsonl_path: str | Path, out_png: str | Path, *,
                lr_per_step: Sequence[float] | None = None) -> Path:
    """Plot loss, learning rate and val mIoU against step from a metrics JSONL file.

    Rows carry ``step`` and any of ``loss``, ``lr`` and ``val/mIoU``; a panel is drawn for each
    that occurs at least once. Pass ``lr_per_step`` (see ``lr_series``) to draw the lr of every
    step rather than one point per log interval.
    """
    from matplotlib.figure import Figure

    path = Path(metrics_jsonl_path)
    if not path.is_file():
        raise DataError(f"metrics file '{path}' does not exist")
    rows = [r for r in fileio.read_jsonl(path) if "step" in r]
    series = {k: ([r["step"] for r in rows if r.get(k) is not None], [r[k] for r in rows if r.get(k) is not None])
              for k in ("loss", "val/mIoU")}
    series["lr"] = lr_series(rows, lr_per_step)
    keys = [k for k in ("loss", "lr", "val/mIoU") if series[k][0]]
    fig = Figure(figsize=(4.5 * max(1, len(keys)), 3.5), dpi=100)
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    if not keys:
        axes[0].text(0.5, 0.5, "no loss / lr / val/mIoU rows yet", ha="center", va="center")
        axes[0].axis("off")
    last = max([1] + [max(series[k][0]) for k in keys])
    for ax, key in zip(axes, keys):
        steps, values = series[key]
        ax.set_xlim(0, last * 1.02)  # one step axis for all panels, so they line up by eye
        ax.plot(steps, values, marker="o" if key == "val/mIoU" else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_title("lr (every step)" if key == "lr" and lr_per_step is not None and len(lr_per_step) else key)
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    return save_figure(fig, out_png)


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
    return save_figure(fig, out_png)


def normalized_confusion(confusion) -> np.ndarray:
    """Row-normalise a (C, C) confusion matrix (rows = ground truth): entry (i, j) is the share
    of class i's pixels predicted as j, so each row sums to 1. A class with no ground-truth
    pixels has no shares: its row is NaN, not zeros."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {cm.shape}")
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, cm / totals, np.nan)


def _confusion_sizes(n: int) -> tuple[float, float, float | None]:
    """(label pt, cell inches, value pt or None): labels 10 pt up to 30 classes, down to 8 pt at
    150; cells as tall as a label line; values printed only while they fit at >= 8 pt."""
    label_pt = 10.0 if n <= 30 else max(8.0, 10.0 - 2.0 * (n - 30) / 120)
    if n <= 30:
        value_pt = 10.0 if n <= 12 else 8.5
        return label_pt, max(0.5 if n <= 12 else 0.42, label_pt * 1.5 / 72), value_pt
    return label_pt, label_pt * 1.45 / 72, None


def _write_cell_values(ax, shares: np.ndarray, norm, value_pt: float) -> None:
    # Percent without decimals keeps a cell's text short; shares under 0.5% stay blank,
    # except on the diagonal where even 0 says something.
    for i, j in zip(*np.nonzero(~np.isnan(shares))):
        value = 100 * shares[i, j]
        if round(value) == 0 and i != j:
            continue
        color = "white" if norm(shares[i, j]) > 0.6 else "black"
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=value_pt, color=color)


def plot_confusion_matrix(confusion, class_names: Sequence[str], out_png: str | Path) -> Path:
    """Row-normalised confusion matrix (rows = ground truth) as a heat map with a colour bar.

    Sizes scale with the class count so every name stays readable up to 150 classes; cell values
    (percent of the row) are printed up to 30 classes. Classes without ground-truth pixels are
    drawn grey and their names marked "(no GT)".
    """
    import matplotlib
    from matplotlib import colors
    from matplotlib.figure import Figure

    shares = normalized_confusion(confusion)
    n = len(shares)
    names = [str(c) for c in class_names][:n] + [str(i) for i in range(len(class_names), n)]
    missing = np.isnan(shares[:, 0]) if n else np.zeros(0, bool)
    label_pt, cell, value_pt = _confusion_sizes(n)
    side = max(3.0, n * cell)
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    ax = fig.add_axes((0.0, 0.0, side / (side + 1.2), 1.0))
    cax = fig.add_axes((side / (side + 1.2) + 0.15 / (side + 1.2), 0.0, 0.25 / (side + 1.2), 1.0))
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)  # small confusions stay visible
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#c8c8c8")
    image = ax.imshow(np.ma.masked_invalid(shares), cmap=cmap, norm=norm, interpolation="nearest")
    bar = fig.colorbar(image, cax=cax)
    bar.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0], labels=["0", "1%", "5%", "10%", "25%", "50%", "75%", "100%"])
    bar.ax.tick_params(labelsize=max(label_pt, 0.5 * side, 9))
    bar.set_label("share of the ground-truth class's pixels", fontsize=max(label_pt, 0.6 * side, 10))
    ylabels = [f"{name} (no GT)" if miss else name for name, miss in zip(names, missing)]
    ax.set_xticks(range(n), names, rotation=90, fontsize=label_pt)
    ax.set_yticks(range(n), ylabels, fontsize=label_pt)
    for tick, miss in zip(ax.get_yticklabels(), missing):
        tick.set_color("#888888" if miss else "black")
    if n > 30:  # faint guides every 10 classes help follow a row across a big matrix
        for k in range(10, n, 10):
            ax.axhline(k - 0.5, color="#b0b0b0", lw=0.6)
            ax.axvline(k - 0.5, color="#b0b0b0", lw=0.6)
    head_pt = max(12.0, min(20.0, 0.8 * side))  # titles grow with the figure to read in a thumbnail
    ax.set_xlabel("predicted class", fontsize=head_pt)
    ax.set_ylabel("ground-truth class", fontsize=head_pt)
    note = "; grey rows: no ground-truth pixels" if missing.any() else ""
    ax.set_title(f"Confusion matrix, row-normalised: each row (ground-truth class) sums to 100%\n"
                 f"cell (i, j) = % of class i's pixels predicted as class j{note}", fontsize=head_pt, loc="left")
    if value_pt is not None:
        _write_cell_values(ax, shares, norm, value_pt)
    return save_figure(fig, out_png)
