"""The paper's three claims, judged on a claims document against the run-to-run noise.

What an experiment stands for comes from the manifest's roles (recorded per experiment in the
document); the claims themselves, and how each is judged, are the paper's and live here:

1. ``max_level``: a deeper pyramid (P5 -> P7 -> P9) improves accuracy (far-away context);
2. ``bifpn`` vs ``fpn``: BiFPN fusion beats a plain top-down FPN over the same levels;
3. ``eseg`` vs ``deeplab``: ESeg matches or beats DeepLabV3+ on the same backbone at far lower cost.

Every score here is the precise-BN one (``mIoU``, ``context_mIoU``); ``bn_agreement`` checks it
against the running-BN score of the same weights. Torch-free.
"""
from __future__ import annotations

import math

from .fronts import family_front, front_comparison
from .noise import judged, json_number, mean_std

ROLES = ("max_level", "bifpn", "fpn", "eseg", "deeplab")
SINGLE_ROLES = ("bifpn", "fpn", "eseg", "deeplab")  # one experiment each
SCORES = ("mIoU", "context_mIoU")  # judged, precise BN
SUMMARY_KEYS = ("mIoU", "context_mIoU", "context_swap_rate", "running_bn_mIoU", "running_bn_context_mIoU",
                "train_seconds")


def summarize(runs: list[dict]) -> dict:
    """``<key>_mean`` and ``<key>_std`` over the runs (seeds) of one experiment."""
    out = {}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[f"{key}_mean"], out[f"{key}_std"] = mean_std(values) if values else (math.nan, math.nan)
    return out


def compare(doc: dict, a: str, b: str, key: str = "mIoU") -> dict:
    """b minus a, judged against the run-to-run spread: a difference is 'clear' when it exceeds
    the std of a difference of two single runs, sqrt(std_a^2 + std_b^2)."""
    sa, sb = doc["experiments"][a]["summary"], doc["experiments"][b]["summary"]
    delta = json_number(sb[f"{key}_mean"]) - json_number(sa[f"{key}_mean"])
    return judged(delta, math.hypot(json_number(sa[f"{key}_std"]), json_number(sb[f"{key}_std"])))


def seeds_run(doc: dict) -> list[int]:
    """The seeds of the runs the document holds (a part's page: those finished so far)."""
    return sorted({run["seed"] for exp in doc["experiments"].values() for run in exp["runs"]})


def with_role(doc: dict, role: str) -> list[str]:
    """The document's experiments with ``role``, in table order."""
    return [name for name, exp in doc["experiments"].items() if role in exp.get("roles", ())]


def comparison(doc: dict, a: str, b: str, what: str) -> dict:
    return {"what": what, "a": a, "b": b, **{key: compare(doc, a, b, key) for key in SCORES}}


def max_level_claim(doc: dict) -> dict | None:
    exps = doc["experiments"]
    series = sorted(with_role(doc, "max_level"), key=lambda n: exps[n]["model"].get("max_level", 0))
    if len(series) < 2:
        return None
    steps = [comparison(doc, a, b, f"`{a}` -> `{b}`") for a, b in zip(series, series[1:])]
    whole = comparison(doc, series[0], series[-1], f"`{series[0]}` -> `{series[-1]}` (the whole series)")
    levels = [exps[n]["model"].get("max_level") for n in series]
    ladder = " -> ".join(f"P{level}" if level else f"`{name}`" for level, name in zip(levels, series))
    ok = whole["mIoU"]["verdict"] == "higher" and all(s["mIoU"]["verdict"] != "lower" for s in steps)
    return {"claim": 1, "text": f"{ladder} improves accuracy (far-away context)",
            "comparisons": steps + ([whole] if len(steps) > 1 else []), "reproduced": ok}


def family_of(doc: dict, name: str) -> str | None:
    return doc["experiments"][name].get("family")


def on_fronts(doc: dict, a: str, b: str) -> dict | None:
    """Experiment ``a``'s family against ``b``'s at matched latency, when both are fronts (two or
    more points each); None otherwise (the claim is judged on the single points)."""
    fa, fb = family_of(doc, a), family_of(doc, b)
    if not (fa and fb) or fa == fb or min(len(family_front(doc, fa)), len(family_front(doc, fb))) < 2:
        return None
    return {key: front_comparison(doc, fa, fb, key) for key in SCORES}


def fusion_claim(doc: dict) -> dict | None:
    bifpn, fpn = with_role(doc, "bifpn"), with_role(doc, "fpn")
    if not (bifpn and fpn):
        return None
    cmp = comparison(doc, fpn[0], bifpn[0], f"`{bifpn[0]}` minus `{fpn[0]}`")
    front = on_fronts(doc, bifpn[0], fpn[0])
    ok = front["mIoU"]["verdict"] == "ahead" if front else cmp["mIoU"]["verdict"] == "higher"
    return {"claim": 2, "text": "BiFPN beats a plain top-down FPN over the same levels", "comparisons": [cmp],
            "front": front, "reproduced": ok}


def deeplab_claim(doc: dict) -> dict | None:
    eseg, deeplab = with_role(doc, "eseg"), with_role(doc, "deeplab")
    if not (eseg and deeplab):
        return None
    e, d = doc["experiments"][eseg[0]]["costs"], doc["experiments"][deeplab[0]]["costs"]
    cmp = comparison(doc, deeplab[0], eseg[0], f"`{eseg[0]}` minus `{deeplab[0]}`")
    ratios = {"GMACs": e["GMACs"] / d["GMACs"], "latency": e["latency_ms"] / d["latency_ms"]}
    front = on_fronts(doc, eseg[0], deeplab[0])
    if front:  # at matched latency the cost is equal by construction: the score decides
        ok = front["mIoU"]["verdict"] in ("ahead", "within noise") and front["mIoU"]["lower"] == 0
    else:
        ok = cmp["mIoU"]["verdict"] != "lower" and ratios["GMACs"] < 1 and ratios["latency"] < 1
    return {"claim": 3, "text": "ESeg matches or beats DeepLabV3+ (same backbone) at far lower cost",
            "comparisons": [cmp], "cost_ratio": {"of": eseg[0], "over": deeplab[0], **ratios},
            "front": front, "reproduced": ok}


def claim_verdicts(doc: dict) -> list[dict]:
    """Each claim whose experiments the document holds, with its comparisons and verdict."""
    claims = (max_level_claim(doc), fusion_claim(doc), deeplab_claim(doc))
    return [claim for claim in claims if claim is not None]


def bn_agreement(doc: dict) -> dict:
    """The largest gap between a run's running-BN and precise-BN mIoU, against the manifest's
    tolerance (the batch-norm issue: every experiment within 1.5 points)."""
    tolerance = doc["settings"]["bn_tolerance_points"]
    gaps = [(100 * abs(run["mIoU"] - run["running_bn_mIoU"]), name, run["seed"])
            for name, exp in doc["experiments"].items() for run in exp["runs"]]
    gap, name, seed = max(gaps)
    return {"tolerance_points": tolerance, "max_gap_points": gap, "worst_run": f"{name} seed {seed}",
            "within": gap <= tolerance}


def judge(doc: dict) -> dict:
    """(Re)compute the verdicts and the BN check of ``doc`` in place; returns it."""
    doc["claims"] = claim_verdicts(doc)
    doc["bn_check"] = bn_agreement(doc)
    return doc
