"""The benchmark's outputs: markdown and CSV tables, results.json and a latency-vs-GMACs plot."""
from __future__ import annotations

import math
from pathlib import Path

from .. import fileio
from ..tables import csv_table, markdown_table

COLUMNS = [
    ("model", "model", "{}"), ("backend", "backend", "{}"), ("precision", "precision", "{}"),
    ("params_m", "params (M)", "{:.2f}"), ("gmacs", "GMACs", "{:.2f}"), ("latency_ms_median", "latency median (ms)", "{:.1f}"),
    ("latency_ms_p90", "p90 (ms)", "{:.1f}"), ("throughput_img_s", "img/s @batch", "{:.2f}"),
    ("peak_mem_mb", "peak mem (MB)", "{:.0f}"), ("gflops_achieved", "GFLOP/s", "{:.1f}"),
    ("matmul_share", "of matmul", "{:.0%}"), ("speedup_vs_eager", "speed-up vs eager", "{:.2f}x"),
]
FAILURE_COLUMN = "latency_ms_median"  # where a row that did not run says why


def table_cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def table_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    refs = doc["settings"]["references"]
    headers = [title for _, title, _ in COLUMNS] + [f"latency / {r}" for r in refs] + [f"memory / {r}" for r in refs]
    rows = []
    for r in doc["results"]:
        cells = {key: table_cell(r[key], fmt) for key, _, fmt in COLUMNS}
        if r["error"]:
            cells[FAILURE_COLUMN] = f"failed: {r['error'][:80]}"
        rows.append(list(cells.values()) + [table_cell(r["latency_vs"].get(ref), "{:.2f}x") for ref in refs]
                    + [table_cell(r["memory_vs"].get(ref), "{:.2f}x") for ref in refs])
    return headers, rows


def weights(settings: dict) -> str:
    """Which weights were timed: random, except the trained models named by their path."""
    trained = settings.get("trained") or []
    return "random init" + (f" except the trained {', '.join(trained)} ({settings['num_classes']} classes for "
                             "the others)" if trained else "")


def markdown_report(doc: dict) -> str:
    s, env = doc["settings"], doc["environment"]
    headers, rows = table_rows(doc)
    lines = [
        f"# eseg benchmark at {s['size'][0]}x{s['size'][1]}", "",
        f"{env['cpu']}, {s['threads']} threads, device {env['device']}, torch {env['torch']}, onnxruntime "
        f"{env['onnxruntime']}, openvino {env['openvino']}; OpenVINO precision {s['precision']}; batch 1 latency over "
        f"{s['runs']} interleaved rounds after {s['warmup']} warm-up calls; throughput at batch {s['batch']}; "
        f"{weights(s)}; smp encoder tu-{s['encoder']}.",
        f"In-run fp32 matmul (2048^3): **{doc['matmul_gflops']:.1f} GFLOP/s**.", "",
        markdown_table(headers, rows),
    ]
    if s.get("memory", True):
        lines += ["", "Peak memory: " + ("CUDA max_memory_allocated growth" if env["device"].startswith("cuda") else
                                         "resident-set growth of two forward passes, each entry in a fresh process") + "."]
    if doc["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in doc["skipped"].items())]
    if doc.get("warnings"):
        lines += ["", "**Warnings** (the figures may be noise):", ""] + [f"- {w}" for w in doc["warnings"]]
    return "\n".join(lines) + "\n"


def csv_report(doc: dict) -> str:
    return csv_table(*table_rows(doc))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both GMACs and latency (lower is better)."""
    front = [i for i, (x, y) in enumerate(points)
             if not any((x2 <= x and y2 <= y) and (x2, y2) != (x, y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    from ..viz import save_figure

    rows = [r for r in doc["results"] if r["latency_ms_median"]]
    markers = {"eager": "o", "channels_last": "s", "compile": "^", "onnxruntime": "D", "openvino": "P"}
    fig = Figure(figsize=(8, 5.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for backend in dict.fromkeys(r["backend"] for r in rows):
        sel = [r for r in rows if r["backend"] == backend]
        ax.scatter([r["gmacs"] for r in sel], [r["latency_ms_median"] for r in sel], marker=markers.get(backend, "x"),
                   label=backend, s=40)
    points = [(r["gmacs"], r["latency_ms_median"]) for r in rows]
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=0.8, label="Pareto front")
    for r in rows:
        ax.annotate(r["model"], (r["gmacs"], r["latency_ms_median"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    s = doc["settings"]
    ax.set_xlabel(f"GMACs at {s['size'][0]}x{s['size'][1]}")
    ax.set_ylabel("batch-1 latency, median (ms)")
    ax.set_title(f"{doc['environment']['cpu']}, {s['threads']} threads ({doc['environment']['device']}, "
                 f"OpenVINO {s['precision']}); {weights(s)}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_reports(doc: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("results.json", "results.csv", "results.md", "pareto.png")}
    fileio.write_json(paths["results.json"], doc)
    fileio.write_text(paths["results.csv"], csv_report(doc))
    fileio.write_text(paths["results.md"], markdown_report(doc))
    pareto_plot(doc, paths["pareto.png"])
    return paths
