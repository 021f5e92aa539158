"""The page's noise rule, shared by the single-point verdicts and the fronts. Torch-free."""
from __future__ import annotations

import math
import statistics


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def judged(delta: float, noise: float) -> dict:
    """The page's noise rule: a difference is clear only beyond ``noise``."""
    verdict = "higher" if delta > noise else "lower" if delta < -noise else "within noise"
    return {"delta": delta, "noise": noise, "verdict": verdict}


def percent(value: float | None) -> str:
    """A share as percent; n/a for a score JSON holds as null (NaN: e.g. a class absent)."""
    return "n/a" if value is None or value != value else f"{100 * value:.1f}"


def mean_std_text(summary: dict, key: str) -> str:
    """``key``'s mean ± std over seeds, in percent, as the page writes it."""
    return f"{percent(summary[key + '_mean'])} ± {percent(summary[key + '_std'])}"


def json_number(value: float | None) -> float:
    """A score read back from a claims document: JSON holds NaN as null."""
    return math.nan if value is None else value
