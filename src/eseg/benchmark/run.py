"""``run_benchmark``: every (model, variant) pair measured in one process and one run.

A variant (``--backends`` on the command line, ``backend`` in the results) is one way to run a
model: see :mod:`.variants`.

- latency: batch 1, preprocessing outside the timed region; after ``warmup`` calls per entry the
  entries run interleaved, A B C A B C ..., with the start rotated each round; median and p90;
- throughput: batch ``batch``, interleaved the same way, images per second from the median;
- roofline: a 2048^3 fp32 matmul at the same thread count is one more entry of the same loop, so
  "share of matmul" compares against what this machine delivered at that moment;
- GMACs: :func:`eseg.flops.count_macs` (``torch.utils.flop_counter``) at the input size;
- peak memory: see :mod:`.memory`;
- ratios: each entry's latency and memory over every reference model's, same backend.
"""
from __future__ import annotations

import copy
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..errors import ConfigError
from ..export.formats import sniff_graph_format
from ..sizes import format_size
from .memory import EntrySpec, cuda_peak_mb, measure_cpu_memory
from .models import build_or_skip
from .peers import PEERS
from .timing import (
    busy_fraction,
    interleaved_times,
    matmul_entry,
    noise_warnings,
    percentile,
)
from .trained import is_model_path, sizing_for


@dataclass
class Result:
    model: str
    backend: str  # the variant's name (the key results.json has always had)
    params_m: float
    gmacs: float
    precision: str = "fp32"
    latency_ms_median: float | None = None
    latency_ms_p90: float | None = None
    throughput_img_s: float | None = None
    batch: int = 1
    peak_mem_mb: float | None = None
    gflops_achieved: float | None = None
    matmul_share: float | None = None
    latency_vs: dict = field(default_factory=dict)  # reference model -> latency ratio
    memory_vs: dict = field(default_factory=dict)
    speedup_vs_eager: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class BenchmarkSettings:
    models: list[str]  # registered names, peers, and trained models' paths
    backends: list[str]  # variant names (--backends)
    size: tuple[int, int] | None = None  # None: a trained model's validated size, else 512x1024 (.trained)
    threads: int = 2
    runs: int = 10
    warmup: int = 2
    batch: int = 1
    throughput_runs: int = 3
    num_classes: int | None = None  # None: the first trained model's, else 19 (.trained)
    encoder: str | None = None
    references: list[str] = field(default_factory=list)
    device: str = "cpu"
    precision: str = "fp32"  # OpenVINO's inference precision
    memory: bool = True
    model_options: dict = field(default_factory=dict)


def check_models(models: list[str]) -> None:
    """Every ``--models`` entry is a registered model, a peer or a path to a trained model."""
    from .peers import benchmark_models

    known = set(benchmark_models())
    unknown = [m for m in models if m not in known and not is_model_path(m)]
    if unknown or not models:
        raise ConfigError(f"unknown model(s) {unknown}: neither a registered name nor an existing run folder, model "
                          f"folder or exported graph; choose from {', '.join(sorted(known))}, or name a path")


def check_settings(settings: BenchmarkSettings) -> None:
    from .variants import VARIANTS, variant_names

    check_models(settings.models)
    bad = [b for b in settings.backends if b not in VARIANTS]
    if bad or not settings.backends:
        raise ConfigError(f"unknown backend(s) {bad}; choose from {', '.join(variant_names())}")
    missing = [r for r in settings.references if r not in settings.models]
    if missing:
        raise ConfigError(f"--reference {', '.join(missing)} is not among --models {settings.models}")


