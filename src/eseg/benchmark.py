"""Side-by-side speed benchmark of ESeg variants and peer models, in one process and one run.

``eseg benchmark --models eseg_lite_s,lraspp_mobilenet_v3_large,smp_deeplabv3plus --size 512x1024
--threads 2 --runs 20 --warmup 3 --batch 4 --backends eager,channels_last,onnxruntime
--reference smp_deeplabv3plus --out bench/``

How it measures (machines are noisy, so every (model, backend) pair is timed in the same loop):

- latency: batch 1, preprocessing outside the timed region; after ``warmup`` calls per entry the
  entries run interleaved, A B C A B C ..., with the start rotated each round; median and p90;
- throughput: batch ``--batch``, interleaved the same way, images per second from the median;
- roofline: a 2048^3 fp32 matmul at the same thread count is one more entry of the same loop, so
  "share of matmul" compares against what this machine delivered at that moment;
- GMACs: :func:`eseg.flops.count_macs` (``torch.utils.flop_counter``, conv + matmul) of the eager
  model at the input size; achieved GFLOP/s = 2 * MACs / median latency;
- peak memory: on CPU, each entry in a fresh child process: the growth of the resident set
  (VmHWM after two forward passes minus VmRSS before them, HWM reset through
  ``/proc/self/clear_refs``), so models never share an allocator; on CUDA ``max_memory_allocated``.

Outputs in ``--out`` (each written atomically): ``results.json``, ``results.csv``,
``results.md`` (with ratios against ``--reference``) and ``pareto.png`` (latency vs GMACs).
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import fileio
from .errors import ConfigError
from .cli import parse_size


BACKENDS = ("eager", "channels_last", "compile", "onnxruntime")
TORCHVISION_PEERS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")
SMP_PEERS = {"smp_deeplabv3plus": "DeepLabV3Plus", "smp_fpn": "FPN"}
MATMUL_SIZE = 2048
PAPER = "ESeg paper (Meng et al., arXiv 2203.12683), the paper's own setup; not these untrained weights"
# Published Cityscapes val mIoU of models this benchmark can build (the only ones we may quote).
PUBLISHED_MIOU: dict[str, tuple[float, str]] = {
    "eseg_lite_s": (76.0, PAPER),
    "eseg_lite_l": (80.1, PAPER),
}


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


class _OutputTensor(nn.Module):
    """torchvision segmentation models return {'out': logits}; the benchmark wants the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def available_models() -> list[str]:
    from .models import list_models

    return list_models() + list(TORCHVISION_PEERS) + list(SMP_PEERS)


def build_model(
    name: str, *, num_classes: int = 19, encoder: str = "tf_efficientnet_lite0", eseg_overrides: dict | None = None
) -> nn.Module:
    """A randomly initialised model in eval mode whose forward returns (N, C, H, W) logits.

    ``encoder`` is the timm backbone of the smp peers (``tu-<encoder>``): pass the ESeg variant's.
    ``eseg_overrides`` are config overrides for the ESeg variants (ablations, tiny test models).
    """
    from .models import VARIANTS, create_model

    if name in VARIANTS:
        return create_model(name, num_classes=num_classes, **(eseg_overrides or {})).eval()
    if name in TORCHVISION_PEERS:
        import torchvision.models.segmentation as tvs

        builder = getattr(tvs, name)
        kwargs = {"aux_loss": False} if name != "lraspp_mobilenet_v3_large" else {}
        return _OutputTensor(builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)).eval()
    if name in SMP_PEERS:
        try:
            import segmentation_models_pytorch as smp
        except ImportError as exc:
            raise ConfigError(
                f"'{name}' needs segmentation_models_pytorch, the benchmark extra: pip install 'eseg[bench]' ({exc})"
            ) from exc
        return getattr(smp, SMP_PEERS[name])(encoder_name=f"tu-{encoder}", encoder_weights=None, classes=num_classes).eval()
    raise ConfigError(f"unknown benchmark model '{name}'; choose from {', '.join(available_models())}")


# ----------------------------------------------------------------------------------------------
# Backends: each turns a model into a callable on a prepared input
# ----------------------------------------------------------------------------------------------


