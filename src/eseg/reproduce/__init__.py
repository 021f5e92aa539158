"""``eseg reproduce``: the paper's three claims in miniature, on the embedded synthetic streets.

ESeg (Meng et al., arXiv 2203.12683) claims that (1) extending the pyramid from P5 to P7 to P9
improves accuracy, because far-away context matters; (2) BiFPN fusion beats a plain top-down FPN
over the same levels; (3) without atrous convolution or high internal resolution ESeg matches or
beats DeepLabV3+ on the same backbone, at far lower cost.

:func:`run_claims` trains every experiment of the manifest (``configs/claims/experiments.yaml``)
for every seed with the shared trainer under one budget (a preset of the manifest; only
``train.seed`` changes per run), scores each run with running and with precise BN statistics,
measures params, GMACs and CPU latency per architecture, and returns the claims document that
:func:`write_reports` turns into ``claims.json``, ``claims.md`` and two plots.

- :mod:`.experiments`: the manifest, the budget and the jobs (torch-free);
- :mod:`.runs`: one training run and its scores, the costs;
- :mod:`.verdicts`: the claims and the BN check, judged on a document (torch-free);
- :mod:`.report`: the page and the plots.
"""
from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .experiments import ClaimsOptions, Manifest, Plan, load_manifest, plan_claims
from .runs import LATENCY_PRECISION, LATENCY_RUNTIME
from .report import render_markdown, write_reports
from .studies import json_name
from .verdicts import claim_verdicts, compare, judge, summarize

__all__ = ["ClaimsOptions", "Manifest", "Plan", "claim_verdicts", "compare", "judge", "load_manifest", "load_report",
           "plan_claims", "render_markdown", "run_claims", "write_reports"]

FORMAT = 3  # claims.json layout: both BN scores per run, roles and families per experiment, deployed latency


def run_claims(options: ClaimsOptions, log: Callable[[str], None] = print) -> dict:
    """Train, score and time every experiment; the judged claims document."""
    import torch

    from .runs import MODEL_DIR, measure_costs, run_jobs

    plan = plan_claims(options)
    torch.set_num_threads(options.threads)  # training and timing alike
    start = time.perf_counter()
    experiments = {name: experiment_entry(plan, name) for name in plan.names}
    pending = reuse_finished(plan, experiments, log, options.part) if options.reuse or options.part else list(plan.jobs)
    for done, (job, result) in enumerate(run_jobs(pending, options.threads, options.jobs), 1):
        experiments[job.name]["runs"].append(result)
        log(f"[{done}/{len(pending)}] {job.name} seed {job.seed}: mIoU {100 * result['mIoU']:.1f} precise BN, "
            f"{100 * result['running_bn_mIoU']:.1f} running BN; context mIoU {100 * result['context_mIoU']:.1f} "
            f"(trained in {result['train_seconds']:.0f} s; {(time.perf_counter() - start) / 60:.1f} min so far)")
    experiments = {name: exp for name, exp in experiments.items() if exp["runs"]}  # a part: what is done
    size = image_size(plan.config(plan.names[0]))
    for exp in experiments.values():
        exp["runs"].sort(key=lambda r: r["seed"])
    models = {name: Path(exp["runs"][0]["run_dir"]) / MODEL_DIR for name, exp in experiments.items()}
    log(f"timing {len(models)} deployed graph(s) (OpenVINO fp32, image to mask), {plan.budget.latency_runs} rounds")
    costs = measure_costs(models, plan.budget.latency_runs, options.threads)
    for name, exp in experiments.items():
        exp["costs"] = costs[name]
    train_device = plan.config(plan.names[0]).train.device
    doc = {"format": FORMAT, "command": options.command, "environment": environment(options.threads, train_device),
           "settings": settings_of(plan, options, experiments, size), "experiments": experiments,
           "total_minutes": (time.perf_counter() - start) / 60,
           "train_minutes": sum(r["train_seconds"] for e in experiments.values() for r in e["runs"]) / 60}
    return summarize_and_judge(doc)


def summarize_and_judge(doc: dict) -> dict:
    for exp in doc["experiments"].values():
        exp["summary"] = summarize(exp["runs"])
    return judge(doc)


