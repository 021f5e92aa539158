"""``eseg train CONFIG [section.key=value ...]``: train from a YAML config (see eseg.engine.trainer)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Overrides may come before or after the options: `eseg train cfg.yaml --resume train.lr=0.1`.
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]
    parser.add_argument("config", help="experiment YAML, e.g. configs/demo.yaml")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted config overrides, e.g. train.lr=0.05 data.crop_size=[256,256]; "
                             "data.dataset.type=folder data.dataset.root=DIR switches the dataset")
    options.add_out(parser, None, "run folder (default: run.out, else runs/<config>, numbered -2, -3... when taken)")
    parser.add_argument("--resume", action="store_true", help="continue the run from OUT/checkpoints/last")
    options.add_overwrite(parser, "the run in an existing run folder (start over in it)")
    parser.add_argument("--benchmark", type=options.positive_int, metavar="STEPS",
                        help="time STEPS training steps on one batch, print images/s and exit (writes nothing)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: run.progress)")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engine import distributed

    overrides = list(args.overrides) + ([] if args.progress is None else [f"run.progress={str(args.progress).lower()}"])
    cfg = load_config(args.config, overrides)
    info = distributed.init_distributed(cfg.train.device)
    try:
        run_dir = choose_run_dir(cfg, args, info)
        cfg.run.out = str(run_dir)
        if args.benchmark is not None:
            return benchmark(cfg, run_dir, args.benchmark)
        return train(cfg, run_dir, args, info)
    finally:
        distributed.cleanup()


def choose_run_dir(cfg, args: argparse.Namespace, info) -> Path:
    """--out, else run.out, else runs/<config> (the latest with --resume, the same with
    --overwrite, else the first free runs/<config>-N); every process gets rank 0's choice."""
    from ..engine import distributed
    from ..engine.rundir import default_run_dir, latest_run, next_free

    if args.out or cfg.run.out:
        return Path(args.out or cfg.run.out)
    base = default_run_dir(args.config)
    chosen = latest_run(base) if args.resume else base if (args.overwrite or args.benchmark) else next_free(base)
    return Path(distributed.broadcast_from_main(str(chosen), info))


def train(cfg, run_dir: Path, args: argparse.Namespace, info) -> int:
    from ..engine.rundir import RunLock, prepare_run_dir
    from ..engine.trainer import Trainer

    lock = RunLock(run_dir) if info.is_main else None
    created = not run_dir.exists()
    if info.is_main:
        prepare_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite)
        message = lock.acquire()
        if message:
            print(f"eseg train: {message}")
    try:
        start = time.perf_counter()
        trainer = Trainer(cfg, run_dir, resume=args.resume)
        metrics = trainer.fit()
        if info.is_main:
            for line in summary_lines(run_dir, metrics, trainer.best_step):
                print(line)
            print(f"training + evaluation took {time.perf_counter() - start:.0f} s")
        return 0
    finally:
        if lock is not None:
            lock.release()
            if created and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()  # a run that failed before writing anything leaves no folder behind


def benchmark(cfg, run_dir: Path, steps: int) -> int:
    import torch

    from ..engine.trainer import Trainer

    trainer = Trainer(cfg, run_dir, hooks=[])
    speed = trainer.benchmark(steps)
    if trainer.info.is_main:
        crop = cfg.data.crop_size or trainer.model.config.train_crop
        print(f"{cfg.model.name}: {speed:.2f} training images/s at crop {list(crop)}, global batch {cfg.train.batch_size}, "
              f"{trainer.info.world_size} process(es), device {trainer.info.device}, {torch.get_num_threads()} threads, "
              f"amp={cfg.train.amp}")
    return 0


def summary_lines(run_dir: Path, metrics: dict, best_step) -> list[str]:
    return [f"Results in {run_dir}/:",
            f"  best checkpoint   {run_dir / 'checkpoints' / 'best'}  (step {best_step}; "
            "eseg.load_model / eseg predict / eseg val take this folder or the run folder)",
            f"  metrics           {run_dir / 'metrics.jsonl'}, {run_dir / 'metrics.csv'}, {run_dir / 'final_metrics.json'}",
            f"  plots             {run_dir / 'curves.png'}, {run_dir / 'per_class_iou.png'}, {run_dir / 'confusion_matrix.png'}",
            f"  overlays          {run_dir / 'overlays'}/",
            f"  predictions       {run_dir / 'predictions'}/",
            "  per-class IoU     " + ", ".join(f"{name} {v['IoU']:.3f}" for name, v in metrics["per_class"].items()),
            f"val mIoU of the best checkpoint (step {best_step}): {metrics['mIoU']:.4f}  "
            f"(pixel accuracy {metrics['aAcc']:.4f})"] + skipped_line(metrics)


def skipped_line(metrics: dict) -> list[str]:
    counts = {k: v for k, v in (metrics.get("skipped_files") or {}).items() if v}
    if not counts:
        return []
    return ["skipped bad files (on_bad_data: skip): " + ", ".join(f"{split} {n}" for split, n in counts.items())
            + "; each is named in a warning above"]
