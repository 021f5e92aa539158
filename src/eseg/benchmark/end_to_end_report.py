"""The end-to-end benchmark's outputs (:mod:`.end_to_end`): markdown and CSV tables and results.json,
written like the other benchmark tables (:func:`eseg.tables.markdown_table`)."""
from __future__ import annotations

from pathlib import Path

from .. import fileio
from ..tables import csv_table, markdown_table
from .report import table_cell

OUTPUT_NAMES = {"lowres": "low-res logits, exact argmax", "full": "full-res logits (native), argmax"}
COLUMNS = [
    ("model", "model", "{}"), ("output", "output -> mask", "{}"), ("size", "size", "{}"), ("backend", "backend", "{}"),
    ("precision", "precision", "{}"), ("weights", "weights", "{}"), ("network_ms_median", "network (ms)", "{:.1f}"),
    ("end_to_end_ms_per_image", "end to end (ms/img)", "{:.1f}"), ("images_per_s", "img/s", "{:.2f}"),
    ("end_to_end_over_network", "end to end / network", "{:.2f}x"), ("startup_s", "start-up (s)", "{:.1f}"),
    ("disagreeing_cells", "disagreeing cells", "{:.1%}"),
    ("pixels_differing_from_native", "mask px != native", "{:.4%}"),
]
FAILURE_COLUMN = "network_ms_median"


def reference_labels(doc: dict) -> list[str]:
    """The reference rows the ratios are taken against, in --reference order, full before lowres."""
    found = {label for row in doc["end_to_end"] for label in row["end_to_end_vs"]}
    return [f"{ref} ({output})" for ref in doc["settings"]["references"] for output in ("full", "lowres")
            if f"{ref} ({output})" in found]


def table_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    refs = reference_labels(doc)
    headers = [title for _, title, _ in COLUMNS] + [f"end to end / {ref}" for ref in refs]
    rows = []
    for r in doc["end_to_end"]:
        values = {**r, "output": OUTPUT_NAMES.get(r["output"], r["output"]), "size": f"{r['size'][0]}x{r['size'][1]}"}
        cells = {key: table_cell(values[key], fmt) for key, _, fmt in COLUMNS}
        if r["error"]:
            cells[FAILURE_COLUMN] = f"failed: {r['error'][:80]}"
        rows.append(list(cells.values()) + [table_cell(r["end_to_end_vs"].get(ref), "{:.2f}x") for ref in refs])
    return headers, rows


def markdown_report(doc: dict) -> str:
    s, env = doc["settings"], doc["environment"]
    headers, rows = table_rows(doc)
    fit = s["fit"]
    weights = (f"untrained models fitted first: {fit['steps']} AdamW steps of {fit['batch']} synthetic scenes of "
               f"{fit['size'][0]}x{fit['size'][1]}, lr {fit['lr']}" if fit["steps"] else "random init (no --fit-steps)")
    images = f"the first {s['images']} images of {s['source']}" if s["source"] else \
        f"{s['images']} synthetic street scenes per size (PNG)"
    lines = [
        "# eseg benchmark --end-to-end: image file to mask file", "",
        f"{env['cpu']}, {s['threads']} threads, torch {env['torch']}, onnxruntime {env['onnxruntime']}, openvino "
        f"{env['openvino']}; OpenVINO precision {s['precision']}; fixed-size graphs, batch 1; {images}; "
        f"{s['runs']} interleaved rounds, medians; eseg predict's pipeline with --save masks; {weights}.", "",
        markdown_table(headers, rows), "",
        "network: the graph alone on decoded, normalised images; end to end: decode, normalise, network, mask, write "
        "the mask PNG, through the same pipeline for every row, start-up apart; disagreeing cells: the share of "
        "low-resolution cells whose corners disagree (where the exact rule computes the upsample).",
    ]
    for title, items in (("Notes", doc.get("notes")), ("Skipped", [f"{k} ({v})" for k, v in doc["skipped"].items()]),
                         ("**Warnings** (the figures may be noise)", doc.get("warnings"))):
        if items:
            lines += ["", f"{title}:", ""] + [f"- {item}" for item in items]
    return "\n".join(lines) + "\n"


def csv_report(doc: dict) -> str:
    return csv_table(*table_rows(doc))


def write_reports(doc: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("results.json", "results.csv", "results.md")}
    fileio.write_json(paths["results.json"], doc)
    fileio.write_text(paths["results.csv"], csv_report(doc))
    fileio.write_text(paths["results.md"], markdown_report(doc))
    return paths
