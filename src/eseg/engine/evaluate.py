"""Evaluation: :func:`evaluate_dataset` (used by training too) and the ``eseg val`` command.

``eseg val TARGET`` where TARGET is a model folder (``save_pretrained`` / a checkpoint folder), a
training run folder (its ``checkpoints/best`` is used) or an experiment config YAML (its run
folder's best checkpoint and its validation dataset are used). It prints a per-class table and
writes ``results.json``, ``per_class_iou.png`` and ``confusion_matrix.png`` into ``--out``.
``--cityscapes-export DIR`` also writes every prediction as a full-resolution labelIds PNG named
``<city>_<seq>_<frame>_pred.png``, the format of the Cityscapes test server and of
cityscapesscripts' ``evalPixelLevelSemanticLabeling``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import fileio
from ..errors import CheckpointError, ConfigError
from ..inference import MODES, Segmenter, load_runner, resolve_model_dir
from ..metrics import SegEvaluator
from .distributed import resolve_device

RESULTS_FILE = "results.json"
IOU_CHART_FILE = "per_class_iou.png"
CONFUSION_FILE = "confusion_matrix.png"


def _collate(items: list[dict]) -> list[dict]:
    return items  # images differ in size: keep them as a list


def evaluate_dataset(
    model,
    dataset,
    *,
    mode: str = "whole",
    batch_size: int = 1,
    device: str | torch.device | None = "cpu",
    progress: bool = True,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    class_names: list[str] | None = None,
    num_workers: int = 0,
    all_reduce: bool | None = None,
    on_prediction: Callable[[int, np.ndarray], None] | None = None,
    **mode_kwargs,
) -> dict:
    """Segment every item of ``dataset`` and score it with :class:`eseg.metrics.SegEvaluator`.

    ``model``: an :class:`eseg.ESeg` (its training/eval state is restored afterwards), a runner or
    a :class:`eseg.Segmenter`. Items are ``{"image": normalized (3, H, W), "mask": (H, W),
    "index": i}`` as eseg datasets give them; ``num_classes``, ``ignore_index`` and
    ``class_names`` default to the dataset's attributes (pass them for a ``Subset``).
    ``mode_kwargs`` go to :class:`Segmenter` (``size``, ``crop``, ``stride``, ``scales``,
    ``flip``). ``on_prediction(index, mask)`` receives each (H, W) prediction, e.g. to export it.
    ``all_reduce`` is passed to :meth:`SegEvaluator.evaluate` (sum over DDP ranks).

    Returns the metrics dict (mIoU, aAcc, mAcc, fwIoU, mDice, per_class, confusion_matrix) plus
    ``num_images``, ``seconds``, ``images_per_s`` and ``mode``.
    """
    num_classes = num_classes if num_classes is not None else dataset.num_classes
    ignore_index = ignore_index if ignore_index is not None else getattr(dataset, "ignore_index", 255)
    class_names = class_names if class_names is not None else list(getattr(dataset, "class_names", []) or []) or None
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, Segmenter):
        if mode_kwargs:
            raise ConfigError(f"pass inference options to the Segmenter, not evaluate_dataset: {sorted(mode_kwargs)}")
        segmenter = model
    else:
        segmenter = Segmenter(model, mode=mode, batch_size=batch_size, device=device, **mode_kwargs)
    if segmenter.num_classes != num_classes:
        raise CheckpointError(f"the model predicts {segmenter.num_classes} classes but the dataset has {num_classes}")
    evaluator = SegEvaluator(num_classes, ignore_index=ignore_index, class_names=class_names)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    bar = _progress_bar(len(dataset), progress)
    start = time.perf_counter()
    count = 0
    try:
        for items in loader:
            logits = segmenter.logits_from_tensors([item["image"] for item in items])
            for item, out in zip(items, logits):
                pred = out.argmax(dim=0).cpu()
                evaluator.process(pred[None], item["mask"][None])
                if on_prediction is not None:
                    on_prediction(int(item["index"]), pred.numpy().astype(np.uint8 if num_classes <= 256 else np.int32))
            count += len(items)
            if bar is not None:
                bar.update(len(items))
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()
    seconds = time.perf_counter() - start
    result = evaluator.evaluate(all_reduce=all_reduce)
    result.update(num_images=count, seconds=round(seconds, 3), images_per_s=round(count / seconds, 3) if seconds > 0 else None,
                  mode=segmenter.mode)
    return result


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="img", dynamic_ncols=True, file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Cityscapes export
# ----------------------------------------------------------------------------------------------


class CityscapesExporter:
    """Writes trainId predictions as labelIds PNGs named ``<city>_<seq>_<frame>_pred.png`` for the
    official evaluator. Predictions have the label's size already (the evaluator checks each one
    against its mask), so they are written as they come."""

    def __init__(self, dataset, out_dir: str | Path, *, overwrite: bool = False) -> None:
        from ..data.cityscapes import CityscapesDataset
        from ..palette import cityscapes_train_id_to_label_id

        if not isinstance(dataset, CityscapesDataset):
            raise ConfigError(f"--cityscapes-export needs a Cityscapes dataset (type: cityscapes), got {type(dataset).__name__}")
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        table = cityscapes_train_id_to_label_id()
        self.lut = np.zeros(256, dtype=np.uint8)  # anything outside the 19 trainIds becomes 0 (unlabeled)
        self.lut[: len(table)] = table
        self.written: list[Path] = []

    def target(self, index: int) -> Path:
        return self.out_dir / f"{self.dataset.sample_name(index)}_pred.png"

    def check_targets(self, indices) -> None:
        if self.overwrite:
            return
        existing = [p for p in (self.target(i) for i in indices) if p.exists()]
        if existing:
            raise ConfigError(
                f"{len(existing)} Cityscapes export file(s) already exist, e.g. '{existing[0]}'; "
                "pass --overwrite to replace them or choose another --cityscapes-export folder"
            )

    def __call__(self, index: int, pred: np.ndarray) -> None:
        path = self.target(index)
        fileio.write_png(path, self.lut[np.clip(pred, 0, 255).astype(np.uint8)])
        self.written.append(path)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


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


def write_report(metrics: dict, out_dir: str | Path, *, extra: dict | None = None) -> dict[str, Path]:
    """results.json (NaN written as null), the per-class IoU chart and the confusion matrix."""
    from ..viz import plot_confusion_matrix, plot_per_class_iou

    out_dir = Path(out_dir)
    paths = {"results": out_dir / RESULTS_FILE, "iou_chart": out_dir / IOU_CHART_FILE, "confusion": out_dir / CONFUSION_FILE}
    fileio.write_json(paths["results"], {**(extra or {}), **metrics})
    plot_per_class_iou(metrics["per_class"], paths["iou_chart"], title=f"per-class IoU (mIoU {100 * metrics['mIoU']:.2f})")
    plot_confusion_matrix(metrics["confusion_matrix"], list(metrics["per_class"]), paths["confusion"])
    return paths


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``eseg val`` and ``eseg predict``."""
    group = parser.add_argument_group("inference")
    group.add_argument("--mode", choices=MODES, default="whole", help="whole image, sliding window, or multi-scale+flip TTA")
    group.add_argument("--size", nargs="+", metavar="SIZE",
                       help="resize to H W before inference ('eval': the model's eval_size); logits are resized back")
    group.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide mode window (default: the model's train crop)")
    group.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide mode stride (default: 2/3 of the crop)")
    group.add_argument("--scales", type=float, nargs="+", help="scales to average (tta default: 0.5 0.75 1.0 1.25 1.5 1.75)")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="also average horizontally flipped inputs (tta default: on)")
    group.add_argument("--batch-size", type=int, default=1)
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--amp", action="store_true", help="fp16 autocast on CUDA")


