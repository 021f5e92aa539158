"""What a segmentation dataset says about its labels, kept through subsetting.

:class:`DatasetMeta` (class names, palette, ignore index) is what a model records when it is
trained on a dataset and what predict and val read back. :func:`subset` restricts a dataset to
some indices without losing it, which ``torch.utils.data.Subset`` would.
"""
from __future__ import annotations

import functools
import inspect
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
    """``dataset`` restricted to ``indices``, with the dataset's metadata and sample names.

    What it forwards it cannot get wrong: the metadata every sample shares
    (``SHARED_ATTRIBUTES``), and the dataset's per-sample methods (public, first parameter
    ``index``: ``sample_name``, ``image_path``, ``load``, Cityscapes' ``label_path``...) with the
    subset's index mapped to the dataset's. Anything else (``bad_samples``, ``check_files``...)
    speaks in dataset indices and is not forwarded. An item's ``"index"`` is the sample's index
    in ``dataset`` (the one it was read as).
    """

    # Read from the dataset as they are: the same for every sample.
    SHARED_ATTRIBUTES = frozenset({"class_names", "num_classes", "palette", "ignore_index", "transform", "split",
                                   "on_bad_data"})

    def __init__(self, dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.meta: DatasetMeta = dataset.meta

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str):
        if name in ("dataset", "indices", "meta"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        if name in self.SHARED_ATTRIBUTES:
            return getattr(self.dataset, name)
        if is_per_sample(type(self.dataset), name):
            method = getattr(self.dataset, name)
            return functools.wraps(method)(lambda index, *args, **kwargs: method(self.indices[index], *args, **kwargs))
        raise AttributeError(f"{type(self).__name__} has no {name!r}: it forwards the shared metadata "
                             f"({', '.join(sorted(self.SHARED_ATTRIBUTES))}) and the per-sample methods (with the "
                             "index mapped) only; use .dataset with .indices[i] for anything else")

    def __setattr__(self, name: str, value) -> None:
        if name in self.SHARED_ATTRIBUTES:  # a copy here would be ignored: items come from the dataset
            raise AttributeError(f"{type(self).__name__}.{name} is its dataset's; set it on .dataset")
        super().__setattr__(name, value)


def is_per_sample(cls: type, name: str) -> bool:
    """Whether ``cls.name`` is a public method whose first parameter is a sample ``index``."""
    function = getattr(cls, name, None)
    if name.startswith("_") or not inspect.isfunction(function):
        return False
    return list(inspect.signature(function).parameters)[1:2] == ["index"]


def subset(dataset, indices: Sequence[int]):
    """``dataset`` itself when ``indices`` is all of it, else a :class:`SegSubset`."""
    indices = list(indices)
    if indices == list(range(len(dataset))):
        return dataset
    return SegSubset(dataset, indices)