@dataclass
class Runnable:
    """``fn(inputs)`` runs one forward; ``make_input(batch)`` builds what ``fn`` takes."""

    fn: Callable
    make_input: Callable[[int], object]


def prepare_backend(
    model: nn.Module, backend: str, size: tuple[int, int], *, device: torch.device, threads: int,
    onnx_path: Path | None = None, seed: int = 0,
) -> Runnable:
    def tensor(batch: int, channels_last: bool = False) -> torch.Tensor:
        x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed)).to(device)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    if backend == "eager":
        model = model.to(device)
        return Runnable(_no_grad(model), tensor)
    if backend == "channels_last":
        model = model.to(device, memory_format=torch.channels_last)
        return Runnable(_no_grad(model), lambda b: tensor(b, channels_last=True))
    if backend == "compile":
        model = model.to(device)
        if device.type == "cuda":  # the fp16 path: half weights and inputs, compiled
            model = model.half()
            compiled = torch.compile(model, mode="max-autotune-no-cudagraphs", dynamic=False)
            return Runnable(_no_grad(compiled), lambda b: tensor(b).half())
        compiled = torch.compile(model, dynamic=False)
        return Runnable(_no_grad(compiled), tensor)
    if backend == "onnxruntime":
        from .export import INPUT_NAME, export_onnx, onnx_session

        if onnx_path is None:
            raise ConfigError("the onnxruntime backend needs a path for the exported graph")
        if not onnx_path.is_file():
            export_onnx(model.cpu(), onnx_path, size=size)
        session = onnx_session(onnx_path, threads=threads, device=device)

        def run_session(x: np.ndarray):
            return session.run(None, {INPUT_NAME: x})

        return Runnable(run_session, lambda b: tensor(b).cpu().numpy())
    raise ConfigError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")


def _no_grad(model: Callable) -> Callable:
    def run(x):
        with torch.inference_mode():
            return model(x)

    return run


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(entries: dict[str, Callable[[], object]], runs: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each entry, measured round-robin (start rotated every round)."""
    names = list(entries)
    for name in names:
        for _ in range(warmup):
            entries[name]()
        _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            entries[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def matmul_entry(device: torch.device) -> tuple[Callable[[], object], float]:
    """A square fp32 matmul (the roofline reference) and its FLOPs."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=gen).to(device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=gen).to(device)
    return (lambda: torch.mm(a, b)), 2.0 * MATMUL_SIZE**3


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _memory_child(spec: dict, queue) -> None:
    """Runs in a fresh process: build one model + backend, report the RSS growth of 2 forwards."""
    try:
        import resource

        torch.set_num_threads(spec["threads"])
        model = build_model(spec["model"], num_classes=spec["num_classes"], encoder=spec["encoder"],
                            eseg_overrides=spec["eseg_overrides"])
        onnx_path = Path(spec["onnx_path"]) if spec["onnx_path"] else None
        runnable = prepare_backend(model, spec["backend"], tuple(spec["size"]), device=torch.device("cpu"),
                                   threads=spec["threads"], onnx_path=onnx_path)
        x = runnable.make_input(1)
        exact = _reset_peak_rss()
        before_kb = _proc_status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(2):
            runnable.fn(x)
        peak_kb = _proc_status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put({"peak_mem_mb": (peak_kb - before_kb) / 1024.0, "memory_method": "VmHWM-VmRSS" if exact else "ru_maxrss delta"})
    except BaseException as exc:  # report any failure to the parent instead of dying silently
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure_cpu_memory(spec: dict, timeout: float = 900.0) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(spec, queue), daemon=True)
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = {"error": f"memory child gave no result within {timeout:.0f} s"}
    proc.join(timeout=30)
    if proc.is_alive():
        proc.terminate()
    return result


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    model: str
    backend: str
    params_m: float
    gmacs: float
    latency_ms_median: float | None = None
    latency_ms_p90: float | None = None
    throughput_img_s: float | None = None
    batch: int = 1
    peak_mem_mb: float | None = None
    gflops_achieved: float | None = None
    matmul_share: float | None = None
    latency_vs_reference: float | None = None
    memory_vs_reference: float | None = None
    speedup_vs_eager: float | None = None
    published_miou: float | None = None
    miou_source: str | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class BenchmarkSettings:
    models: list[str]
    backends: list[str]
    size: tuple[int, int]
    threads: int = 2
    runs: int = 10
    warmup: int = 2
    batch: int = 1
    throughput_runs: int = 3
    num_classes: int = 19
    encoder: str | None = None
    reference: str | None = None
    device: str = "cpu"
    memory: bool = True
    eseg_overrides: dict = field(default_factory=dict)


