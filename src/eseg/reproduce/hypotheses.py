"""Hypotheses for ESeg's gap to DeepLabV3+: manifest experiments with a ``hypothesis``, each a
changed ESeg, read against the fronts of the same document at its own deployed latency: against
ESeg as shipped (does the change help ESeg?) and against DeepLabV3+ (does it close the gap?).
A change is *ahead* only where it is higher than ESeg's front beyond the page's noise rule.
Torch-free.
"""
from __future__ import annotations

import math

from ..tables import markdown_table
from .fronts import family_front, read_front
from .noise import judged, json_number, mean_std_text
from .verdicts import family_of, with_role

HYPOTHESIS_KEYS = ("mIoU", "context_mIoU")


def gap_to_front(doc: dict, name: str, family: str | None, key: str) -> dict | None:
    """``name``'s score minus ``family``'s front read at ``name``'s latency (None: no match)."""
    if family is None:
        return None
    exp = doc["experiments"][name]
    at = read_front(family_front(doc, family, key), exp["costs"]["latency_ms"])
    if at is None:
        return None
    mean, std = json_number(exp["summary"][f"{key}_mean"]), json_number(exp["summary"][f"{key}_std"])
    return judged(mean - at[0], math.hypot(std, at[1]))


def hypothesis_rows(doc: dict) -> list[dict]:
    """Per hypothesis experiment: its latency, scores, and its gaps to the ESeg and DeepLabV3+ fronts."""
    eseg, deeplab = with_role(doc, "eseg"), with_role(doc, "deeplab")
    fronts = {"eseg": family_of(doc, eseg[0]) if eseg else None,
              "deeplab": family_of(doc, deeplab[0]) if deeplab else None}
    rows = []
    for name, exp in doc["experiments"].items():
        if not exp.get("hypothesis") or "costs" not in exp:
            continue
        gaps = {f"{key}_vs_{front}": gap_to_front(doc, name, family, key)
                for key in HYPOTHESIS_KEYS for front, family in fronts.items()}
        rows.append({"name": name, "hypothesis": exp["hypothesis"], "latency_ms": exp["costs"]["latency_ms"],
                     "summary": exp["summary"], **gaps})
    return rows


def gap_text(gap: dict | None) -> str:
    """A judged difference as the page writes it: points, noise and verdict."""
    if gap is None:
        return "no matched latency"
    return f"{100 * gap['delta']:+.1f} ± {100 * gap['noise']:.1f} ({gap['verdict']})"


def hypotheses_table(doc: dict) -> list[str]:
    """The page's table of the document's hypotheses; nothing when it holds none."""
    rows = [[row["hypothesis"], f"`{row['name']}`", f"{row['latency_ms']:.1f}", mean_std_text(row["summary"], "mIoU"),
             gap_text(row["mIoU_vs_eseg"]), gap_text(row["mIoU_vs_deeplab"]), mean_std_text(row["summary"], "context_mIoU"),
             gap_text(row["context_mIoU_vs_eseg"]), gap_text(row["context_mIoU_vs_deeplab"])]
            for row in hypothesis_rows(doc)]
    if not rows:
        return []
    headers = ["hypothesis (the change to ESeg)", "experiment", "latency (ms)", "mIoU (%)", "minus ESeg's front",
               "minus DeepLabV3+'s front", "context mIoU (%)", "context minus ESeg's front",
               "context minus DeepLabV3+'s front"]
    return ["Each change against the fronts of this study (ESeg as shipped, DeepLabV3+ OS16), read at the change's own "
            "latency (interpolated, or an end point within ±10 %); differences in points, with the noise rule. A change "
            "counts only when it is higher than ESeg's front and stays so on 3 fresh seeds.", "",
            markdown_table(headers, rows), ""]