def segmenter_options(args: argparse.Namespace) -> dict:
    """Segmenter keyword arguments from the shared inference options."""
    size = None
    if args.size:
        if args.size == ["eval"]:
            size = "eval"
        elif len(args.size) == 2 and all(s.isdigit() for s in args.size):
            size = (int(args.size[0]), int(args.size[1]))
        else:
            raise ConfigError(f"--size takes H W or 'eval', got {' '.join(args.size)}")
    return {"mode": args.mode, "size": size, "crop": args.crop, "stride": args.stride, "scales": args.scales,
            "flip": args.flip, "batch_size": args.batch_size}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="model folder, training run folder, or experiment config YAML")
    parser.add_argument("--weights", help="model folder to evaluate instead of the one TARGET implies")
    data = parser.add_argument_group("data (default: the experiment config's validation set)")
    data.add_argument("--data", help="dataset spec YAML (e.g. {type: cityscapes, root: DIR})")
    data.add_argument("--data-type", help="dataset type, e.g. cityscapes, ade20k, folder, synthetic")
    data.add_argument("--data-root", help="dataset root folder")
    data.add_argument("--split", help="split to evaluate (default: val)")
    data.add_argument("--max-images", type=int, help="evaluate only the first N images")
    data.add_argument("--num-workers", type=int, default=2)
    add_inference_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--out", default="runs/val", help="folder for results.json and the charts (default: runs/val)")
    out.add_argument("--cityscapes-export", metavar="DIR", help="write <city>_<seq>_<frame>_pred.png labelIds PNGs here")
    out.add_argument("--overwrite", action="store_true", help="replace existing results / export files")
    out.add_argument("--no-progress", action="store_true")