def experiment_entry(plan: Plan, key: str) -> dict:
    job = next(job for job in plan.jobs if job.name == key)
    spec, cfg = plan.manifest.experiments.get(job.experiment), job.cfg
    rate = f", lr {cfg.train.lr:g}" if key != job.experiment else ""
    return {"label": spec.label + rate, "roles": list(spec.roles), "family": spec.family, "experiment": job.experiment,
            "hypothesis": spec.hypothesis,
            "lr": cfg.train.lr, "config": str(plan.manifest.config_path(job.experiment)),
            "model": {"name": cfg.model.name, **cfg.model_options()}, "runs": []}


def reuse_finished(plan: Plan, experiments: dict, log: Callable[[str], None], part: str | None = None) -> list:
    """Take the results of finished runs with the same config; return the jobs still to run:
    all unfinished ones, or with ``part`` only that part's (the others stay out of the page)."""
    from .experiments import part_jobs
    from .runs import finished_result

    wanted = plan.jobs if part is None else part_jobs(plan, part)
    pending = []
    for job in plan.jobs:
        result = finished_result(job)
        if result is not None:
            experiments[job.name]["runs"].append(result)
        elif any(job is other for other in wanted):
            pending.append(job)
    log(f"reusing {sum(len(e['runs']) for e in experiments.values())} finished run(s); {len(pending)} to train")
    return pending


def image_size(cfg) -> tuple[int, int]:
    """The validation images' size (the costs are measured at it): the dataset's, else the model's eval size."""
    from ..models.registry import get_config

    size = (cfg.data.val_dataset or cfg.data.dataset).get("size")
    return tuple(size) if size else tuple(get_config(cfg.model.name, **cfg.model_options()).eval_size)


def settings_of(plan: Plan, options: ClaimsOptions, experiments: dict, size: tuple[int, int]) -> dict:
    cfg = plan.config(plan.names[0])
    data, train = cfg.data, cfg.train
    counts = data.dataset.get("num_images") if isinstance(data.dataset.get("num_images"), dict) else {}
    first_run = next(iter(experiments.values()))["runs"][0]
    return {
        "preset": options.preset, "about": plan.budget.about, "seeds": plan.budget.seeds, "overrides": plan.budget.overrides,
        "config_dir": str(options.config_dir), "out": str(options.out),
        "steps": train.steps, "batch_size": train.batch_size, "crop_size": list(cfg.train_crop()),
        "optimizer": train.optimizer, "lr": train.lr, "schedule": train.schedule, "warmup_steps": train.warmup_steps,
        "image_size": list(size), "train_images": counts.get("train"), "val_images": first_run["val_images"],
        "bn_batches": train.precise_bn_batches, "latency_runs": plan.budget.latency_runs,
        "bn_tolerance_points": plan.manifest.bn_tolerance_points,
        "latency": {"runtime": LATENCY_RUNTIME, "precision": LATENCY_PRECISION, "threads": options.threads},
        "families": {family: label for family, label in plan.manifest.families.items()
                     if any(exp.get("family") == family for exp in experiments.values())},
    }


def environment(threads: int, train_device: str = "cpu") -> dict:
    """The machine; ``device`` (and ``gpu``) name where the runs trained, the latency is CPU's."""
    from ..benchmark.run import environment as bench_environment
    from ..devices import resolve_device

    env = bench_environment(threads, resolve_device(train_device))
    env["platform"] = platform.platform()
    return env


def load_report(out_dir: str | Path, preset: str = "full") -> dict:
    """The preset's claims document in ``out_dir`` (``claims.json``, or a study's
    ``claims_<preset>.json``), re-judged (for ``--report-only``)."""
    source = Path(out_dir) / json_name(preset)
    if not source.is_file():
        raise ConfigError(f"'{source}' does not exist; run `eseg reproduce` first (or pass the --out it used)")
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"'{source}' is not valid JSON ({exc}); re-run `eseg reproduce`") from exc
    found = doc.get("format", 1) if isinstance(doc, dict) else None
    if found != FORMAT:
        raise ConfigError(f"'{source}' holds claims format {found}, this `eseg reproduce` reads format {FORMAT} (both "
                          "BN scores per run, roles per experiment); re-run `eseg reproduce` to rewrite it")
    return judge(doc)
