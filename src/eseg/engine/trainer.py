"""The trainer: built from an :class:`~eseg.config.ExperimentConfig` by public build steps, it
runs the optimisation loop and calls its hooks (:mod:`eseg.engine.hooks`) around every step.

One run folder per experiment::

    config.yaml              the resolved config
    metrics.jsonl / .csv     one row per log interval (step, loss, lr, images/s) and per evaluation
    curves.png               loss, per-step lr and val mIoU, refreshed at every evaluation
    overlays/step_NNNNNN/    captioned validation panels at every evaluation
    checkpoints/last, best   checkpoint folders (see eseg.engine.checkpoint)
    predictions/             prediction panels of the best model at the end
    final_metrics.json       full metrics of the best model, with per-class IoU
    tb/                      TensorBoard events

Launch with ``torchrun --nproc_per_node N -m eseg.cli train CONFIG`` for DDP.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..config import ExperimentConfig
from ..errors import CheckpointError, ConfigError, ESegError
from ..evaluation import PanelWriter, evaluate_model
from ..models.norm import set_bn_momentum
from ..paths import CHECKPOINTS, RUN_CONFIG, WEIGHTS_FILE
from . import checkpoint as ckpt
from . import distributed
from .bad_data import BadDataReport, collate_batch
from .bn import sync_bn_buffers
from .ema import ModelEMA
from .interrupt import StopSignals, TrainingInterrupted, ignore_sigint, resume_command
from .losses import build_loss
from .optim import build_optimizer, build_scheduler
from .sampling import ResumableBatchSampler, SeededSamples


class NonFiniteLossError(ESegError):
    """The loss became NaN or Inf; training stops before the bad step touches any weight."""


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before its first call
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU, fp16 on CUDA (paired with a GradScaler)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def build_datasets(cfg: ExperimentConfig, mean, std) -> tuple:
    """Train and val datasets with their transforms (the crop: ``cfg.train_crop()``)."""
    from ..data.specs import build_dataset
    from ..data.splits import check_disjoint
    from ..data.transforms import build_eval_transform, build_train_transform

    data = cfg.data
    train_set = build_dataset(data.dataset, data.train_split, where="data.dataset")
    val_set = build_dataset(data.val_dataset or data.dataset, data.val_split,
                            where="data.val_dataset" if data.val_dataset else "data.dataset")
    check_disjoint(train_set, val_set)
    train_set.transform = build_train_transform(
        crop_size=cfg.train_crop(), scale_range=tuple(data.scale_range), hflip=data.hflip,
        color_jitter=data.color_jitter or None, mean=mean, std=std, ignore_index=train_set.ignore_index)
    val_set.transform = build_eval_transform(mean=mean, std=std)
    if val_set.num_classes != train_set.num_classes:
        raise ConfigError(f"data.val_dataset has {val_set.num_classes} classes but data.dataset has {train_set.num_classes}")
    return train_set, val_set


def image_sizes(dataset, count: int) -> list[tuple[int, int]]:
    """The distinct sizes (H, W) of the first ``count`` images of ``dataset`` that are not bad
    files, the most common first, at most ``MAX_RECORDED_SIZES``: from the files' headers, without
    decoding; datasets whose images are no files (generated, table rows) read their samples."""
    from ..data.io import header_size
    from ..models.config import MAX_RECORDED_SIZES

    sizes: Counter = Counter()
    for index in range(count):
        if index not in dataset.bad_samples:
            path = dataset.image_path(index)
            sizes[header_size(path) if path is not None else tuple(dataset.read_sample(index)[0].shape[:2])] += 1
    return [size for size, _ in sizes.most_common(MAX_RECORDED_SIZES)]


class Trainer:
    """Builds the run from ``cfg`` (see the build_* methods) and trains it with ``fit``.

    ``hooks`` defaults to :func:`eseg.engine.hooks.default_hooks`; pass a list to change them.
    ``config_path``: the config file the run was started from, for the resume command printed
    when a signal stops the run (default: the run's recorded ``config.yaml``).
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, resume: bool = False, hooks=None,
                 config_path: str | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.config_path = config_path
        self.info = distributed.init_distributed(cfg.train.device)
        if cfg.train.batch_size % self.info.world_size:
            raise ConfigError(f"train.batch_size={cfg.train.batch_size} (global) does not split over "
                              f"{self.info.world_size} processes")
        self.batch_per_rank = cfg.train.batch_size // self.info.world_size
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        config = self.model_config()
        self.train_set, self.val_set = build_datasets(cfg, config.mean, config.std)
        self.bad_data = self.check_data()
        self.model = self.build_model()
        self.ema = ModelEMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.use_amp = cfg.train.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.info.device.type == "cuda")
        self.criterion = build_loss(cfg.train.loss, num_classes=self.train_set.num_classes,
                                    ignore_index=self.train_set.ignore_index).to(self.info.device)
        self.net = self.wrap_distributed()
        self.step, self.best_metric, self.best_step = 0, -math.inf, None
        self.saved_step: int | None = None  # the step of the latest checkpoints/last this process wrote
        self.best_metrics: dict | None = None  # full metrics of the best evaluation of this process
        self.metrics: dict | None = None  # the latest evaluation
        self.final_metrics: dict | None = None  # the best model's, written by the final report
        self.last_loss, self.last_lr = math.nan, math.nan
        if resume:
            self.resume()
        from .hooks import default_hooks

        self.hooks = list(default_hooks(self) if hooks is None else hooks)
        for hook in self.hooks:
            hook.trainer = self

    # -- build steps ---------------------------------------------------------------------------

    def model_config(self):
        """The model's config before the dataset fills in its classes (normalisation, crop)."""
        from ..models.config import resolve_normalization
        from ..models.registry import get_config

        config = get_config(self.cfg.model.name, **self.cfg.model_options())
        resolve_normalization(config)
        return config

    def build_model(self) -> nn.Module:
        """The registered model with the dataset's classes, names, palette and ignore index, so
        they travel with every checkpoint and predict colours like the data."""
        from ..models.norm import debias_batchnorm
        from ..models.registry import create_model

        mcfg, tcfg = self.cfg.model, self.cfg.train
        options = {**self.cfg.model_options(), **self.train_set.meta.model_fields(), **self.recorded_sizes()}
        model = create_model(mcfg.name, pretrained_backbone=mcfg.pretrained_backbone,
                             backbone_weights=mcfg.backbone_weights, **options)
        if tcfg.bn_momentum is not None:
            set_bn_momentum(model, tcfg.bn_momentum)
        self.memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        model.to(self.info.device, memory_format=self.memory_format)
        if tcfg.sync_bn and self.info.distributed:
            if self.info.device.type != "cuda":
                raise ConfigError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); BN buffers "
                                  "are averaged over processes before each evaluation and checkpoint instead")
            model = debias_batchnorm(nn.SyncBatchNorm.convert_sync_batchnorm(model))
        return model.freeze_batchnorm(tcfg.freeze_bn)

    def recorded_sizes(self) -> dict:
        """What the model's config records of the sizes training really used (export and predict
        default to them): the train crop, and the validation images' sizes, with ``eval_size``
        their one size, or None when they vary (see eseg.models.config.validated_size)."""
        sizes = image_sizes(self.val_set, self.eval_count())
        recorded = {"train_crop": self.cfg.train_crop()}
        if sizes:  # none: every val file is bad, and evaluation will say so
            recorded.update(eval_size=sizes[0] if len(sizes) == 1 else None, val_sizes=sizes)
        return recorded

    def eval_count(self) -> int:
        """How many validation images an evaluation uses (``eval.max_images``)."""
        limit = self.cfg.eval.max_images
        return len(self.val_set) if limit is None else min(limit, len(self.val_set))

    def check_data(self) -> BadDataReport:
        """Every file's header before the first step: broken files are named now, not mid-run."""
        report = BadDataReport()
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            report.known(split, dataset.check_files().values())
        return report

    def wrap_distributed(self) -> nn.Module:
        if not self.info.distributed:
            return self.model
        device_ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        net = DistributedDataParallel(self.model, device_ids=device_ids)
        torch.manual_seed(self.cfg.train.seed + self.info.rank)  # dropout differs per rank; data is seeded per sample
        return net

    def train_loader(self, *, start_step: int | None = None, seed: int | None = None) -> DataLoader:
        """Endless training batches from ``start_step`` (default: the current step); ``seed``
        draws another order and augmentation (precise BN uses one)."""
        cfg = self.cfg
        sampler = ResumableBatchSampler(
            len(self.train_set), self.batch_per_rank, num_replicas=self.info.world_size, rank=self.info.rank,
            seed=cfg.train.seed if seed is None else seed, start_step=self.step if start_step is None else start_step)
        workers = cfg.data.num_workers
        return DataLoader(SeededSamples(self.train_set), batch_sampler=sampler, num_workers=workers,
                          collate_fn=collate_batch, pin_memory=self.info.device.type == "cuda",
                          persistent_workers=workers > 0, worker_init_fn=ignore_sigint if workers else None)

    # -- state -----------------------------------------------------------------------------------

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved as best: the EMA weights when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINTS

    def train_state(self) -> dict:
        rng = [ckpt.capture_rng_state()]
        if self.info.distributed:
            rng = [None] * self.info.world_size
            torch.distributed.all_gather_object(rng, ckpt.capture_rng_state())
        return {"step": self.step, "best_metric": self.best_metric, "best_step": self.best_step,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "ema": self.ema.checkpoint_state() if self.ema is not None else None,
                "rng": rng, "world_size": self.info.world_size}

    def sync_buffers(self) -> None:
        """BN statistics identical on every process (see eseg.engine.bn.sync_bn_buffers)."""
        if self.info.distributed:
            for model in {id(m): m for m in (self.model, self.eval_model)}.values():
                sync_bn_buffers(model)

    def save_last(self) -> None:
        self.sync_buffers()
        state = self.train_state()  # collective: every rank takes part
        if self.info.is_main:
            ckpt.save_checkpoint(self.checkpoint_dir / "last", self.model, state)
        self.saved_step = self.step
        distributed.barrier(self.info)

    def save_best(self, metrics: dict) -> None:
        """The weights that scored best (the EMA's when EMA is on); no optimizer state."""
        if self.info.is_main:
            state = {"step": self.step, "best_metric": self.best_metric, "best_step": self.step,
                     "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                     "ema": self.ema is not None}
            ckpt.save_checkpoint(self.checkpoint_dir / "best", self.eval_model, state)

    def resume(self) -> None:
        found = ckpt.find_checkpoint(self.checkpoint_dir / "last")
        if found is None:
            self.print(f"eseg train: no checkpoint in {self.checkpoint_dir / 'last'}; starting from step 0")
            return
        state = ckpt.load_train_state(found, map_location=self.info.device)
        if "optimizer" not in state:
            raise CheckpointError(f"'{found}' holds no optimizer state; only checkpoints/last can be resumed")
        from ..models.base import read_weights

        self.model.load_state_dict(read_weights(found / WEIGHTS_FILE, self.model, self.info.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise ConfigError(f"train.ema_decay > 0 but '{found}' was trained without EMA; set train.ema_decay=0")
            self.ema.load_checkpoint_state(state["ema"])
        rng = state["rng"]
        ckpt.restore_rng_state(rng[self.info.rank] if len(rng) == self.info.world_size else rng[0])
        self.step, self.best_metric, self.best_step = int(state["step"]), float(state["best_metric"]), state["best_step"]
        self.print(f"eseg train: resumed from {found} at step {self.step}")

    # -- the loop --------------------------------------------------------------------------------

    def print(self, message: str) -> None:
        if self.info.is_main:
            print(message, flush=True)

    def log(self, row: dict) -> None:
        """Hand a metrics row (``step`` and numbers) to every hook (metrics file, loggers)."""
        for hook in self.hooks:
            hook.on_log(row)

    def eval_due(self) -> bool:
        interval = self.cfg.eval.interval
        return self.step == self.cfg.train.steps or bool(interval and self.step % interval == 0)

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
                "Try a lower train.lr, train.grad_clip > 0, or train.amp=false.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return loss_value, lr

    def evaluate(self, model: nn.Module | None = None, *, panels: Path | None = None) -> dict:
        """Whole-image validation of ``model`` (default: the eval model), left as it was. Each
        process evaluates its shard; the confusion matrices are summed, so every rank gets the
        whole set's metrics. ``panels``: a folder for the first ``eval.num_overlays`` panels."""
        from ..data.meta import subset

        shard = subset(self.val_set, range(self.info.rank, self.eval_count(), self.info.world_size))
        writers = []
        if panels is not None and self.info.is_main and self.cfg.eval.num_overlays:
            writers.append(self.panel_writer(panels, self.cfg.eval.num_overlays))
        model = self.eval_model if model is None else model
        results = evaluate_model(model, shard, batch_size=self.cfg.eval.batch_size, device=self.info.device,
                                 all_reduce=self.info.distributed, evaluators=writers)
        self.bad_data.known("val", results.pop("skipped"))  # read in this process: the dataset warned
        return results

    def panel_writer(self, folder: Path, limit: int, *, color_masks: bool = False) -> PanelWriter:
        meta, config = self.val_set.meta, self.model.config
        return PanelWriter(folder, mean=config.mean, std=config.std, class_names=meta.class_names,
                           palette=meta.palette, limit=limit, color_masks=color_masks)

    def fit(self) -> dict:
        """Train to ``train.steps`` and return the final metrics of the best model. SIGINT or
        SIGTERM stops it after the step in progress with a checkpoint (see eseg.engine.interrupt)."""
        for hook in self.hooks:
            hook.before_train()
        self.net.train()  # BN stays frozen with train.freeze_bn: the model's train() keeps it so
        try:
            self.run_steps()
            for hook in self.hooks:
                hook.after_train()
        finally:
            for hook in self.hooks:
                hook.close()
        return self.final_metrics or self.best_metrics or {}

    def run_steps(self) -> None:
        """The steps up to ``train.steps``, each with its hooks; after each, the processes agree
        whether a signal asked any of them to stop."""
        with StopSignals() as stop:
            batches = iter(self.train_loader())  # forked workers get StopSignals' handler: they ignore SIGINT
            while self.step < self.cfg.train.steps:
                for hook in self.hooks:
                    hook.before_step()
                batch = next(batches)
                self.bad_data.add("train", batch.get("skipped", ()))
                self.last_loss, self.last_lr = self.train_step(batch)
                for hook in self.hooks:
                    hook.after_step()
                if distributed.any_process(stop.requested, self.info):
                    self.stop_here(stop.received.name if stop.received else "a signal to another process")

    def stop_here(self, reason: str) -> None:
        """Save ``checkpoints/last`` at this step (unless a hook just did), print how to resume,
        and raise :class:`~eseg.engine.interrupt.TrainingInterrupted`."""
        for hook in self.hooks:
            hook.on_interrupt()
        if self.saved_step != self.step:
            self.save_last()
        info = self.info
        config = self.config_path or self.run_dir / RUN_CONFIG
        nodes = max(1, info.world_size // int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size)))
        command = resume_command(config, self.run_dir, nodes=nodes, processes_per_node=info.world_size // nodes)
        last = self.checkpoint_dir / "last"
        self.print(f"eseg train: {reason} at step {self.step}: saved {last}; resume with:\n  {command}")
        raise TrainingInterrupted(reason, self.step, last, command)

    def benchmark(self, steps: int, warmup: int = 3) -> float:
        """Training images/s over ``steps`` steps on one fixed batch (data loading excluded)."""
        import time

        self.net.train()
        batch = next(iter(self.train_loader()))
        for _ in range(warmup):
            self.train_step(batch)
        start = time.perf_counter()
        for _ in range(steps):
            self.train_step(batch)
        return steps * self.cfg.train.batch_size / (time.perf_counter() - start)
