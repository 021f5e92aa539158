"""Files a run skipped under ``on_bad_data: skip``: each named once, counted per split.

Datasets read in DataLoader workers report what they skipped through their items (see
:mod:`eseg.data.base`); this collects those reasons in the main process, warns once per file and
gives the totals for the console summary and final_metrics.json.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable


class BadDataReport:
    def __init__(self) -> None:
        self.files: dict[str, dict[str, None]] = {}

    def known(self, split: str, reasons: Iterable[str]) -> None:
        """Reasons the main process has warned about already (e.g. found by check_files)."""
        self.files.setdefault(split, {}).update(dict.fromkeys(r for r in reasons if r))

    def add(self, split: str, reasons: str | Iterable[str]) -> None:
        from ..data.base import BadDataWarning

        lines = reasons.splitlines() if isinstance(reasons, str) else [
            line for text in reasons for line in str(text).splitlines()]
        seen = self.files.setdefault(split, {})
        for reason in lines:
            if reason and reason not in seen:
                seen[reason] = None
                warnings.warn(f"skipping bad sample: {reason}", BadDataWarning, stacklevel=2)

    def counts(self) -> dict[str, int]:
        return {split: len(reasons) for split, reasons in self.files.items()}

    def total(self) -> int:
        return sum(self.counts().values())
