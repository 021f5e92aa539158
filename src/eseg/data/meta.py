"""What a segmentation dataset says about its labels, kept through subsetting.

:class:`DatasetMeta` (class names, palette, ignore index) is what a model records when it is
trained on a dataset and what predict and val read back. :func:`subset` restricts a dataset to
some indices without losing it, which ``torch.utils.data.Subset`` would.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset


@dataclass(frozen=True)
class DatasetMeta:
    class_names: tuple[str, ...]
    palette: np.ndarray  # uint8 (num_classes, 3)
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def palette_list(self) -> list[tuple[int, int, int]]:
        return [tuple(int(c) for c in color) for color in self.palette]

    def model_fields(self) -> dict:
        """The model config fields this metadata fills (see eseg.models.config.ModelConfig)."""
        return {"num_classes": self.num_classes, "class_names": list(self.class_names),
                "palette": self.palette_list(), "ignore_index": int(self.ignore_index)}


class SegSubset(Dataset):
    """``dataset`` restricted to ``indices``, with the dataset's metadata and sample names."""

    def __init__(self, dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.meta: DatasetMeta = dataset.meta

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str):
        # class_names, num_classes, palette, ignore_index, transform ... come from the dataset
        if name in ("dataset", "indices", "meta"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def sample_name(self, index: int) -> str:
        return self.dataset.sample_name(self.indices[index])


def subset(dataset, indices: Sequence[int]):
    """``dataset`` itself when ``indices`` is all of it, else a :class:`SegSubset`."""
    indices = list(indices)
    if indices == list(range(len(dataset))):
        return dataset
    return SegSubset(dataset, indices)
