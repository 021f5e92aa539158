"""``eseg models [FILTER]``: the registered models, from the table kept in the registry."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("filter", nargs="?", help="only models whose name contains this text (or matches it as a glob)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown", help="output format")
    parser.add_argument("--flops", action="store_true",
                        help="recount params and GMACs with torch.utils.flop_counter instead of reading the table")
    parser.add_argument("--update", type=Path, metavar="FILE",
                        help="also write the markdown table between the table markers in FILE (e.g. README.md)")


def run(args: argparse.Namespace) -> int:
    from ..models.registry import list_models
    from ..models.summary import FOOTNOTE, markdown_table, model_rows, update_document

    names = list_models(args.filter)
    if not names:
        raise ConfigError(f"no registered model matches '{args.filter}'; registered: {', '.join(list_models())}")
    rows = model_rows(names, recount=args.flops)
    table = markdown_table(rows)
    print(json.dumps(rows, indent=2) if args.format == "json" else f"{table}\n\n{FOOTNOTE}")
    if args.update:
        update_document(args.update, table)
        print(f"updated the model table in {args.update}")
    return 0
