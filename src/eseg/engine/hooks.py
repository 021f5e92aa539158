"""Trainer hooks (detectron2's pattern): each does one thing around the training loop.

A hook has ``before_train``, ``before_step``, ``after_step``, ``after_train``, ``on_log(row)``
(every metrics row the trainer logs), ``on_interrupt`` (a signal stops the run after this step;
``checkpoints/last`` is saved next) and ``close`` (always called, also after an error). A hook
is handed what it works with when it is built (e.g. the pictures refreshed after an evaluation
get the metrics file); the trainer sets ``hook.trainer``. :func:`default_hooks` builds the list
``eseg train`` uses and says where their order matters.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import fileio
from ..config import save_config
from ..errors import ConfigError, ESegError
from ..paths import (
    CONFUSION_MATRIX,
    CURVES,
    FINAL_METRICS,
    METRICS_CSV,
    METRICS_JSONL,
    OVERLAYS,
    PER_CLASS_IOU,
    PREDICTIONS,
    RUN_CONFIG,
    TENSORBOARD,
)


class HookBase:
    trainer = None  # set by the Trainer

    def before_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_train(self) -> None: ...

    def on_log(self, row: dict) -> None: ...

    def on_interrupt(self) -> None: ...

    def close(self) -> None: ...


class RunHeader(HookBase):
    """Writes config.yaml and prints one screen about the run before the first step."""

    def before_train(self) -> None:
        t = self.trainer
        if not t.info.is_main:
            return
        t.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(t.cfg, t.run_dir / RUN_CONFIG)
        for line in header_lines(t):
            print(line, flush=True)


def header_lines(trainer) -> list[str]:
    from ..flops import count_macs, count_params

    cfg, model = trainer.cfg, trainer.model
    crop = cfg.train_crop()
    gmacs = count_macs(model, crop) / 1e9
    precision = ("fp16 autocast" if trainer.info.device.type == "cuda" else "bf16 autocast") if cfg.train.amp else "fp32"
    return [
        f"eseg train: {cfg.model.name} ({model.config.arch}, backbone {model.config.backbone}), "
        f"{count_params(model) / 1e6:.2f} M params, {gmacs:.2f} GMACs at the {crop[0]}x{crop[1]} train crop",
        f"  data     {cfg.data.dataset.get('type')}: {len(trainer.train_set)} train / {len(trainer.val_set)} val images, "
        f"{trainer.train_set.num_classes} classes",
        f"  splits   train: {trainer.train_set.split_source}",
        f"           val:   {trainer.val_set.split_source}",
        f"  device   {trainer.info.device} x {trainer.info.world_size} process(es), {precision}, "
        f"global batch {cfg.train.batch_size}, {cfg.train.steps} steps (from step {trainer.step})",
        f"  run      {trainer.run_dir}",
    ]


class MetricsFile(HookBase):
    """Logs the training loss every ``log_interval`` steps into ``metrics.jsonl`` (and a CSV
    copy at each evaluation and at the end); rank 0 only. Rows logged after the last checkpoint
    of a killed run are dropped on resume, so the file matches the resumed run exactly."""

    def __init__(self, run_dir: Path, interval: int) -> None:
        self.jsonl, self.csv, self.interval = run_dir / METRICS_JSONL, run_dir / METRICS_CSV, interval
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
            self.log_window()

    def log_window(self) -> None:
        """One row: the mean loss of the steps since the last row, the lr and images/s."""
        t = self.trainer
        speed = len(self._window) * t.cfg.train.batch_size / max(self._busy, 1e-9)
        epoch = t.step // max(1, len(t.train_set) // t.cfg.train.batch_size)
        t.log({"step": t.step, "epoch": epoch, "loss": sum(self._window) / len(self._window), "lr": t.last_lr,
               "images_per_s": round(speed, 3), **loss_terms(t)})
        self._window, self._busy = [], 0.0

    def on_interrupt(self) -> None:
        """The steps since the last row are logged now (the resumed run logs from the next one)."""
        if self._window:
            self.log_window()
        self.write_csv()

    def on_log(self, row: dict) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(row) + "\n")
            self._handle.flush()

    def write_csv(self) -> None:
        """The rows as a table: one column per scalar key, in the order keys first appear."""
        if not self.trainer.info.is_main:
            return
        rows = self.rows()
        columns = list(dict.fromkeys(k for row in rows for k, v in row.items() if not isinstance(v, (dict, list))))
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        fileio.write_text(self.csv, text.getvalue())

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
        self.log_dir, self.writer = run_dir / TENSORBOARD, None

    def before_train(self) -> None:
        if self.trainer.info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            step = self.trainer.step  # a resumed run drops the events logged after its checkpoint
            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=step + 1 if step else None)

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
            raise ConfigError(f"run.mlflow is set but mlflow is not installed: pip install 'eseg[mlflow]' ({exc})") from exc
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
            for name in (FINAL_METRICS, CURVES, PER_CLASS_IOU, CONFUSION_MATRIX):
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
    """Before every evaluation (and so before the final checkpoint), precise BN of the evaluated
    model over ``num_batches`` training batches of their own seed (:func:`eseg.engine.bn.precise_bn`)."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches

    def after_step(self) -> None:
        if self.trainer.eval_due():
            from .bn import precise_bn

            precise_bn(self.trainer, self.num_batches)


