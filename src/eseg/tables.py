"""The one table writer, markdown and CSV (torch-free): the benchmark, the claims page, the model table
and the scripts in ``benchmarks/`` all write their tables through it.

:func:`markdown_table` writes a whole table; a script that prints rows as they are measured
prints :func:`markdown_header` once, then :func:`markdown_row` per row.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence


def markdown_table(headers: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table: the header line, the ``|---|`` line, one line per row; every
    cell is ``str()``-ed as it is. A row of the wrong length is a bug, not a ragged table."""
    lines = [markdown_header(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a table row has {len(row)} cells for {len(headers)} columns: {list(row)}")
        lines.append(markdown_row(row))
    return "\n".join(lines)


def markdown_header(headers: Sequence[object]) -> str:
    """The header line and the ``|---|`` line under it."""
    return markdown_row(headers) + "\n|" + "---|" * len(headers)


def markdown_row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def csv_table(headers: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """The same table as CSV (the csv module's quoting), one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()
