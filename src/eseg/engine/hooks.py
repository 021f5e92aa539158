"""Trainer hooks (detectron2's pattern): each does one thing around the training loop.

A hook has ``before_train``, ``before_step``, ``after_step``, ``after_train``, ``on_log(row)``
(every metrics row the trainer logs) and ``close`` (always called, also after an error).
:func:`default_hooks` builds the list ``eseg train`` uses, in this order: header, metrics file,
TensorBoard, precise BN, evaluation (+ best checkpoint + pictures), last checkpoint,
final report, MLflow.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .. import fileio
from ..config import save_config
from ..errors import ConfigError, ESegError


class HookBase:
    trainer = None  # set by the Trainer

    def before_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_train(self) -> None: ...

    def on_log(self, row: dict) -> None: ...

    def close(self) -> None: ...


class RunHeader(HookBase):
    """Writes config.yaml and prints one screen about the run before the first step."""

    def before_train(self) -> None:
        t = self.trainer
        if not t.info.is_main:
            return
        t.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(t.cfg, t.run_dir / "config.yaml")
        for line in header_lines(t):
            print(line, flush=True)


def header_lines(trainer) -> list[str]:
    from ..flops import count_macs, count_params

    cfg, model = trainer.cfg, trainer.model
    crop = tuple(cfg.data.crop_size or model.config.train_crop)
    gmacs = count_macs(model, crop) / 1e9
    precision = ("fp16 autocast" if trainer.info.device.type == "cuda" else "bf16 autocast") if cfg.train.amp else "fp32"
    return [
        f"eseg train: {cfg.model.name} ({model.config.arch}, backbone {model.config.backbone}), "
        f"{count_params(model) / 1e6:.2f} M params, {gmacs:.2f} GMACs at the {crop[0]}x{crop[1]} train crop",
        f"  data     {cfg.data.dataset.get('type')}: {len(trainer.train_set)} train / {len(trainer.val_set)} val images, "
        f"{trainer.train_set.num_classes} classes",
        f"  device   {trainer.info.device} x {trainer.info.world_size} process(es), {precision}, "
        f"global batch {cfg.train.batch_size}, {cfg.train.steps} steps (from step {trainer.step})",
        f"  run      {trainer.run_dir}",
    ]


class MetricsFile(HookBase):
    """Logs the training loss every ``log_interval`` steps into ``metrics.jsonl`` (and a CSV
    copy at each evaluation and at the end); rank 0 only. Rows logged after the last checkpoint
    of a killed run are dropped on resume, so the file matches the resumed run exactly."""

    def __init__(self, run_dir: Path, interval: int) -> None:
        self.jsonl, self.csv, self.interval = run_dir / "metrics.jsonl", run_dir / "metrics.csv", interval
        self._handle = None
        self._window: list[float] = []
        self._busy = 0.0  # seconds spent in training steps of the window (evaluation excluded)
        self._step_start = 0.0

    def before_train(self) -> None:
        if not self.trainer.info.is_main:
            return
        step = self.trainer.step
        kept = [row for row in self.rows() if row.get("step", 0) <= step]
        fileio.write_text(self.jsonl, "".join(json.dumps(row) + "\n" for row in kept))
        self._handle = open(self.jsonl, "a", encoding="utf-8")

    def rows(self) -> list[dict]:
        return fileio.read_jsonl(self.jsonl) if self.jsonl.is_file() else []

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        t = self.trainer
        self._busy += time.perf_counter() - self._step_start
        self._window.append(t.last_loss)
        if t.step % self.interval == 0 or t.step == t.cfg.train.steps:
            speed = len(self._window) * t.cfg.train.batch_size / max(self._busy, 1e-9)
            epoch = t.step // max(1, len(t.train_set) // t.cfg.train.batch_size)
            t.log({"step": t.step, "epoch": epoch, "loss": sum(self._window) / len(self._window), "lr": t.last_lr,
                   "images_per_s": round(speed, 3), **loss_terms(t)})
            self._window, self._busy = [], 0.0

    def on_log(self, row: dict) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(row) + "\n")
            self._handle.flush()

    def write_csv(self) -> None:
        if not self.trainer.info.is_main:
            return
        rows = self.rows()
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns and not isinstance(row[k], (dict, list))]
        lines = [",".join(columns)] + [",".join("" if row.get(c) is None else str(row[c]) for c in columns) for row in rows]
        fileio.write_text(self.csv, "\n".join(lines) + "\n")

    def after_train(self) -> None:
        self.write_csv()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def loss_terms(trainer) -> dict:
    """The last step's unweighted loss terms (loss/ce, loss/dice...), when there are several."""
    terms = getattr(trainer.criterion, "last_terms", None) or {}
    if len(terms) < 2:
        return {}
    return {f"loss/{name}": float(value) for name, value in terms.items()}


