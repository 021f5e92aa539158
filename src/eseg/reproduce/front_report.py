"""The fronts on the claims page: the plot of mIoU against deployed latency, one line per family,
and the tables of each family against ESeg's at matched latency (:mod:`.fronts`)."""
from __future__ import annotations

from pathlib import Path

from ..tables import markdown_table
from .fronts import AHEAD_MATCHES, MATCH_TOLERANCE, family_front, families, front_comparison, pareto_names
from .noise import json_number, percent
from .verdicts import family_of, seeds_run, with_role

PLOT_FRONTS = "img/claims_fronts.png"


def latency_label(doc: dict) -> str:
    latency, size = doc["settings"]["latency"], doc["settings"]["image_size"]
    return (f"{latency['runtime']} {latency['precision']} image-to-mask latency, {size[0]}x{size[1]}, "
            f"{latency['threads']} threads (ms)")


def trained_on(env: dict) -> str:
    """Where the runs trained: the GPU by name, else the CPU with its threads."""
    cpu = f"{env['cpu']} ({env['threads']} threads)"
    return f"{env['gpu']} (training; timing on {cpu})" if env.get("gpu") else cpu


def eseg_family(doc: dict) -> str | None:
    eseg = with_role(doc, "eseg")
    return family_of(doc, eseg[0]) if eseg else None


def points_table(doc: dict) -> str:
    labels, rows = doc["settings"].get("families", {}), []
    on_front = set(pareto_names(doc))
    for family in families(doc):
        for point in family_front(doc, family):
            exp = doc["experiments"][point.name]
            rows.append([labels.get(family, family), f"`{point.name}`", f"{point.latency_ms:.1f}",
                         f"{exp['costs']['GMACs']:.3f}", f"{percent(point.mean)} ± {percent(point.std)}",
                         f"{len(exp['runs'])}", "yes" if point.name in on_front else ""])
    return markdown_table(["family", "experiment", "latency (ms)", "GMACs", "mIoU, precise BN (%)", "seeds",
                           "on the front"], rows)


def matched_table(comparison: dict) -> str:
    rows = [[f"{m['latency_ms']:.1f}", percent(m["a"]), percent(m["b"]), f"{100 * m['delta']:+.1f} ± {percent(m['noise'])}",
             m["verdict"]] for m in comparison["matches"]]
    return markdown_table(["latency (ms)", f"`{comparison['a']}`", f"`{comparison['b']}`", "difference (points)",
                           "verdict"], rows)


def comparison_lines(doc: dict, comparison: dict) -> list[str]:
    labels = doc["settings"].get("families", {})
    a, b = comparison["a"], comparison["b"]
    return [f"**{labels.get(a, a)}** minus **{labels.get(b, b)}**: {comparison['verdict']} "
            f"(higher at {comparison['higher']}, lower at {comparison['lower']} of "
            f"{len(comparison['matches'])} matched latencies).", "", matched_table(comparison), ""]


def fronts_section(doc: dict) -> list[str]:
    """Every family's points, the ESeg family against each other family at matched latency, and
    where ESeg stands on the joint front; nothing when the document holds no two-point front."""
    fams = [f for f in families(doc) if len(family_front(doc, f)) >= 2]
    if not fams:
        return []
    lines = ["## Fronts: mIoU against deployed latency", "",
             "Each decoder family on the same encoder at several widths; latency is the graph `eseg export` writes "
             f"by default, run by `eseg.Segmenter` from a normalized image to its mask ({latency_label(doc)}; the "
             "trained seed-0 weights, every point timed in one interleaved loop). Families are compared at matched "
             f"latency: at each point of either family the other is read off its front by linear interpolation "
             f"(or its end point within ±{100 * MATCH_TOLERANCE:.0f} %). *Ahead* means higher beyond the noise rule "
             f"at {AHEAD_MATCHES} or more matched latencies and lower at none. *On the front*: no point of any "
             "family is at least as fast and as accurate (mean mIoU) and better in one.", "", points_table(doc), "",
             f"![mIoU vs deployed latency]({PLOT_FRONTS})", ""]
    return lines + family_comparisons(doc)


def family_comparisons(doc: dict) -> list[str]:
    """The ESeg family against every other family with a front, at matched latency."""
    fams = [f for f in families(doc) if len(family_front(doc, f)) >= 2]
    ours, lines = eseg_family(doc), []
    for other in (f for f in fams if ours in fams and f != ours):
        lines += comparison_lines(doc, front_comparison(doc, ours, other))
    return lines


def plot_fronts(doc: dict, path: Path) -> None:
    """mIoU (mean ± std) against deployed latency: a line per family, a marker per other experiment."""
    from matplotlib.figure import Figure

    from ..viz import save_figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    labels = doc["settings"].get("families", {})
    for family in families(doc):
        front = family_front(doc, family)
        ax.errorbar([p.latency_ms for p in front], [100 * p.mean for p in front], yerr=[100 * p.std for p in front],
                    marker="o", capsize=3, label=labels.get(family, family))
    for name, exp in doc["experiments"].items():
        if not exp.get("family"):
            summary = exp["summary"]
            ax.errorbar([exp["costs"]["latency_ms"]], [100 * json_number(summary["mIoU_mean"])],
                        yerr=[100 * json_number(summary["mIoU_std"])], marker="s", mfc="white", linestyle="none",
                        capsize=3, label=exp["label"])
    ax.set_xlabel(latency_label(doc))
    ax.set_ylabel("validation mIoU, precise BN (%)")
    ax.set_title(f"mIoU vs deployed latency (mean ± std over {len(seeds_run(doc))} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    save_figure(fig, path)
