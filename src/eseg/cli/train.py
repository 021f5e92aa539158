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
    parser.add_argument("--resume", action="store_true",
                        help="continue the run from OUT/checkpoints/last with its own recorded config (OUT/config.yaml); "
                             "overrides may only extend it: train.steps, train.log_interval, "
                             "train.checkpoint_interval, data.num_workers, eval.*, run.*")
    options.add_overwrite(parser, "the run in an existing run folder (start over in it)")
    parser.add_argument("--benchmark", type=options.positive_int, metavar="STEPS",
                        help="time STEPS training steps on one batch, print images/s and exit (writes nothing)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: run.progress)")


def run(args: argparse.Namespace) -> int:
    from ..engine import distributed

    overrides = list(args.overrides) + ([] if args.progress is None else [f"run.progress={str(args.progress).lower()}"])
    cfg, run_dir, info = resumed_run(args, overrides) if args.resume else new_run(args, overrides)
    try:
        cfg.run.out = str(run_dir)
        if args.benchmark is not None:
            return benchmark(cfg, run_dir, args.benchmark)
        return train(cfg, run_dir, args, info)
    finally:
        distributed.cleanup()


def new_run(args: argparse.Namespace, overrides: list[str]):
    """(config, run folder, process info) of a new run: CONFIG with the overrides."""
    from ..config import load_config
    from ..engine import distributed

    cfg = load_config(args.config, overrides)
    info = distributed.init_distributed(cfg.train.device)
    return cfg, choose_run_dir(cfg.run.out, args, info), info


def resumed_run(args: argparse.Namespace, overrides: list[str]):
    """(config, run folder, process info) of ``--resume``: the run's own recorded config with
    the overrides that extend it (eseg.config.resume_config); CONFIG as given when the folder
    records none. Every process finds the same folder: nothing is created while choosing."""
    from ..config import config_mapping, load_config, resume_config
    from ..engine import distributed
    from ..paths import RUN_CONFIG

    run_dir = choose_run_dir(config_mapping(args.config, overrides)["run"].get("out"), args, None)
    recorded = run_dir / RUN_CONFIG
    if recorded.is_file():
        cfg = resume_config(recorded, args.config, overrides)
    else:
        cfg = load_config(args.config, overrides)
    info = distributed.init_distributed(cfg.train.device)
    if recorded.is_file() and info.is_main:
        extra = f", with {' '.join(overrides)}" if overrides else ""
        print(f"eseg train: resuming {run_dir} with its recorded config {recorded}{extra}", flush=True)
    return cfg, run_dir, info


def choose_run_dir(out: str | None, args: argparse.Namespace, info) -> Path:
    """--out, else run.out, else runs/<config> (the latest with --resume, the same with
    --overwrite, else the first free runs/<config>-N); with ``info``, every process gets rank
    0's choice."""
    from ..engine import distributed
    from ..rundir import default_run_dir, latest_run, next_free

    if args.out or out:
        return Path(args.out or out)
    base = default_run_dir(args.config)
    chosen = latest_run(base) if args.resume else base if (args.overwrite or args.benchmark) else next_free(base)
    return chosen if info is None else Path(distributed.broadcast_from_main(str(chosen), info))


def train(cfg, run_dir: Path, args: argparse.Namespace, info) -> int:
    """Train in ``run_dir``; a run that fails before its first step leaves the folder as it was
    (none at all when this start made it: eseg.rundir.RunStart)."""
    import contextlib

    from ..engine.trainer import Trainer
    from ..rundir import RunStart

    start = RunStart(run_dir, resume=args.resume, overwrite=args.overwrite) if info.is_main else None
    with start or contextlib.nullcontext():
        if start is not None and start.message:
            print(f"eseg train: {start.message}")
        begun = time.perf_counter()
        trainer = Trainer(cfg, run_dir, resume=args.resume, config_path=args.config)
        if start is not None:
            trainer.hooks.insert(0, first_step_hook(start.committed, trainer))  # before any hook can fail
        metrics = trainer.fit()
    if info.is_main:
        for line in summary_lines(run_dir, metrics, trainer.best_step):
            print(line)
        print(f"training + evaluation took {time.perf_counter() - begun:.0f} s")
    return 0


def first_step_hook(then, trainer):
    """A trainer hook calling ``then()`` once the first step of this start is done (built here:
    the hooks module imports torch, which ``eseg train --help`` must not)."""
    from ..engine.hooks import HookBase

    class FirstStep(HookBase):
        def after_step(self) -> None:
            then()

    hook = FirstStep()
    hook.trainer = trainer
    return hook


def benchmark(cfg, run_dir: Path, steps: int) -> int:
    import torch

    from ..engine.trainer import Trainer

    trainer = Trainer(cfg, run_dir, hooks=[])
    speed = trainer.benchmark(steps)
    if trainer.info.is_main:
        crop = cfg.train_crop()
        print(f"{cfg.model.name}: {speed:.2f} training images/s at crop {list(crop)}, global batch {cfg.train.batch_size}, "
              f"{trainer.info.world_size} process(es), device {trainer.info.device}, {torch.get_num_threads()} threads, "
              f"amp={cfg.train.amp}")
    return 0


def summary_lines(run_dir: Path, metrics: dict, best_step) -> list[str]:
    from .. import paths

    def files(*names: str) -> str:
        return ", ".join(str(run_dir / name) for name in names)

    return [f"Results in {run_dir}/:",
            f"  best checkpoint   {run_dir / paths.CHECKPOINTS / 'best'}  (step {best_step}; "
            "eseg.load_model / eseg predict / eseg val take this folder or the run folder)",
            f"  metrics           {files(paths.METRICS_JSONL, paths.METRICS_CSV, paths.FINAL_METRICS)}",
            f"  plots             {files(paths.CURVES, paths.PER_CLASS_IOU, paths.CONFUSION_MATRIX)}",
            f"  overlays          {run_dir / paths.OVERLAYS}/",
            f"  predictions       {run_dir / paths.PREDICTIONS}/",
            "  per-class IoU     " + ", ".join(f"{name} {v['IoU']:.3f}" for name, v in metrics["per_class"].items()),
            f"val mIoU of the best checkpoint (step {best_step}): {metrics['mIoU']:.4f}  "
            f"(pixel accuracy {metrics['aAcc']:.4f})"] + skipped_line(metrics)


def skipped_line(metrics: dict) -> list[str]:
    counts = {k: v for k, v in (metrics.get("skipped_files") or {}).items() if v}
    if not counts:
        return []
    return ["skipped bad files (on_bad_data: skip): " + ", ".join(f"{split} {n}" for split, n in counts.items())
            + "; each is named in a warning above"]