class TensorBoardLogger(HookBase):
    """Every logged row as TensorBoard scalars in ``run_dir/tb`` (rank 0)."""

    def __init__(self, run_dir: Path) -> None:
        self.log_dir, self.writer = run_dir / "tb", None

    def before_train(self) -> None:
        if self.trainer.info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.trainer.step or None)

    def on_log(self, row: dict) -> None:
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key if "/" in key else f"train/{key}", value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowLogger(HookBase):
    """Params, every logged row as metrics, and the final report as artifacts, in MLflow."""

    def __init__(self, tracking_uri: str, run_name: str) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ConfigError(f"run.mlflow is set but mlflow is not installed: pip install mlflow ({exc})") from exc
        self.mlflow, self.uri, self.run_name, self.active = mlflow, tracking_uri, run_name, False

    def before_train(self) -> None:
        if not self.trainer.info.is_main:
            return
        if "://" not in self.uri or self.uri.startswith("file:"):  # a local folder, asked for by name
            import os

            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.uri = self.uri if self.uri.startswith("file:") else Path(self.uri).resolve().as_uri()
        self.mlflow.set_tracking_uri(self.uri)
        self.mlflow.start_run(run_name=self.run_name)
        self.active = True
        flat = _flatten(self.trainer.cfg.to_dict())
        self.mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})

    def on_log(self, row: dict) -> None:
        if self.active:
            metrics = {k.replace("/", "_"): float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
            self.mlflow.log_metrics(metrics, step=int(row["step"]))

    def after_train(self) -> None:
        if self.active:
            for name in ("final_metrics.json", "curves.png", "per_class_iou.png", "confusion_matrix.png"):
                path = self.trainer.run_dir / name
                if path.is_file():
                    self.mlflow.log_artifact(str(path))

    def close(self) -> None:
        if self.active:
            self.mlflow.end_run(status="FINISHED" if sys.exc_info()[0] is None else "FAILED")
            self.active = False


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "dataset":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class PreciseBN(HookBase):
    """Before every evaluation (and so before the final checkpoint), recompute the evaluated
    model's BN statistics over ``num_batches`` training batches drawn with their own seed, so
    the training order and its random streams are untouched (resume stays exact)."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches

    def after_step(self) -> None:
        t = self.trainer
        if not t.eval_due():
            return
        from .bn import recompute_bn_statistics

        loader = t.train_loader(start_step=t.step, seed=t.cfg.train.seed + 1_000_003)
        batches = iter(loader)
        recompute_bn_statistics(t.eval_model, (next(batches) for _ in range(self.num_batches)), t.info.device)
        del batches, loader


class Evaluation(HookBase):
    """Validates at every ``eval.interval`` and at the last step: logs the metrics, keeps the
    best, saves ``checkpoints/best`` when it improves, and refreshes the curves and panels."""

    def after_step(self) -> None:
        t = self.trainer
        if not t.eval_due():
            return
        t.sync_buffers()
        panels = t.run_dir / "overlays" / f"step_{t.step:06d}"
        metrics = t.evaluate(panels=panels)
        t.metrics = metrics
        improved = metrics["mIoU"] > t.best_metric
        if improved:
            t.best_metric, t.best_step, t.best_metrics = metrics["mIoU"], t.step, metrics
        row = {"step": t.step, **{f"val/{k}": metrics[k] for k in ("mIoU", "aAcc", "mAcc", "fwIoU")}}
        t.log({**row, "val/best_mIoU": t.best_metric})
        if t.info.is_main:
            self._pictures()
        if improved:
            t.save_best(metrics)
        from .bn import set_train_mode

        set_train_mode(t.net, t.cfg.train.freeze_bn)
        t.print(f"step {t.step}: val mIoU {metrics['mIoU']:.4f} (best {t.best_metric:.4f} at step {t.best_step})")

    def _pictures(self) -> None:
        from ..viz import plot_curves

        t = self.trainer
        for hook in t.hooks:
            if isinstance(hook, MetricsFile):
                hook.write_csv()
                plot_curves(hook.jsonl, t.run_dir / "curves.png", lr_per_step=lr_per_step(t))


def lr_per_step(trainer) -> list[float]:
    """The lr of every step so far, from the schedule itself (the log only samples it)."""
    scheduler = trainer.scheduler
    base = scheduler.base_lrs[0]
    return [base * scheduler.lr_lambdas[0](step) for step in range(trainer.step)]


class PeriodicCheckpoint(HookBase):
    """``checkpoints/last`` (weights and the full training state) every ``checkpoint_interval``
    steps and at the last step."""

    def after_step(self) -> None:
        t = self.trainer
        if t.step == t.cfg.train.steps or t.step % t.cfg.train.checkpoint_interval == 0:
            t.save_last()


class FinalReport(HookBase):
    """After training: the best model's metrics (final_metrics.json), per-class IoU chart,
    confusion matrix and prediction panels of the first ``eval.num_predictions`` images."""

    def after_train(self) -> None:
        from . import distributed

        t = self.trainer
        distributed.barrier(t.info)  # rank 0 has written checkpoints/best
        best = self._best_model()
        metrics = t.best_metrics or t.evaluate(best)  # the best step came before a resume
        if not t.info.is_main:
            t.final_metrics = metrics
            return
        t.final_metrics = {"step": t.best_step, **metrics, "skipped_files": t.bad_data.counts()}
        self._write(best, t.final_metrics)

    def _best_model(self):
        from ..models.base import load_model
        from ..paths import find_checkpoint

        t = self.trainer
        best_dir = find_checkpoint(t.checkpoint_dir / "best")
        if best_dir is None:  # no evaluation ever gave a number (e.g. no labelled val pixel)
            raise ESegError(f"no best checkpoint in {t.checkpoint_dir}: validation never produced an mIoU; check "
                            f"data.val_split / data.val_dataset (the last weights are in {t.checkpoint_dir / 'last'})")
        return load_model(best_dir, map_location=t.info.device)

    def _write(self, best, metrics: dict) -> None:
        from ..data.meta import subset
        from ..inference.segmenter import Segmenter
        from ..viz import plot_confusion_matrix, plot_per_class_iou
        from .evaluation import inference_on_dataset

        t = self.trainer
        fileio.write_json(t.run_dir / "final_metrics.json", metrics)
        plot_per_class_iou(metrics["per_class"], t.run_dir / "per_class_iou.png",
                           title=f"val per-class IoU (best, step {t.best_step})")
        plot_confusion_matrix(metrics["confusion_matrix"], list(t.val_set.class_names), t.run_dir / "confusion_matrix.png")
        count = min(t.cfg.eval.num_predictions, len(t.val_set))
        if count:
            writer = t.panel_writer(t.run_dir / "predictions", count, color_masks=True)
            inference_on_dataset(Segmenter(best, device=t.info.device), subset(t.val_set, range(count)), [writer])


def default_hooks(trainer) -> list[HookBase]:
    cfg = trainer.cfg
    hooks: list[HookBase] = [RunHeader(), MetricsFile(trainer.run_dir, cfg.train.log_interval)]
    if cfg.run.tensorboard:
        hooks.append(TensorBoardLogger(trainer.run_dir))
    if cfg.train.precise_bn_batches:
        hooks.append(PreciseBN(cfg.train.precise_bn_batches))
    hooks += [Evaluation(), PeriodicCheckpoint(), FinalReport()]
    if cfg.run.mlflow:  # last: its artifacts are the final report's files
        hooks.append(MLflowLogger(cfg.run.mlflow, trainer.run_dir.name))
    return hooks