def run_benchmark(settings: BenchmarkSettings, work_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Measure every (model, backend) pair; returns the results document (see module doc)."""
    from .models import VARIANTS

    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was given but CUDA is not available")
    torch.set_num_threads(settings.threads)
    encoder = settings.encoder or next(
        (VARIANTS[m].backbone for m in settings.models if m in VARIANTS), "tf_efficientnet_lite0"
    )
    entries = _prepare_entries(settings, encoder, work_dir, device, log)
    results, by_key, single = entries["results"], entries["by_key"], entries["single"]

    matmul_fn, matmul_flops = matmul_entry(device)
    single["__matmul__"] = matmul_fn
    log(f"timing {len(single) - 1} entries + matmul, {settings.runs} interleaved rounds after {settings.warmup} warm-up calls")
    times = interleaved_times(single, settings.runs, settings.warmup, device)
    matmul_gflops = matmul_flops / statistics.median(times.pop("__matmul__")) / 1e9
    for key, values in times.items():
        r = by_key[key]
        r.latency_ms_median = 1e3 * statistics.median(values)
        r.latency_ms_p90 = 1e3 * percentile(values, 90)
        r.gflops_achieved = 2 * r.gmacs / (r.latency_ms_median / 1e3)
        r.matmul_share = r.gflops_achieved / matmul_gflops
        r.throughput_img_s = 1e3 / r.latency_ms_median
    if entries["batched"]:
        log(f"throughput at batch {settings.batch}: {settings.throughput_runs} interleaved rounds")
        for key, values in interleaved_times(entries["batched"], settings.throughput_runs, 1, device).items():
            by_key[key].throughput_img_s = settings.batch / statistics.median(values)
    if settings.memory:
        _measure_memory(by_key, single, entries["specs"], device, log)

    reference = settings.reference or (results[0].model if results else None)
    add_ratios(results, reference)
    return {
        "settings": {**asdict(settings), "size": list(settings.size), "encoder": encoder, "reference": reference},
        "environment": environment(settings.threads, device),
        "matmul_gflops": matmul_gflops,
        "matmul_size": MATMUL_SIZE,
        "skipped": entries["skipped"],
        "results": [asdict(r) for r in results],
        "goals": speed_goals(results),
    }


def _prepare_entries(settings: BenchmarkSettings, encoder: str, work_dir: Path, device: torch.device,
                     log: Callable[[str], None]) -> dict:
    """Build every model and backend once; a backend that cannot run a model is reported, not fatal."""
    from .flops import count_macs, count_params

    results: list[Result] = []
    skipped: dict[str, str] = {}
    single: dict[str, Callable[[], object]] = {}
    batched: dict[str, Callable[[], object]] = {}
    specs: dict[str, dict] = {}
    by_key: dict[str, Result] = {}
    for name in settings.models:
        try:
            model = build_model(name, num_classes=settings.num_classes, encoder=encoder,
                                eseg_overrides=settings.eseg_overrides)
        except ConfigError as exc:
            if name in SMP_PEERS:  # optional extra missing: say so and go on with the others
                skipped[name] = str(exc)
                log(f"skipping {name}: {exc}")
                continue
            raise
        params = count_params(model)
        macs = count_macs(model, settings.size)
        published = PUBLISHED_MIOU.get(name)
        for backend in settings.backends:
            key = f"{name}/{backend}"
            result = Result(name, backend, params / 1e6, macs / 1e9, batch=settings.batch,
                            published_miou=published[0] if published else None,
                            miou_source=published[1] if published else None)
            results.append(result)
            onnx_path = work_dir / "onnx" / f"{name}_{settings.size[0]}x{settings.size[1]}.onnx"
            try:
                runnable = prepare_backend(copy.deepcopy(model), backend, settings.size, device=device,
                                           threads=settings.threads, onnx_path=onnx_path)
                x1 = runnable.make_input(1)
                xb = runnable.make_input(settings.batch) if settings.batch > 1 else None
                runnable.fn(x1)  # fail here, not inside the timing loop
            except Exception as exc:  # noqa: BLE001 - any backend failure becomes a row with its error
                result.error = f"{type(exc).__name__}: {exc}"
                log(f"{key}: {result.error}")
                continue
            single[key] = (lambda r=runnable, x=x1: r.fn(x))
            if xb is not None:
                batched[key] = (lambda r=runnable, x=xb: r.fn(x))
            specs[key] = {"model": name, "backend": backend, "size": list(settings.size), "threads": settings.threads,
                          "num_classes": settings.num_classes, "encoder": encoder,
                          "eseg_overrides": settings.eseg_overrides,
                          "onnx_path": str(onnx_path) if backend == "onnxruntime" else None}
            by_key[key] = result
        log(f"built {name}: {params / 1e6:.2f} M params, {macs / 1e9:.2f} GMACs at {settings.size[0]}x{settings.size[1]}")
    return {"results": results, "skipped": skipped, "single": single, "batched": batched, "specs": specs,
            "by_key": by_key}


def _measure_memory(by_key: dict[str, Result], single: dict, specs: dict, device: torch.device,
                    log: Callable[[str], None]) -> None:
    for key, result in by_key.items():
        if device.type == "cuda":
            result.peak_mem_mb, result.extra["memory_method"] = _cuda_peak_mb(single[key], device), "max_memory_allocated"
            continue
        log(f"peak memory of {key} (fresh process)")
        mem = measure_cpu_memory(specs[key])
        if "error" in mem:
            result.extra["memory_error"] = mem["error"]
        else:
            result.peak_mem_mb, result.extra["memory_method"] = mem["peak_mem_mb"], mem["memory_method"]


def _cuda_peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def add_ratios(results: list[Result], reference: str | None) -> None:
    """Latency and memory over the reference model's (same backend if measured, else eager),
    and each entry's speed-up over the same model's eager run."""
    timed = {(r.model, r.backend): r for r in results if r.latency_ms_median}
    for r in results:
        if r.latency_ms_median is None:
            continue
        ref = timed.get((reference, r.backend)) or timed.get((reference, "eager"))
        if ref is not None:
            r.latency_vs_reference = r.latency_ms_median / ref.latency_ms_median
            if r.peak_mem_mb and ref.peak_mem_mb:
                r.memory_vs_reference = r.peak_mem_mb / ref.peak_mem_mb
        eager = timed.get((r.model, "eager"))
        if eager is not None:
            r.speedup_vs_eager = eager.latency_ms_median / r.latency_ms_median


def speed_goals(results: list[Result], model: str = "eseg_lite_s") -> list[dict]:
    """The issue's design goals, evaluated on whatever entries this run measured."""
    timed = {(r.model, r.backend): r for r in results if r.latency_ms_median}
    goals = []

    def goal(text: str, value: float | None, target: float, lower_is_better: bool = True) -> None:
        if value is not None:
            met = value <= target if lower_is_better else value >= target
            goals.append({"goal": text, "value": round(value, 3), "target": target, "met": bool(met)})

    best = min((r for (m, _), r in timed.items() if m == model), key=lambda r: r.latency_ms_median, default=None)
    eager = timed.get((model, "eager"))
    for peer, target in (("smp_deeplabv3plus", 0.30), ("lraspp_mobilenet_v3_large", 1.0)):
        peer_eager = timed.get((peer, "eager"))
        if eager and peer_eager:
            goal(f"{model} eager latency / {peer} eager", eager.latency_ms_median / peer_eager.latency_ms_median, target)
        if best and best.backend != "eager":
            peer_same = timed.get((peer, best.backend)) or peer_eager
            if peer_same:
                goal(f"{model} {best.backend} latency / {peer} {peer_same.backend}",
                     best.latency_ms_median / peer_same.latency_ms_median, target)
    ort = timed.get((model, "onnxruntime"))
    if ort and eager:
        goal(f"{model} onnxruntime speed-up over eager", eager.latency_ms_median / ort.latency_ms_median, 1.5, False)
    if best:
        goal(f"{model} ({best.backend}) achieved GFLOP/s share of matmul", best.matmul_share, 0.35, False)
    dlv3 = timed.get(("smp_deeplabv3plus", "eager"))
    if eager and dlv3 and eager.peak_mem_mb and dlv3.peak_mem_mb:
        goal(f"{model} eager peak memory / smp_deeplabv3plus eager", eager.peak_mem_mb / dlv3.peak_mem_mb, 0.5)
    return goals


def environment(threads: int, device: torch.device) -> dict:
    from importlib import metadata

    try:  # onnxruntime is an optional extra; eager-only runs (e.g. eseg reproduce) go without it
        ort_version = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort_version = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort_version,
           "cpu": cpu, "threads": threads, "device": str(device), "command": " ".join(sys.argv),
           "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------


COLUMNS = [
    ("model", "model", "{}"), ("backend", "backend", "{}"), ("params_m", "params (M)", "{:.2f}"),
    ("gmacs", "GMACs", "{:.2f}"), ("latency_ms_median", "latency median (ms)", "{:.1f}"),
    ("latency_ms_p90", "p90 (ms)", "{:.1f}"), ("throughput_img_s", "img/s @batch", "{:.2f}"),
    ("peak_mem_mb", "peak mem (MB)", "{:.0f}"), ("gflops_achieved", "GFLOP/s", "{:.1f}"),
    ("matmul_share", "of matmul", "{:.0%}"), ("latency_vs_reference", "latency / ref", "{:.2f}x"),
    ("memory_vs_reference", "memory / ref", "{:.2f}x"), ("speedup_vs_eager", "speed-up vs eager", "{:.2f}x"),
    ("published_miou", "published mIoU", "{:.1f}"),
]


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def markdown_report(doc: dict) -> str:
    s, env = doc["settings"], doc["environment"]
    lines = [
        f"# eseg benchmark at {s['size'][0]}x{s['size'][1]}",
        "",
        f"{env['cpu']}, {s['threads']} threads, device {env['device']}, torch {env['torch']}, onnxruntime "
        f"{env['onnxruntime']}; batch 1 latency over {s['runs']} interleaved rounds after {s['warmup']} warm-up calls; "
        f"throughput at batch {s['batch']}; reference model: **{s['reference']}**; smp encoder: tu-{s['encoder']}.",
        f"In-run fp32 matmul ({doc['matmul_size']}^3): **{doc['matmul_gflops']:.1f} GFLOP/s**.",
        "",
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for r in doc["results"]:
        cells = [_cell(r[key], fmt) for key, _, fmt in COLUMNS]
        if r["published_miou"] is not None:
            cells[-1] += "†"
        if r["error"]:
            cells[4] = f"failed: {r['error'][:80]}"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Untrained weights: mIoU is not measured here. † " + PAPER + ".",
              "Peak memory: " + ("CUDA max_memory_allocated growth" if env["device"].startswith("cuda") else
                                 "resident-set growth of two forward passes, each entry in a fresh process") + "."]
    if doc["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in doc["skipped"].items())]
    if doc["goals"]:
        lines += ["", "## Speed goals (design goals, this run)", "", "| goal | value | target | met |", "|---|---|---|---|"]
        for g in doc["goals"]:
            lines.append(f"| {g['goal']} | {g['value']:.3f} | {g['target']} | {'yes' if g['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def csv_report(doc: dict) -> str:
    buffer = io.StringIO()
    keys = [k for k in doc["results"][0] if k != "extra"] if doc["results"] else []
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in doc["results"]:
        writer.writerow(r)
    return buffer.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both GMACs and latency (lower is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 <= y) and (x2, y2) != (x, y) for x2, y2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["results"] if r["latency_ms_median"]]
    markers = {"eager": "o", "channels_last": "s", "compile": "^", "onnxruntime": "D"}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for backend in dict.fromkeys(r["backend"] for r in rows):
        sel = [r for r in rows if r["backend"] == backend]
        ax.scatter([r["gmacs"] for r in sel], [r["latency_ms_median"] for r in sel], marker=markers.get(backend, "x"),
                   label=backend, s=40)
    points = [(r["gmacs"], r["latency_ms_median"]) for r in rows]
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=0.8, label="Pareto front")
    for r in rows:
        text = r["model"]
        if r["published_miou"] is not None:
            text += f"\n{r['published_miou']:.1f}% Cityscapes mIoU†"
        ax.annotate(text, (r["gmacs"], r["latency_ms_median"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    s = doc["settings"]
    ax.set_xlabel(f"GMACs at {s['size'][0]}x{s['size'][1]}")
    ax.set_ylabel("batch-1 latency, median (ms)")
    ax.set_title(f"{doc['environment']['cpu']}, {s['threads']} threads ({doc['environment']['device']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, "† published by the ESeg paper (arXiv 2203.12683) for its own setup; our weights are untrained.",
             fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_reports(doc: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("results.json", "results.csv", "results.md", "pareto.png")}
    fileio.write_json(paths["results.json"], doc)
    fileio.write_text(paths["results.csv"], csv_report(doc))
    fileio.write_text(paths["results.md"], markdown_report(doc))
    pareto_plot(doc, paths["pareto.png"])
    return paths


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="eseg_lite_s,lraspp_mobilenet_v3_large,deeplabv3_mobilenet_v3_large,"
                        "fcn_resnet50,smp_deeplabv3plus,smp_fpn",
                        help="comma-separated: ESeg variants (eseg models), " + ", ".join(TORCHVISION_PEERS + tuple(SMP_PEERS)))
    parser.add_argument("--size", default="512x1024", help="input HxW (default 512x1024)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for torch and onnxruntime")
    parser.add_argument("--runs", type=int, default=10, help="timed batch-1 rounds per entry")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls per entry")
    parser.add_argument("--batch", type=int, default=1, help="batch size for the throughput measurement")
    parser.add_argument("--throughput-runs", type=int, default=3, help="timed rounds at --batch")
    parser.add_argument("--backends", default="eager", help="comma-separated: " + ", ".join(BACKENDS))
    parser.add_argument("--reference", default=None, help="model the ratios are taken against (default: the first)")
    parser.add_argument("--encoder", default=None,
                        help="timm encoder of the smp peers (default: the first ESeg variant's backbone)")
    parser.add_argument("--eseg-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for the ESeg variants, e.g. fpn_repeats=2 head_layers=0")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-entry peak memory measurement")
    parser.add_argument("--out", default="benchmark", help="output folder (default: ./benchmark)")


def parse_overrides(items: list[str]) -> dict:
    """['fpn_width=16', 'act=relu'] -> {'fpn_width': 16, 'act': 'relu'} (values parsed as YAML)."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--eseg-overrides takes KEY=VALUE items, got '{item}'")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def run(args: argparse.Namespace) -> int:
    models, backends = _csv_list(args.models), _csv_list(args.backends)
    known = set(available_models())
    unknown = [m for m in models if m not in known]
    if unknown or not models:
        raise ConfigError(f"unknown model(s) {unknown}; choose from {', '.join(sorted(known))}")
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise ConfigError(f"unknown backend(s) {bad}; choose from {', '.join(BACKENDS)}")
    if args.reference and args.reference not in models:
        raise ConfigError(f"--reference {args.reference} is not among --models {models}")
    for flag in ("runs", "warmup", "batch", "threads", "throughput_runs"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    settings = BenchmarkSettings(
        models=models, backends=backends, size=parse_size(args.size), threads=args.threads, runs=args.runs,
        warmup=args.warmup, batch=args.batch, throughput_runs=args.throughput_runs, num_classes=args.num_classes,
        encoder=args.encoder, reference=args.reference, device=args.device, memory=not args.no_memory,
        eseg_overrides=parse_overrides(args.eseg_overrides),
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work:
        doc = run_benchmark(settings, Path(work))
    paths = write_reports(doc, out_dir)
    print(markdown_report(doc))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
