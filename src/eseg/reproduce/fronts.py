"""Fronts: each decoder family's mIoU against deployed latency, compared at matched latency.

A family (the manifest's ``family`` of its experiments) is trained at several widths; its *front*
is its points (one per experiment: mean and std of the precise-BN score over seeds, and the
OpenVINO image-to-mask latency) in latency order, joined by straight lines. Two families are
compared where their latencies meet: at every point of either one, the other's score is read off
its front at that latency, interpolated between its neighbouring points, or taken from its end
point when the latency lies within ``MATCH_TOLERANCE`` of it; latencies of the two fronts within
``SAME_LATENCY`` of each other count as one. A difference is judged by the page's
noise rule (:func:`eseg.reproduce.noise.judged`); one family is *ahead* when it is higher at
``AHEAD_MATCHES`` or more matched latencies. Torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .noise import judged, json_number

MATCH_TOLERANCE = 0.10  # a latency within 10 % of a front's end still matches that end point
SAME_LATENCY = 0.02  # points of the two fronts closer than 2 % in latency are one matched latency, counted once
AHEAD_MATCHES = 2  # "ahead" needs a clear difference at two or more matched latencies


@dataclass(frozen=True)
class Point:
    name: str
    latency_ms: float
    mean: float
    std: float


def family_front(doc: dict, family: str, key: str = "mIoU") -> list[Point]:
    """The family's points in latency order (experiments with costs and at least one run)."""
    points = [Point(name, exp["costs"]["latency_ms"], json_number(exp["summary"][f"{key}_mean"]),
                    json_number(exp["summary"][f"{key}_std"]))
              for name, exp in doc["experiments"].items() if exp.get("family") == family and "costs" in exp]
    return sorted(points, key=lambda p: p.latency_ms)


def families(doc: dict) -> list[str]:
    """The document's families, in table order of their first experiment."""
    seen: list[str] = []
    for exp in doc["experiments"].values():
        if exp.get("family") and exp["family"] not in seen:
            seen.append(exp["family"])
    return seen


def read_front(front: list[Point], latency_ms: float) -> tuple[float, float] | None:
    """(mean, std) of ``front`` at ``latency_ms``: interpolated between the points around it, the
    end point within the tolerance beyond either end, else None (no match)."""
    if not front:
        return None
    first, last = front[0], front[-1]
    if latency_ms < first.latency_ms:
        return (first.mean, first.std) if latency_ms >= first.latency_ms * (1 - MATCH_TOLERANCE) else None
    if latency_ms > last.latency_ms:
        return (last.mean, last.std) if latency_ms <= last.latency_ms * (1 + MATCH_TOLERANCE) else None
    for low, high in zip(front, front[1:]):
        if low.latency_ms <= latency_ms <= high.latency_ms:
            span = high.latency_ms - low.latency_ms
            t = 0.0 if span == 0 else (latency_ms - low.latency_ms) / span
            return low.mean + t * (high.mean - low.mean), low.std + t * (high.std - low.std)
    return (last.mean, last.std)  # a single point matched exactly


def distinct_latencies(points: list[Point]) -> list[float]:
    """The points' latencies in order, each within ``SAME_LATENCY`` of the one kept before it dropped."""
    kept: list[float] = []
    for latency in sorted(p.latency_ms for p in points):
        if not kept or latency > kept[-1] * (1 + SAME_LATENCY):
            kept.append(latency)
    return kept


def matched(a: list[Point], b: list[Point]) -> list[dict]:
    """``a`` minus ``b`` at every distinct latency of either front where the other front has a value."""
    rows = []
    for latency in distinct_latencies(a + b):
        at_a, at_b = read_front(a, latency), read_front(b, latency)
        if at_a is None or at_b is None:
            continue
        delta, noise = at_a[0] - at_b[0], math.hypot(at_a[1], at_b[1])
        rows.append({"latency_ms": latency, "a": at_a[0], "b": at_b[0], **judged(delta, noise)})
    return rows


def front_comparison(doc: dict, a: str, b: str, key: str = "mIoU") -> dict:
    """Family ``a`` against family ``b`` at matched latency, with the count of clear differences."""
    rows = matched(family_front(doc, a, key), family_front(doc, b, key))
    higher = sum(r["verdict"] == "higher" for r in rows)
    lower = sum(r["verdict"] == "lower" for r in rows)
    verdict = ("no matched latency" if not rows else "ahead" if higher >= AHEAD_MATCHES and not lower
               else "behind" if lower >= AHEAD_MATCHES and not higher else "mixed" if higher and lower
               else "within noise")
    return {"a": a, "b": b, "key": key, "matches": rows, "higher": higher, "lower": lower, "verdict": verdict}


def dominates(q: Point, p: Point) -> bool:
    """``q`` is at least as fast and as accurate as ``p``, and strictly one of the two."""
    return q.latency_ms <= p.latency_ms and q.mean >= p.mean and (q.latency_ms < p.latency_ms or q.mean > p.mean)


def pareto_names(doc: dict, key: str = "mIoU") -> list[str]:
    """The points of every family that no other point dominates (the joint front)."""
    points = [p for family in families(doc) for p in family_front(doc, family, key)]
    return [p.name for p in points if not any(dominates(q, p) for q in points if q is not p)]