@dataclass(frozen=True)
class EvalResult:
    """One validation during training: its step, its metrics, and whether it beat the best so far."""

    step: int
    metrics: dict
    improved: bool


class Evaluation(HookBase):
    """Validates at every ``eval.interval`` and at the last step: panels of the first
    ``eval.num_overlays`` images under ``overlays/step_NNNNNN``, the metrics logged and printed,
    the best kept; then hands the :class:`EvalResult` to each of ``then``, in that order."""

    def __init__(self, then: Sequence[Callable[[Any, EvalResult], None]] = ()) -> None:
        self.then = list(then)

    def after_step(self) -> None:
        t = self.trainer
        if not t.eval_due():
            return
        t.sync_buffers()
        metrics = t.evaluate(panels=t.run_dir / OVERLAYS / f"step_{t.step:06d}")
        t.metrics = metrics
        improved = metrics["mIoU"] > t.best_metric
        if improved:
            t.best_metric, t.best_step, t.best_metrics = metrics["mIoU"], t.step, metrics
        row = {"step": t.step, **{f"val/{k}": metrics[k] for k in ("mIoU", "aAcc", "mAcc", "fwIoU")}}
        t.log({**row, "val/best_mIoU": t.best_metric})
        result = EvalResult(t.step, metrics, improved)
        for action in self.then:
            action(t, result)
        t.print(f"step {t.step}: val mIoU {metrics['mIoU']:.4f} (best {t.best_metric:.4f} at step {t.best_step})")


class BestCheckpoint:
    """After an evaluation that improved: ``checkpoints/best`` (for :class:`Evaluation`'s ``then``)."""

    def __call__(self, trainer, result: EvalResult) -> None:
        if result.improved:
            trainer.save_best(result.metrics)


class ProgressPictures:
    """After every evaluation: the metrics file's CSV copy and the curves (rank 0; for
    :class:`Evaluation`'s ``then``)."""

    def __init__(self, metrics_file: MetricsFile, curves: Path) -> None:
        self.metrics_file, self.curves = metrics_file, curves

    def __call__(self, trainer, result: EvalResult) -> None:
        from ..viz import plot_curves

        if trainer.info.is_main:
            self.metrics_file.write_csv()
            plot_curves(self.metrics_file.jsonl, self.curves, lr_per_step=lr_per_step(trainer))


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
        from ..paths import best_checkpoint

        t = self.trainer
        best_dir = best_checkpoint(t.run_dir)
        if best_dir is None:  # no evaluation ever gave a number (e.g. no labelled val pixel)
            raise ESegError(f"no best checkpoint in {t.checkpoint_dir}: validation never produced an mIoU; check "
                            f"data.val_split / data.val_dataset (the last weights are in {t.checkpoint_dir / 'last'})")
        return load_model(best_dir, map_location=t.info.device)

    def _write(self, best, metrics: dict) -> None:
        from ..data.meta import subset
        from ..evaluation import inference_on_dataset, write_report
        from ..inference.segmenter import Segmenter

        t = self.trainer
        write_report(metrics, t.run_dir, results_file=FINAL_METRICS,
                     title=f"val per-class IoU (best, step {t.best_step})")
        count = min(t.cfg.eval.num_predictions, len(t.val_set))
        if count:
            writer = t.panel_writer(t.run_dir / PREDICTIONS, count, color_masks=True)
            inference_on_dataset(Segmenter(best, device=t.info.device), subset(t.val_set, range(count)), [writer])


def default_hooks(trainer) -> list[HookBase]:
    """The hooks of ``eseg train``, in the order they run. Where one reads what another did in
    the same step, the order is the rule:

    - MetricsFile before Evaluation: a step's training row precedes its val row in metrics.jsonl;
    - PreciseBN before Evaluation: the evaluation and the best checkpoint use the recomputed statistics;
    - Evaluation before PeriodicCheckpoint: checkpoints/last holds this step's statistics and best
      metric, so a resumed run continues exactly;
    - after each evaluation, in this order: checkpoints/best, then the CSV copy and the curves;
    - MLflowLogger last: its artifacts are FinalReport's files.
    """
    cfg, run_dir = trainer.cfg, trainer.run_dir
    metrics_file = MetricsFile(run_dir, cfg.train.log_interval)
    hooks: list[HookBase] = [RunHeader(), metrics_file]
    if cfg.run.tensorboard:
        hooks.append(TensorBoardLogger(run_dir))
    if cfg.train.precise_bn_batches:
        hooks.append(PreciseBN(cfg.train.precise_bn_batches))
    evaluation = Evaluation(then=[BestCheckpoint(), ProgressPictures(metrics_file, run_dir / CURVES)])
    hooks += [evaluation, PeriodicCheckpoint(), FinalReport()]
    if cfg.run.mlflow:
        hooks.append(MLflowLogger(cfg.run.mlflow, run_dir.name))
    return hooks
