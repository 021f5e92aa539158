"""``eseg train CONFIG [section.key=value ...]``: the training engine.

One run folder per experiment::

    config.yaml              the resolved config
    metrics.jsonl / .csv     one row per log interval (step, loss, lr, images/s) and per evaluation
    curves.png               loss, lr and val mIoU, refreshed at every evaluation
    overlays/step_NNNNNN/    validation overlays (ground truth | prediction) at every evaluation
    checkpoints/last, best   checkpoint folders (see eseg.engine.checkpoint)
    predictions/             predictions of the best model at the end
    final_metrics.json       full metrics of the best model, with per-class IoU
    tb/                      TensorBoard events, when tensorboard is installed

Launch with ``torchrun --nproc_per_node N -m eseg.cli train CONFIG`` for DDP.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import fileio
from ..config import load_config, run_dir_of, save_config
from ..errors import ConfigError, ESegError
from ..models import create_model, get_config, load_model
from ..models.eseg import WEIGHTS_FILE, ESeg, read_weights
from . import checkpoint as ckpt
from . import distributed
from .distributed import DistInfo
from .losses import SegmentationLoss
from .optim import ModelEMA, build_optimizer, build_scheduler
from .sampling import ResumableBatchSampler, SeededSamples

# Files and folders a run writes; `--exist-ok` removes exactly these before starting over.
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "metrics.csv", "curves.png", "overlays", "checkpoints",
               "predictions", "final_metrics.json", "per_class_iou.png", "confusion_matrix.png", "tb")


class NonFiniteLossError(ESegError):
    """The loss became NaN or Inf; training stops before the bad step touches any weight."""


# --------------------------------------------------------------------------------------------
# setup helpers


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this before its first call to be reproducible.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def model_overrides(model_cfg: dict) -> dict:
    return {k: v for k, v in model_cfg.items() if k not in ("name", "pretrained_backbone", "backbone_weights")}


def build_datasets(cfg: dict, mean, std, default_crop):
    """Train and val datasets with their transforms (crop size defaults to the variant's)."""
    from ..data import build_dataset
    from ..data.transforms import build_eval_transform, build_train_transform

    data = cfg["data"]
    train_set = build_dataset(data["dataset"], data["train_split"])
    val_set = build_dataset(data["val_dataset"] or data["dataset"], data["val_split"])
    train_set.transform = build_train_transform(
        crop_size=tuple(data["crop_size"] or default_crop),
        scale_range=tuple(data["scale_range"]),
        hflip=data["hflip"],
        color_jitter=data["color_jitter"] or None,
        mean=mean,
        std=std,
        ignore_index=train_set.ignore_index,
    )
    val_set.transform = build_eval_transform(mean=mean, std=std)
    if val_set.num_classes != train_set.num_classes:
        raise ConfigError(
            f"data.val_dataset has {val_set.num_classes} classes but data.dataset has {train_set.num_classes}"
        )
    return train_set, val_set


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """``model.train()``, keeping BN layers on their running statistics when ``freeze_bn``."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU, fp16 on CUDA (paired with a GradScaler)."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def denormalize(image: torch.Tensor, mean, std) -> np.ndarray:
    """A normalized (3, H, W) tensor back to uint8 (H, W, 3) for pictures."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels = (image.float().cpu() * std_t + mean_t).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------
# metrics files


class MetricsLog:
    """Append-only ``metrics.jsonl`` (+ a CSV copy and TensorBoard scalars), rank 0 only."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, start_step: int) -> None:
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.truncate(start_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_step or None)

    def rows(self) -> list[dict]:
        return fileio.read_jsonl(self.jsonl) if self.jsonl.is_file() else []

    def truncate(self, step: int) -> None:
        """Forget rows logged after ``step`` (by a run killed after its last checkpoint)."""
        kept = [row for row in self.rows() if row.get("step", 0) <= step]
        fileio.write_text(self.jsonl, "".join(json.dumps(row) + "\n" for row in kept))

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key if "/" in key else f"train/{key}", value, row["step"])

    def write_csv(self) -> None:
        if not self.enabled:
            return
        rows = self.rows()
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns and not isinstance(row[k], (dict, list))]
        lines = [",".join(columns)]
        lines += [",".join("" if row.get(c) is None else str(row[c]) for c in columns) for row in rows]
        fileio.write_text(self.csv, "\n".join(lines) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------------------
# evaluation


def evaluate(model: ESeg, dataset, cfg: dict, info: DistInfo) -> dict:
    """Whole-image validation metrics. Each process evaluates its shard; SegEvaluator sums the
    confusion matrices over processes, so every rank gets the metrics of the whole set."""
    from .evaluate import evaluate_dataset

    eval_cfg = cfg["eval"]
    limit = eval_cfg["max_images"]
    count = len(dataset) if limit is None else min(limit, len(dataset))
    shard = torch.utils.data.Subset(dataset, range(info.rank, count, info.world_size))
    return evaluate_dataset(
        model, shard, mode="whole", batch_size=eval_cfg["batch_size"], device=info.device, progress=False,
        num_classes=dataset.num_classes, ignore_index=dataset.ignore_index, class_names=list(dataset.class_names),
        all_reduce=info.distributed,
    )


def predict_images(model: ESeg, dataset, count: int, device: torch.device):
    """(index, image uint8, ground truth, prediction) for the first ``count`` items of ``dataset``."""
    from ..inference import Segmenter

    segmenter = Segmenter(model, mode="whole", device=device)
    mean, std = model.config.mean, model.config.std
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        pred = segmenter.logits_from_tensors([item["image"]])[0].argmax(0).cpu().numpy()
        yield index, denormalize(item["image"], mean, std), item["mask"].numpy(), pred


def write_overlays(model: ESeg, dataset, count: int, folder: Path, device: torch.device) -> None:
    """ground truth | prediction, both over the image, one PNG per validation image."""
    from ..viz import overlay

    palette = dataset.palette
    for index, image, mask, pred in predict_images(model, dataset, count, device):
        gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
        panel = np.concatenate([overlay(image, mask, palette), gap, overlay(image, pred, palette)], axis=1)
        fileio.write_png(folder / f"{index:04d}.png", panel)


def write_predictions(model: ESeg, dataset, count: int, folder: Path, device: torch.device) -> None:
    """Per image: the colored prediction and an image | ground truth | prediction panel."""
    from ..viz import colorize, overlay

    palette = dataset.palette
    for index, image, mask, pred in predict_images(model, dataset, count, device):
        fileio.write_png(folder / f"{index:04d}_pred.png", colorize(pred, palette))
        gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
        panel = [image, gap, overlay(image, mask, palette), gap, overlay(image, pred, palette)]
        fileio.write_png(folder / f"{index:04d}_panel.png", np.concatenate(panel, axis=1))


# --------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Builds everything from a resolved config and runs the training loop (see module doc)."""

    def __init__(self, cfg: dict, run_dir: str | Path, *, resume: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.info = distributed.init_distributed(cfg["train"]["device"])
        tcfg = cfg["train"]
        if tcfg["batch_size"] % self.info.world_size:
            raise ConfigError(
                f"train.batch_size={tcfg['batch_size']} (global) does not split over {self.info.world_size} processes"
            )
        self.batch_per_rank = tcfg["batch_size"] // self.info.world_size
        seed_everything(tcfg["seed"], tcfg["deterministic"])

        mcfg = cfg["model"]
        variant = get_config(mcfg["name"], **model_overrides(mcfg))
        self.train_set, self.val_set = build_datasets(cfg, variant.mean, variant.std, variant.train_crop)
        self.model = create_model(
            mcfg["name"], num_classes=self.train_set.num_classes, class_names=list(self.train_set.class_names),
            pretrained_backbone=mcfg["pretrained_backbone"], backbone_weights=mcfg["backbone_weights"],
            **model_overrides(mcfg),
        )
        # Travels with every saved checkpoint, so `eseg predict` colors masks like the dataset.
        self.model.config.extra.update(
            palette=[[int(c) for c in color] for color in self.train_set.palette],
            ignore_index=int(self.train_set.ignore_index),
            dataset=cfg["data"]["dataset"].get("type"),
        )
        if tcfg["bn_momentum"] is not None:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = tcfg["bn_momentum"]
        self.memory_format = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
        self.model.to(self.info.device, memory_format=self.memory_format)
        if tcfg["sync_bn"] and self.info.distributed:
            if self.info.device.type != "cuda":
                raise ConfigError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                                  "use train.freeze_bn=true or larger per-process batches on CPU")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ema = ModelEMA(self.model, tcfg["ema_decay"]) if tcfg["ema_decay"] > 0 else None
        self.optimizer = build_optimizer(self.model, tcfg)
        self.scheduler = build_scheduler(self.optimizer, tcfg)
        self.use_amp = bool(tcfg["amp"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.info.device.type == "cuda")
        self.criterion = SegmentationLoss(
            self.train_set.ignore_index, ohem=tcfg["ohem"], ohem_thresh=tcfg["ohem_thresh"],
            ohem_min_kept=tcfg["ohem_min_kept"],
        )
        self.net: nn.Module = self.model
        if self.info.distributed:
            device_ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.info.distributed:  # dropout etc. differ per rank; data randomness is per sample
            torch.manual_seed(tcfg["seed"] + self.info.rank)

        self.step = 0
        self.best_metric = -math.inf
        self.best_step = None
        self.best_metrics: dict | None = None  # full metrics of the best evaluation of this process
        if resume:
            self._resume()
        self.log: MetricsLog | None = None  # opened by fit(): --benchmark must not touch the run folder

    # -- checkpoints ---------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _train_state(self) -> dict:
        rng = [ckpt.capture_rng_state()]
        if self.info.distributed:
            rng = [None] * self.info.world_size
            torch.distributed.all_gather_object(rng, ckpt.capture_rng_state())
        return {
            "step": self.step,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng,
            "world_size": self.info.world_size,
        }

    def save_last(self) -> None:
        state = self._train_state()  # collective: every rank takes part
        if self.info.is_main:
            ckpt.save_checkpoint(self.checkpoint_dir / "last", self.model, state)
        distributed.barrier(self.info)

    def save_best(self, metrics: dict) -> None:
        """Weights that scored best (the EMA's when EMA is on); no optimizer state."""
        if self.info.is_main:
            weights = self.ema.module if self.ema is not None else self.model
            state = {"step": self.step, "best_metric": self.best_metric, "best_step": self.step,
                     "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                     "ema": self.ema is not None}
            ckpt.save_checkpoint(self.checkpoint_dir / "best", weights, state)

    def _resume(self) -> None:
        found = ckpt.find_checkpoint(self.checkpoint_dir / "last")
        if found is None:
            if self.info.is_main:
                print(f"eseg train: no checkpoint in {self.checkpoint_dir / 'last'}; starting from step 0")
            return
        state = ckpt.load_train_state(found, map_location=self.info.device)
        if "optimizer" not in state:
            raise ESegError(f"'{found}' holds no optimizer state; only checkpoints/last can be resumed")
        self.model.load_state_dict(read_weights(found / WEIGHTS_FILE, self.model, self.info.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise ConfigError(f"train.ema_decay > 0 but '{found}' was trained without EMA; set train.ema_decay=0")
            self.ema.load_state_dict(state["ema"])
        rng = state["rng"]
        ckpt.restore_rng_state(rng[self.info.rank] if len(rng) == self.info.world_size else rng[0])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        self.best_step = state["best_step"]
        if self.info.is_main:
            print(f"eseg train: resumed from {found} at step {self.step}")

    # -- the loop ------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        tcfg = self.cfg["train"]
        sampler = ResumableBatchSampler(
            len(self.train_set), self.batch_per_rank, num_replicas=self.info.world_size, rank=self.info.rank,
            seed=tcfg["seed"], start_step=self.step,
        )
        workers = self.cfg["data"]["num_workers"]
        return DataLoader(
            SeededSamples(self.train_set), batch_sampler=sampler, num_workers=workers,
            pin_memory=self.info.device.type == "cuda", persistent_workers=workers > 0,
        )

    def train_step(self, batch: dict) -> tuple[float, float]:
        """One optimizer step; returns (loss averaged over processes, lr used)."""
        device = self.info.device
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=self.memory_format)
        masks = batch["mask"].to(device, non_blocking=True)
        lr = self.optimizer.param_groups[0]["lr"]
        with autocast(device, self.use_amp):
            logits = self.net(images)
        loss = self.criterion(logits, masks)
        loss_value = float(distributed.all_reduce_mean(loss, self.info))
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the loss is {loss_value} at step {self.step + 1}; stopped before updating any weight. "
                f"Last good checkpoint: {self.checkpoint_dir / 'last'} (if one was saved). "
                "Try a lower train.lr, train.grad_clip > 0, or train.amp=false."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg["train"]["grad_clip"] > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["train"]["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return loss_value, lr

    def validate(self) -> dict:
        model = self.ema.module if self.ema is not None else self.model
        metrics = evaluate(model, self.val_set, self.cfg, self.info)
        improved = metrics["mIoU"] > self.best_metric
        if improved:
            self.best_metric, self.best_step, self.best_metrics = metrics["mIoU"], self.step, metrics
        row = {"step": self.step, **{f"val/{k}": metrics[k] for k in ("mIoU", "aAcc", "mAcc", "fwIoU")}}
        row["val/best_mIoU"] = self.best_metric
        self.log.log(row)
        if self.info.is_main:
            self.log.write_csv()
            self._refresh_pictures(model)
        if improved:
            self.save_best(metrics)
        return metrics

    def _refresh_pictures(self, model: ESeg) -> None:
        from ..viz import plot_curves

        plot_curves(self.log.jsonl, self.run_dir / "curves.png")
        count = self.cfg["eval"]["num_overlays"]
        if count:
            write_overlays(model, self.val_set, count, self.run_dir / "overlays" / f"step_{self.step:06d}",
                           self.info.device)

    def fit(self) -> dict:
        """Train to ``train.steps``; returns the final metrics of the best model."""
        tcfg, ecfg = self.cfg["train"], self.cfg["eval"]
        total = tcfg["steps"]
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        self.log = MetricsLog(self.run_dir, enabled=self.info.is_main, tensorboard=self.cfg["run"]["tensorboard"],
                              start_step=self.step)
        set_train_mode(self.net, tcfg["freeze_bn"])
        batches = iter(self._loader())
        bar = tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.info.is_main and self.cfg["run"]["progress"]))
        window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        try:
            while self.step < total:
                loss, lr = self.train_step(next(batches))
                window_loss, window_steps = window_loss + loss, window_steps + 1
                bar.update(1)
                if self.step % tcfg["log_interval"] == 0 or self.step == total:
                    elapsed = time.perf_counter() - window_start
                    speed = window_steps * tcfg["batch_size"] / max(elapsed, 1e-9)
                    row = {"step": self.step, "epoch": self.step // max(1, len(self.train_set) // tcfg["batch_size"]),
                           "loss": window_loss / window_steps, "lr": lr, "images_per_s": round(speed, 3)}
                    self.log.log(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{speed:.1f}")
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
                evaluate_now = self.step == total or (ecfg["interval"] and self.step % ecfg["interval"] == 0)
                if evaluate_now:
                    metrics = self.validate()
                    bar.write(f"step {self.step}: val mIoU {metrics['mIoU']:.4f} (best {self.best_metric:.4f} "
                              f"at step {self.best_step})")
                    set_train_mode(self.net, tcfg["freeze_bn"])
                if self.step == total or self.step % tcfg["checkpoint_interval"] == 0:
                    self.save_last()
                    window_start = time.perf_counter()  # keep eval and saving out of images/s
        finally:
            bar.close()
        return self.finish()

    def finish(self) -> dict:
        """Final report on checkpoints/best: full metrics, per-class plots and predictions."""
        distributed.barrier(self.info)  # rank 0 has written checkpoints/best
        best_dir = ckpt.find_checkpoint(self.checkpoint_dir / "best")
        if best_dir is None:  # no evaluation ever gave a number (e.g. no labelled val pixel)
            raise ESegError(f"no best checkpoint in {self.checkpoint_dir}: validation never produced an mIoU; "
                            f"check data.val_split / data.val_dataset (the last weights are in {self.checkpoint_dir / 'last'})")
        best = load_model(best_dir, map_location=self.info.device)
        metrics = self.best_metrics
        if metrics is None:  # the best step was reached before a resume
            metrics = evaluate(best, self.val_set, self.cfg, self.info)
        if not self.info.is_main:
            return metrics
        self.log.write_csv()
        self.log.close()
        metrics = {"step": self.best_step, **metrics}
        fileio.write_json(self.run_dir / "final_metrics.json", metrics)
        from ..viz import plot_confusion_matrix, plot_per_class_iou

        plot_per_class_iou(metrics["per_class"], self.run_dir / "per_class_iou.png",
                           title=f"val per-class IoU (best, step {self.best_step})")
        plot_confusion_matrix(metrics["confusion_matrix"], list(self.val_set.class_names),
                              self.run_dir / "confusion_matrix.png")
        write_predictions(best, self.val_set, self.cfg["eval"]["num_predictions"], self.run_dir / "predictions",
                          self.info.device)
        return metrics

    def benchmark(self, steps: int, warmup: int = 3) -> float:
        """Training images/s over ``steps`` steps on one fixed batch (data loading excluded)."""
        set_train_mode(self.net, self.cfg["train"]["freeze_bn"])
        batch = next(iter(self._loader()))
        for _ in range(warmup):
            self.train_step(batch)
        start = time.perf_counter()
        for _ in range(steps):
            self.train_step(batch)
        return steps * self.cfg["train"]["batch_size"] / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# command line


def prepare_run_dir(run_dir: Path, *, resume: bool, exist_ok: bool, is_main: bool) -> None:
    existing = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not existing or resume or not is_main:
        return
    if not exist_ok:
        raise ConfigError(
            f"run folder '{run_dir}' already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            "--exist-ok to start over in it, or --out for another folder"
        )
    for name in existing:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def summary_lines(run_dir: Path, metrics: dict, best_step) -> list[str]:
    lines = [f"Results in {run_dir}/:",
             f"  best checkpoint   {run_dir / 'checkpoints' / 'best'}  (step {best_step}; "
             f"eseg.load_model / eseg predict take this folder)",
             f"  metrics           {run_dir / 'metrics.jsonl'}, {run_dir / 'metrics.csv'}, {run_dir / 'final_metrics.json'}",
             f"  plots             {run_dir / 'curves.png'}, {run_dir / 'per_class_iou.png'}, {run_dir / 'confusion_matrix.png'}",
             f"  overlays          {run_dir / 'overlays'}/",
             f"  predictions       {run_dir / 'predictions'}/",
             "  per-class IoU     " + ", ".join(f"{name} {v['IoU']:.3f}" for name, v in metrics["per_class"].items()),
             f"val mIoU of the best checkpoint (step {best_step}): {metrics['mIoU']:.4f}  "
             f"(pixel accuracy {metrics['aAcc']:.4f})"]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Overrides may come before or after the options: `eseg train cfg.yaml --resume train.lr=0.1`.
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]
    parser.add_argument("config", help="experiment YAML, e.g. configs/demo.yaml")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted config overrides, e.g. train.lr=0.05 data.crop_size=[256,256]")
    parser.add_argument("--out", help="run folder (default: run.out, else runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    parser.add_argument("--exist-ok", action="store_true", help="start over in an existing run folder")
    parser.add_argument("--benchmark", type=int, metavar="STEPS",
                        help="time STEPS training steps on one batch, print images/s and exit (writes nothing)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.out) if args.out else run_dir_of(cfg, args.config)
    cfg["run"]["out"] = str(run_dir)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if args.benchmark is None:
        prepare_run_dir(run_dir, resume=args.resume, exist_ok=args.exist_ok, is_main=is_main)
    try:
        trainer = Trainer(cfg, run_dir, resume=args.resume and args.benchmark is None)
        if args.benchmark is not None:
            speed = trainer.benchmark(args.benchmark)
            if trainer.info.is_main:
                crop = cfg["data"]["crop_size"] or get_config(cfg["model"]["name"], **model_overrides(cfg["model"])).train_crop
                print(f"{cfg['model']['name']}: {speed:.2f} training images/s at crop {list(crop)}, global batch "
                      f"{cfg['train']['batch_size']}, {trainer.info.world_size} process(es), device "
                      f"{trainer.info.device}, {torch.get_num_threads()} threads, amp={cfg['train']['amp']}")
            return 0
        start = time.perf_counter()
        metrics = trainer.fit()
        if trainer.info.is_main:
            for line in summary_lines(run_dir, metrics, trainer.best_step):
                print(line)
            print(f"training + evaluation took {time.perf_counter() - start:.0f} s")
        return 0
    finally:
        distributed.cleanup()
