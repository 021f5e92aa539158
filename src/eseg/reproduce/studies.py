"""The studies beside the main claims run: presets other than ``full`` and ``quick`` (the manifest's
``budget`` preset with 4x the steps, its ``lr`` sweep, the ``causes`` hypotheses, ...), each kept
as ``claims_<preset>.json`` next to ``claims.json`` and shown on the same page as ESeg's gap to
DeepLabV3+ under that preset, beside the gap of the same pair in the main run. Torch-free.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..tables import markdown_table
from .front_report import family_comparisons, trained_on
from .hypotheses import gap_text, hypotheses_table
from .noise import mean_std_text
from .verdicts import compare, with_role

MAIN_PRESETS = ("full", "quick")  # their document is claims.json


def json_name(preset: str) -> str:
    return "claims.json" if preset in MAIN_PRESETS else f"claims_{preset}.json"


def study_docs(out_dir: str | Path) -> dict[str, dict]:
    """Every study document in ``out_dir``, by preset, in name order."""
    docs = {}
    for path in sorted(Path(out_dir).glob("claims_*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["settings"]["preset"]] = doc
    return docs


def pair_gaps(doc: dict) -> list[dict]:
    """ESeg minus DeepLabV3+ (the roles ``eseg`` and ``deeplab``) at each learning rate of ``doc``:
    mIoU (the verdict's score) and, under ``context``, the context classes' mIoU."""
    rows = []
    for eseg in with_role(doc, "eseg"):
        lr = doc["experiments"][eseg].get("lr")
        deeplab = [n for n in with_role(doc, "deeplab") if doc["experiments"][n].get("lr") == lr]
        if deeplab:
            rows.append({"lr": lr, "eseg": eseg, "deeplab": deeplab[0], **compare(doc, deeplab[0], eseg),
                         "context": compare(doc, deeplab[0], eseg, "context_mIoU")})
    return rows


def _latencies(exps: dict, row: dict) -> str:
    ms = [exps[row[k]].get("costs", {}).get("latency_ms") for k in ("eseg", "deeplab")]
    return "n/a" if None in ms else f"{ms[0]:.1f} / {ms[1]:.1f} ({ms[0] / ms[1]:.2f}x)"


def study_section(preset: str, doc: dict, base: dict | None) -> list[str]:
    settings, exps, rows = doc["settings"], doc["experiments"], []
    for row in pair_gaps(doc):
        base_gap = base_gap_of(base, exps[row["eseg"]].get("experiment"), exps[row["deeplab"]].get("experiment"))
        scores = [mean_std_text(exps[row[k]]["summary"], "mIoU") for k in ("eseg", "deeplab")]
        rows.append([f"{row['lr']:g}", *scores,
                     gap_text(row), gap_text(row["context"]), _latencies(exps, row), base_gap])
    headers = ["lr", "ESeg mIoU (%)", "DeepLabV3+ mIoU (%)", f"ESeg minus DeepLabV3+, {settings['steps']} steps",
               "context mIoU, ESeg minus DeepLabV3+", "latency, ESeg / DeepLabV3+ (ms)", "the same pair in the main run"]
    trained = f"; its runs trained {doc['train_minutes']:.0f} min (one process each)" if "train_minutes" in doc else ""
    return [f"## Study `{preset}`: {settings.get('about') or 'another budget'}", "",
            f"Command: `{doc['command']}` — seeds {settings['seeds']}, {settings['steps']} steps, "
            f"{doc['total_minutes']:.0f} min on {trained_on(doc['environment'])}{trained}. Precise-BN mIoU, mean ± "
            "std over seeds; the noise rule of the verdicts; latency as on the fronts, timed in this study's own loop.",
            "", markdown_table(headers, rows) if rows else "No ESeg/DeepLabV3+ pair in this study.", "",
            *hypotheses_table(doc), *(family_comparisons(doc) if not swept(doc) else [])]


def swept(doc: dict) -> bool:
    """Whether the study sweeps the rate: its points of one family are then rates, not a front."""
    return len({exp.get("lr") for exp in doc["experiments"].values()}) > 1


def base_gap_of(base: dict | None, eseg: str | None, deeplab: str | None) -> str:
    if not base or eseg not in base["experiments"] or deeplab not in base["experiments"]:
        return "not run"
    cmp = compare(base, deeplab, eseg)
    return f"{100 * cmp['delta']:+.1f} ± {100 * cmp['noise']:.1f} ({cmp['verdict']}, {base['settings']['steps']} steps)"


def studies_section(out_dir: str | Path, base: dict) -> list[str]:
    lines: list[str] = []
    for preset, doc in study_docs(out_dir).items():
        lines += study_section(preset, doc, base)
    return lines
