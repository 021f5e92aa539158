"""Files a run skipped under ``on_bad_data: skip``: each named once, counted per split.

A dataset item lists the reasons of the samples its call skipped (``item["skipped"]``, a list of
strings, see :mod:`eseg.data.base`); :func:`collate_batch` carries them through the training
loader as one list per batch (the evaluation loader keeps items as they are). This collects those
reasons in the main process, warns once per file and gives the totals for the console summary
and final_metrics.json.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable

from torch.utils.data import default_collate


def collate_batch(items: list[dict]) -> dict:
    """``default_collate`` of the items, with every item's skipped reasons in one list."""
    skipped = [reason for item in items for reason in item.get("skipped", ())]
    batch = default_collate([{key: value for key, value in item.items() if key != "skipped"} for item in items])
    batch["skipped"] = skipped
    return batch


class BadDataReport:
    def __init__(self) -> None:
        self.files: dict[str, dict[str, None]] = {}

    def known(self, split: str, reasons: Iterable[str]) -> None:
        """Reasons the main process has warned about already (e.g. found by check_files)."""
        self.files.setdefault(split, {}).update(dict.fromkeys(r for r in reasons if r))

    def add(self, split: str, reasons: Iterable[str]) -> None:
        """Reasons read elsewhere (loader workers): each new one is warned about once."""
        from ..data.base import BadDataWarning

        seen = self.files.setdefault(split, {})
        for reason in reasons:
            if reason and reason not in seen:
                seen[reason] = None
                warnings.warn(f"skipping bad sample: {reason}", BadDataWarning, stacklevel=2)

    def counts(self) -> dict[str, int]:
        return {split: len(reasons) for split, reasons in self.files.items()}

    def total(self) -> int:
        return sum(self.counts().values())