def run_benchmark(settings: BenchmarkSettings, work_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Measure every (model, backend) pair; returns the results document (see the module doc)."""
    check_settings(settings)
    sizing = sizing_for(settings.models, settings.size, settings.num_classes, log)
    settings = replace(settings, size=sizing.size, num_classes=sizing.num_classes)
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was given but CUDA is not available")
    torch.set_num_threads(settings.threads)
    busy = busy_fraction()  # before this run loads the machine itself
    encoder = settings.encoder or sizing.encoder
    entries = Entries(settings, encoder, work_dir, device, log)
    entries.build()
    matmul_fn, matmul_flops = matmul_entry(device)
    single = {**entries.single, "__matmul__": matmul_fn}
    log(f"timing {len(single) - 1} entries + matmul, {settings.runs} interleaved rounds after {settings.warmup} warm-up calls")
    times = interleaved_times(single, settings.runs, settings.warmup, device)
    matmul_gflops = matmul_flops / statistics.median(times.pop("__matmul__")) / 1e9
    record_latency(entries.by_key, times, matmul_gflops)
    if entries.batched:
        log(f"throughput at batch {settings.batch}: {settings.throughput_runs} interleaved rounds")
        for key, values in interleaved_times(entries.batched, settings.throughput_runs, 1, device).items():
            entries.by_key[key].throughput_img_s = settings.batch / statistics.median(values)
    if settings.memory:
        measure_memory(entries.by_key, entries.single, entries.specs, device, log)
    references = settings.references or [m for m in settings.models if m in PEERS] or settings.models[:1]
    add_ratios(entries.results, references)
    trained = [name for name in settings.models if is_model_path(name)]
    return {"settings": {**asdict(settings), "size": list(settings.size), "encoder": encoder, "references": references,
                         "trained": trained},
            "environment": environment(settings.threads, device), "matmul_gflops": matmul_gflops,
            "skipped": entries.skipped, "warnings": noise_warnings(times, settings.runs, settings.threads, busy),
            "results": [asdict(r) for r in entries.results]}


def record_latency(by_key: dict, times: dict, matmul_gflops: float) -> None:
    for key, values in times.items():
        r = by_key[key]
        r.latency_ms_median = 1e3 * statistics.median(values)
        r.latency_ms_p90 = 1e3 * percentile(values, 90)
        r.gflops_achieved = 2 * r.gmacs / (r.latency_ms_median / 1e3)
        r.matmul_share = r.gflops_achieved / matmul_gflops
        r.throughput_img_s = 1e3 / r.latency_ms_median


@dataclass
class Entries:
    """Every (model, variant) entry of one run, built once: a result row each, and for each that
    runs its timed calls (batch 1 and ``batch``) and the spec a fresh process rebuilds it from."""

    settings: BenchmarkSettings
    encoder: str
    work_dir: Path
    device: torch.device
    log: Callable[[str], None] = print
    results: list[Result] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it was not built
    single: dict[str, Callable[[], object]] = field(default_factory=dict)
    batched: dict[str, Callable[[], object]] = field(default_factory=dict)
    specs: dict[str, EntrySpec] = field(default_factory=dict)
    by_key: dict[str, Result] = field(default_factory=dict)

    def build(self) -> None:
        """Build every model once and prepare each of its variants; a variant that cannot run a
        model is a row with its error, not a failed benchmark."""
        from ..flops import count_macs, count_params

        settings = self.settings
        for name in settings.models:
            model = build_or_skip(name, num_classes=settings.num_classes, encoder=self.encoder,
                                  model_options=settings.model_options, skipped=self.skipped, log=self.log)
            if model is None:
                continue
            params, macs = count_params(model) / 1e6, count_macs(model, settings.size) / 1e9
            for variant in settings.backends:
                self.add(Result(name, variant, params, macs, batch=settings.batch), model)
            self.log(f"built {name}: {params:.2f} M params, {macs:.2f} GMACs at {settings.size[0]}x{settings.size[1]}")

    def add(self, result: Result, model) -> None:
        """Prepare ``model`` as the variant ``result`` names; ``result`` gets its row."""
        settings, key = self.settings, f"{result.model}/{result.backend}"
        self.results.append(result)
        spec = EntrySpec(result.model, result.backend, tuple(settings.size), settings.threads, settings.num_classes,
                         self.encoder, settings.precision, settings.model_options, self.graph_path(result.model))
        try:
            runnable = spec.prepare(copy.deepcopy(model), self.device)
            x1 = runnable.make_input(1)
            xb = runnable.make_input(settings.batch) if settings.batch > 1 else None
            runnable.fn(x1)  # fail here, not inside the timing loop
        except Exception as exc:  # noqa: BLE001 - any variant's failure becomes a row with its error
            result.error = f"{type(exc).__name__}: {exc}"
            self.log(f"{key}: {result.error}")
            return
        result.precision = runnable.precision
        self.single[key] = lambda r=runnable, x=x1: r.fn(x)
        if xb is not None:
            self.batched[key] = lambda r=runnable, x=xb: r.fn(x)
        self.specs[key] = spec
        self.by_key[key] = result


    def graph_path(self, model: str) -> str:
        """Where a graph variant finds the model's graph: an exported graph's own file, else one
        exported into the work folder (a path-named model's name made a file name)."""
        if sniff_graph_format(model):
            return model
        name = re.sub(r"[^\w.-]+", "_", model.strip("./")) or "model"
        return str(self.work_dir / "onnx" / f"{name}_{format_size(self.settings.size)}.onnx")


def measure_memory(by_key: dict[str, Result], single: dict, specs: dict, device: torch.device, log) -> None:
    for key, result in by_key.items():
        if device.type == "cuda":
            result.peak_mem_mb, result.extra["memory_method"] = cuda_peak_mb(single[key], device), "max_memory_allocated"
            continue
        log(f"peak memory of {key} (fresh process)")
        mem = measure_cpu_memory(specs[key])
        if "error" in mem:
            result.extra["memory_error"] = mem["error"]
        else:
            result.peak_mem_mb, result.extra["memory_method"] = mem["peak_mem_mb"], mem["memory_method"]


def add_ratios(results: list[Result], references: list[str]) -> None:
    """Latency and memory over each reference model's on the same backend, and each entry's
    speed-up over the same model's eager run."""
    timed = {(r.model, r.backend): r for r in results if r.latency_ms_median}
    for r in results:
        if r.latency_ms_median is None:
            continue
        for reference in references:
            ref = timed.get((reference, r.backend))
            if ref is not None:
                r.latency_vs[reference] = r.latency_ms_median / ref.latency_ms_median
                if r.peak_mem_mb and ref.peak_mem_mb:
                    r.memory_vs[reference] = r.peak_mem_mb / ref.peak_mem_mb
        eager = timed.get((r.model, "eager"))
        if eager is not None:
            r.speedup_vs_eager = eager.latency_ms_median / r.latency_ms_median


def environment(threads: int, device: torch.device) -> dict:
    from importlib import metadata

    def version(name: str) -> str | None:
        try:  # the onnx and openvino extras are optional
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": version("onnxruntime"),
           "openvino": version("openvino"), "cpu": cpu_name(), "threads": threads, "device": str(device),
           "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()
