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
from collections.abc import Callable, Iterator
from pathlib import Path

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


LATENCY_RUNTIME = "openvino"  # what users deploy on a CPU; fp32, set explicitly (the CPU would pick bf16)
LATENCY_PRECISION = "fp32"


def measure_costs(models: dict[str, Path], runs: int, threads: int) -> dict[str, dict]:
    """Params, GMACs and padded canvas at the validation size, and the deployed image-to-mask
    latency of each trained model (name -> model folder): the graph `eseg export` writes by
    default (OpenVINO, fixed at the validated size, low-resolution logits) run by the Segmenter
    in fp32 on one validation image, network and exact low-resolution argmax, every model timed
    in one interleaved loop (``eseg.benchmark.timing``) so load changes hit all alike."""
    import tempfile

    import torch

    from ..benchmark.timing import interleaved_times

    costs, entries = {}, {}
    with tempfile.TemporaryDirectory(prefix="eseg-claims-graphs-") as tmp:
        for name, folder in models.items():
            costs[name], entries[name] = deployed_entry(folder, Path(tmp) / f"{name}.xml", threads)
        times = interleaved_times(entries, runs=runs, warmup=2, device=torch.device("cpu"))
    for name, seconds in times.items():
        costs[name].update(latency_ms=1000 * statistics.median(seconds), latency_runs=len(seconds))
    return costs


def deployed_entry(folder: Path, graph: Path, threads: int) -> tuple[dict, Callable[[], object]]:
    """The static costs of the model in ``folder`` and a call of its deployed mask path."""
    from ..data.specs import build_dataset
    from ..data.transforms import normalize
    from ..export.pipeline import ExportRequest, export_model
    from ..flops import count_macs, count_params
    from ..inference.segmenter import Segmenter
    from ..models.base import load_model
    from ..models.config import validated_size
    from ..models.padding import padded_size
    from ..runtimes.openvino import OpenVINORunner

    model = load_model(folder).eval()
    size = validated_size(model.config)
    costs = {"params_M": count_params(model) / 1e6, "GMACs": count_macs(model, size) / 1e9,
             "canvas": list(padded_size(*size, model.input_stride))}
    export_model(ExportRequest(model=str(folder), format=LATENCY_RUNTIME, out=str(graph)), log=lambda _: None)
    runner = OpenVINORunner(graph, threads=threads, precision=LATENCY_PRECISION)
    costs["latency_precision"] = runner.precision
    segmenter = Segmenter(runner)
    cfg = read_run_config(folder.parent)
    image = build_dataset(cfg.data.val_dataset or cfg.data.dataset, cfg.data.val_split).load(0)[0]
    tensor = normalize(image, model.config.mean, model.config.std)
    return costs, lambda: segmenter.masks_from_tensors([tensor])


def read_run_config(run_dir: Path):
    """The experiment config a claims run folder was trained with (its ``claims_result.json``)."""
    from ..config import ExperimentConfig

    saved = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    return ExperimentConfig.from_dict(saved["config"])
