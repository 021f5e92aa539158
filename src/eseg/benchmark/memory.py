"""Peak memory of one forward pass: each entry in a fresh child process on CPU (so models never
share an allocator), ``max_memory_allocated`` growth on CUDA."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class EntrySpec:
    """What builds one benchmark entry again, in a fresh process: the model, the variant, and the
    settings it was prepared with (``onnx_path``: where a graph variant's graph is)."""

    model: str
    variant: str
    size: tuple[int, int]
    threads: int
    num_classes: int
    encoder: str
    precision: str  # OpenVINO's inference precision
    model_options: dict
    onnx_path: str

    def build_model(self):
        from .models import build_model

        return build_model(self.model, num_classes=self.num_classes, encoder=self.encoder,
                           model_options=self.model_options)

    def prepare(self, model, device: torch.device):
        """``model`` (this entry's, built by :meth:`build_model`) prepared as the variant."""
        from .prepare import prepare_variant
        from .trained import check_graph_variant
        from .variants import VARIANTS

        check_graph_variant(self.model, VARIANTS.get(self.variant))
        return prepare_variant(model, self.variant, self.size, device=device, threads=self.threads,
                               onnx_path=Path(self.onnx_path), precision=self.precision)


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


def _memory_child(spec: EntrySpec, queue) -> None:
    """Build one model + variant, report the resident-set growth of 2 forward passes."""
    try:
        import resource

        torch.set_num_threads(spec.threads)
        runnable = spec.prepare(spec.build_model(), torch.device("cpu"))
        x = runnable.make_input(1)
        exact = _reset_peak_rss()
        before_kb = _proc_status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(2):
            runnable.fn(x)
        peak_kb = _proc_status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put({"peak_mem_mb": (peak_kb - before_kb) / 1024.0,
                   "memory_method": "VmHWM-VmRSS" if exact else "ru_maxrss delta"})
    except BaseException as exc:  # report any failure to the parent instead of dying silently
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure_cpu_memory(spec: EntrySpec, timeout: float = 900.0) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(spec, queue), daemon=True)
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:  # queue.Empty, or the child died
        result = {"error": f"memory child gave no result within {timeout:.0f} s"}
    proc.join(timeout=30)
    if proc.is_alive():
        proc.terminate()
    return result


def cuda_peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20
