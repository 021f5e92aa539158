"""Interleaved timing: every entry in the same loop, so machine load hits all alike."""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import torch

MATMUL_SIZE = 2048


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(entries: dict[str, Callable[[], object]], runs: int, warmup: int,
                      device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each entry, measured round-robin (start rotated every round)."""
    names = list(entries)
    for name in names:
        for _ in range(warmup):
            entries[name]()
        sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            start = time.perf_counter()
            entries[name]()
            sync(device)
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


def busy_fraction(seconds: float = 1.0) -> float | None:
    """Share of the machine's CPU time others used over ``seconds`` while this process slept
    (Linux /proc/stat; None elsewhere)."""
    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    first = sample()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None or second[0] == first[0]:
        return None
    return 1.0 - (second[1] - first[1]) / (second[0] - first[0])


def noise_warnings(times: dict[str, list[float]], runs: int, threads: int, busy: float | None) -> list[str]:
    """Why the figures may be noise: few runs, a busy machine before the run, or a wide spread."""
    warnings = []
    if runs < 5:
        warnings.append(f"only {runs} timed runs per entry: medians of so few calls move by 10% or more; use --runs 7+")
    cores = os.cpu_count() or 1
    if busy is not None and busy * cores > max(0.25, cores - threads):
        warnings.append(f"other processes used {100 * busy:.0f}% of the {cores} cores just before the run "
                        f"({threads} threads asked): figures are slower and noisier than on a quiet machine")
    for name, values in times.items():
        median, p90 = percentile(values, 50), percentile(values, 90)
        if len(values) >= 3 and p90 > 1.3 * median:
            warnings.append(f"{name}: p90 is {p90 / median:.2f}x the median; its figures are noisy")
    return warnings