def _resolve_target(args: argparse.Namespace) -> tuple[Path, dict | None, str | None]:
    """(model path, dataset spec from the config or None, split from the config or None)."""
    target = Path(args.target)
    if not (target.is_file() and target.suffix in (".yaml", ".yml")):
        return resolve_model_dir(args.weights or target), None, None
    from ..config import load_config, run_dir_of

    cfg = load_config(target)
    spec = cfg["data"]["val_dataset"] or cfg["data"]["dataset"]
    return resolve_model_dir(args.weights or run_dir_of(cfg, target)), spec, cfg["data"]["val_split"]


def _dataset_spec(args: argparse.Namespace, config_spec: dict | None) -> dict:
    if args.data:
        from ..data import load_dataset_spec

        spec = load_dataset_spec(args.data)
    elif args.data_type or args.data_root:
        spec = dict(config_spec or {}) if args.data_type is None else {}
        if args.data_type:
            spec["type"] = args.data_type
        if args.data_root:
            spec["root"] = args.data_root
    elif config_spec is not None:
        spec = dict(config_spec)
    else:
        raise ConfigError("say which data to evaluate on: --data SPEC.yaml, or --data-type TYPE --data-root DIR "
                          "(a model folder does not record its dataset)")
    return spec


def run(args: argparse.Namespace) -> int:
    from ..data import build_dataset
    from ..data.transforms import build_eval_transform

    model_path, config_spec, config_split = _resolve_target(args)
    spec = _dataset_spec(args, config_spec)
    split = args.split or config_split or "val"
    device = resolve_device(args.device)
    runner = load_runner(model_path, "torch", device=device)
    segmenter = Segmenter(runner, amp=args.amp, **segmenter_options(args))
    dataset = build_dataset(spec, split, transform=build_eval_transform(mean=runner.mean, std=runner.std))
    out_dir = Path(args.out)
    if (out_dir / RESULTS_FILE).exists() and not args.overwrite:
        raise ConfigError(f"'{out_dir / RESULTS_FILE}' already exists; pass --overwrite to replace it or choose another --out")
    indices = list(range(len(dataset) if args.max_images is None else min(args.max_images, len(dataset))))
    subset = dataset if len(indices) == len(dataset) else torch.utils.data.Subset(dataset, indices)
    exporter = None
    if args.cityscapes_export:
        exporter = CityscapesExporter(dataset, args.cityscapes_export, overwrite=args.overwrite)
        exporter.check_targets(indices)
    print(f"evaluating {model_path} on {spec.get('type')} [{split}], {len(indices)} images, {segmenter}", file=sys.stderr)
    metrics = evaluate_dataset(
        segmenter, subset, num_classes=dataset.num_classes, ignore_index=dataset.ignore_index,
        class_names=list(dataset.class_names), batch_size=args.batch_size, num_workers=args.num_workers,
        progress=not args.no_progress, all_reduce=False, on_prediction=exporter,
    )
    print(format_table(metrics))
    extra = {"model": str(model_path), "data": spec, "split": split, "inference": repr(segmenter)}
    paths = write_report(metrics, out_dir, extra=extra)
    print(f"wrote {paths['results']}, {paths['iou_chart']}, {paths['confusion']}")
    if exporter is not None:
        print(f"wrote {len(exporter.written)} Cityscapes labelIds PNGs to {exporter.out_dir}")
    return 0
