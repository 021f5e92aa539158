"""Peak memory of one forward pass: each entry in a fresh child process on CPU (so models never
share an allocator), ``max_memory_allocated`` growth on CUDA."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import torch


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
    """Build one model + backend, report the resident-set growth of 2 forward passes."""
    try:
        import resource

        from .backends import prepare_backend
        from .models import build_model

        torch.set_num_threads(spec["threads"])
        model = build_model(spec["model"], num_classes=spec["num_classes"], encoder=spec["encoder"],
                            model_options=spec["model_options"])
        runnable = prepare_backend(model, spec["backend"], tuple(spec["size"]), device=torch.device("cpu"),
                                   threads=spec["threads"], precision=spec["precision"],
                                   onnx_path=Path(spec["onnx_path"]) if spec["onnx_path"] else None)
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


def measure_cpu_memory(spec: dict, timeout: float = 900.0) -> dict:
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
