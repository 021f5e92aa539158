"""One training run of the claims and its scores; the costs of each architecture.

A run trains with the shared :class:`~eseg.engine.trainer.Trainer` (its header and metrics-file
hooks only: no checkpoint selection, no validation during training), then scores the final weights
on the same validation images twice: (a) in eval mode with the model's own running BN statistics,
(b) after precise BN (:func:`eseg.engine.bn.precise_bn`, the trainer's own, over
``train.precise_bn_batches`` training batches drawn with another seed, so the training order is
untouched). The verdicts use (b); the page shows both.
"""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator

from .. import fileio
from ..data.synthetic import CONTEXT_CLASSES
from .experiments import Job

RESULT_FILE = "claims_result.json"  # per run folder: the run's config and scores
MODEL_DIR = "model"  # per run folder: the final weights with their precise-BN statistics


def context_scores(metrics: dict) -> dict:
    """IoU on the context classes, and how often one is predicted as the other."""
    names = list(metrics["per_class"])
    ids = [names.index(c) for c in CONTEXT_CLASSES]
    cm = metrics["confusion_matrix"]
    swapped = sum(cm[a][b] for a in ids for b in ids if a != b)
    total = sum(sum(cm[a]) for a in ids)
    return {
        "context_mIoU": statistics.fmean(metrics["per_class"][c]["IoU"] for c in CONTEXT_CLASSES),
        "context_swap_rate": swapped / total if total else float("nan"),
    }


def scores(metrics: dict, prefix: str = "") -> dict:
    return {f"{prefix}{key}": value for key, value in
            {"mIoU": metrics["mIoU"], **context_scores(metrics), "aAcc": metrics["aAcc"]}.items()}


def train_and_score(job: Job) -> dict:
    """Train ``job`` from scratch in its folder, score it before and after precise BN, save
    the final weights and ``claims_result.json``; returns the result."""
    from ..engine.bn import precise_bn
    from ..engine.hooks import MetricsFile, RunHeader
    from ..engine.trainer import Trainer
    from ..rundir import prepare_run_dir

    cfg, run_dir = job.cfg, job.run_dir
    prepare_run_dir(run_dir, resume=False, overwrite=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir, hooks=[RunHeader(), MetricsFile(run_dir, cfg.train.log_interval)])
    trainer.fit()
    train_seconds = time.perf_counter() - start
    running = trainer.evaluate(trainer.eval_model)
    precise = running
    if cfg.train.precise_bn_batches:
        precise_bn(trainer, cfg.train.precise_bn_batches)
        precise = trainer.evaluate(trainer.eval_model)
    trainer.eval_model.save_pretrained(run_dir / MODEL_DIR)
    result = {
        "seed": cfg.train.seed, **scores(precise), **scores(running, "running_bn_"),
        "per_class_IoU": {name: v["IoU"] for name, v in precise["per_class"].items()},
        "val_images": precise["num_images"], "precise_bn_batches": cfg.train.precise_bn_batches,
        "train_seconds": round(train_seconds, 1), "run_dir": str(run_dir),
    }
    fileio.write_json(run_dir / RESULT_FILE, {"config": cfg.to_dict(), "result": result})
    return result


def finished_result(job: Job) -> dict | None:
    """The saved result of a finished run with exactly this config, else None (for --reuse)."""
    path = job.run_dir / RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    expected = json.loads(json.dumps(job.cfg.to_dict()))  # tuples as JSON has them
    return saved.get("result") if saved.get("config") == expected else None


def _run_job(job: Job, threads: int) -> tuple[Job, dict]:
    import torch

    torch.set_num_threads(threads)
    return job, train_and_score(job)


def run_jobs(jobs: list[Job], threads: int, workers: int = 1) -> Iterator[tuple[Job, dict]]:
    """Yield (job, result) as runs finish: in this process, or in ``workers`` processes that
    share the ``threads`` (on a busy or 2-core machine, 2 single-thread runs beat one 2-thread
    run: depthwise convolutions scale poorly over threads)."""
    if workers <= 1:
        for job in jobs:
            yield _run_job(job, threads)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    per_worker = max(1, threads // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_job, job, per_worker) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


# -- costs -----------------------------------------------------------------------------------------


def build_model(cfg):
    """The experiment's model with its dataset's classes (random weights: costs only)."""
    from ..data.specs import build_dataset
    from ..models.registry import create_model

    dataset = build_dataset(cfg.data.val_dataset or cfg.data.dataset, cfg.data.val_split)
    return create_model(cfg.model.name, **cfg.model_options(), **dataset.meta.model_fields()).eval()


def measure_costs(configs: dict, size: tuple[int, int], runs: int, threads: int) -> dict[str, dict]:
    """Params, GMACs, padded canvas and batch-1 CPU latency at ``size``, every architecture
    timed in one interleaved loop (``eseg.benchmark.timing``) so load changes hit all alike."""
    import torch

    from ..benchmark.prepare import prepare_variant
    from ..benchmark.timing import interleaved_times
    from ..flops import count_macs, count_params
    from ..models.padding import padded_size

    device = torch.device("cpu")
    entries, costs = {}, {}
    for name, cfg in configs.items():
        model = build_model(cfg)
        costs[name] = {"params_M": count_params(model) / 1e6, "GMACs": count_macs(model, size) / 1e9,
                       "canvas": list(padded_size(*size, model.input_stride))}
        runnable = prepare_variant(model, "eager", size, device=device, threads=threads)
        x = runnable.make_input(1)
        entries[name] = lambda fn=runnable.fn, x=x: fn(x)
    times = interleaved_times(entries, runs=runs, warmup=2, device=device)
    for name, seconds in times.items():
        costs[name]["latency_ms"] = 1000 * statistics.median(seconds)
        costs[name]["latency_runs"] = len(seconds)
    return costs
