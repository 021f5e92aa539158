"""``eseg models``: the variant table with params and GMACs (torch.utils.flop_counter)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .. import fileio
from ..errors import ConfigError
from ..flops import count_macs, count_params
from .eseg import ESeg
from .registry import get_config, list_models

REFERENCE_SIZE = (1024, 2048)


def variant_rows(names: list[str] | None = None, num_classes: int = 19) -> list[dict]:
    rows = []
    for name in names or list_models():
        config = get_config(name, num_classes=num_classes)
        with torch.device("meta"):
            model = ESeg(config).eval()
        rows.append(
            {
                "model": name,
                "backbone": config.backbone,
                "levels": f"P{config.min_level}-P{config.max_level}",
                "W": config.fpn_width,
                "D": config.fpn_repeats,
                "head": f"{config.head_width}x{config.head_layers}",
                "params_M": round(count_params(model) / 1e6, 2),
                "eval_size": f"{config.eval_size[0]}x{config.eval_size[1]}",
                "gmacs_eval": round(count_macs(model, config.eval_size) / 1e9, 2),
                "gmacs_1024x2048": round(count_macs(model, REFERENCE_SIZE) / 1e9, 2),
                "train_crop": f"{config.train_crop[0]}x{config.train_crop[1]}",
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    headers = {
        "model": "model", "backbone": "backbone", "levels": "levels", "W": "W", "D": "D",
        "head": "head W x layers", "params_M": "params (M)", "eval_size": "eval H x W",
        "gmacs_eval": "GMACs @ eval", "gmacs_1024x2048": "GMACs @ 1024x2048", "train_crop": "train crop",
    }
    lines = ["| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[k]) for k in headers) + " |")
    return "\n".join(lines)


TABLE_START = "<!-- eseg-models-table:start -->"
TABLE_END = "<!-- eseg-models-table:end -->"
FOOTNOTE = (
    "Variant configurations are eseg's own design (the paper publishes none). GMACs are counted with "
    "torch.utils.flop_counter for 19 classes; inputs are padded to a multiple of 2**max_level."
)


def update_document(path: Path, table: str) -> None:
    """Replace the text between the table markers in ``path`` with ``table``."""
    text = path.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        raise ConfigError(f"'{path}' has no '{TABLE_START}' ... '{TABLE_END}' markers to put the table between")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    fileio.write_text(path, f"{head}{TABLE_START}\n{table}\n\n{FOOTNOTE}\n{TABLE_END}{tail}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'eseg_lite_*'")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--update", type=Path, metavar="FILE",
                        help="also write the markdown table between the table markers in FILE (e.g. README.md)")


def run(args: argparse.Namespace) -> int:
    rows = variant_rows(list_models(args.pattern), num_classes=args.num_classes)
    table = markdown_table(rows)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(f"{table}\n\n{FOOTNOTE}")
    if args.update:
        update_document(args.update, table)
        print(f"updated the model table in {args.update}")
    return 0
