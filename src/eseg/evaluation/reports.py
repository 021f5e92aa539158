"""What an evaluation prints and writes: the per-class table (``eseg val``), the results file and
the two charts (``eseg val``'s results.json, the training run's final_metrics.json)."""
from __future__ import annotations

import math
from pathlib import Path

from .. import fileio
from ..paths import CONFUSION_MATRIX, PER_CLASS_IOU

RESULTS_FILE = "results.json"  # eseg val's; a training run writes paths.FINAL_METRICS


def format_table(metrics: dict) -> str:
    """Per-class IoU / Acc / Dice table and the summary line."""
    names = list(metrics["per_class"])
    width = max([len(n) for n in names] + [5])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}  {'Dice':>6}  {'pixels':>12}", "-" * (width + 38)]

    def pct(value: float) -> str:
        return "   n/a" if math.isnan(value) else f"{100 * value:6.2f}"

    for name in names:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}}  {pct(row['IoU'])}  {pct(row['Acc'])}  {pct(row['Dice'])}  {row['pixels']:>12d}")
    lines.append("-" * (width + 38))
    lines.append(
        f"mIoU {pct(metrics['mIoU']).strip()}  aAcc {pct(metrics['aAcc']).strip()}  mAcc {pct(metrics['mAcc']).strip()}  "
        f"fwIoU {pct(metrics['fwIoU']).strip()}  mDice {pct(metrics['mDice']).strip()}  "
        f"({metrics['num_images']} images, {metrics.get('images_per_s')} img/s, mode {metrics['mode']})"
    )
    lines.append("n/a: class absent from both ground truth and prediction; excluded from the means")
    return "\n".join(lines)


def write_report(metrics: dict, out_dir: str | Path, *, extra: dict | None = None, results_file: str = RESULTS_FILE,
                 title: str | None = None) -> dict[str, Path]:
    """``results_file`` (the metrics after ``extra``; NaN written as null), the per-class IoU
    chart (``title``, default naming the mIoU) and the confusion matrix. Returns their paths."""
    from ..viz import plot_confusion_matrix, plot_per_class_iou

    out_dir = Path(out_dir)
    paths = {"results": out_dir / results_file, "iou_chart": out_dir / PER_CLASS_IOU,
             "confusion": out_dir / CONFUSION_MATRIX}
    fileio.write_json(paths["results"], {**(extra or {}), **metrics})
    plot_per_class_iou(metrics["per_class"], paths["iou_chart"],
                       title=title or f"per-class IoU (mIoU {100 * metrics['mIoU']:.2f})")
    plot_confusion_matrix(metrics["confusion_matrix"], list(metrics["per_class"]), paths["confusion"])
    return paths
