"""The dataset base class: loading, validation of every sample, and the bad-data policy.

A subclass lists its samples (image path, mask path, name) and may override ``map_labels`` to
turn raw mask values into train ids. ``load(i)`` reads and validates one sample; ``__getitem__``
applies the transform and the bad-data policy:

- ``on_bad_data='error'`` (default): a bad sample raises ``DataError`` naming the file.
- ``on_bad_data='skip'``: a bad sample is recorded in ``bad_samples`` and replaced by the next
  good sample in index order (deterministic). Each item says which samples its call skipped
  (``item["skipped"]``, one reason per line), so a consumer reading through DataLoader workers
  can report every file once (eseg.engine.trainer does); in the main process the dataset also
  warns once per file with a ``BadDataWarning``.

``check_files()`` reads every file's header (size, mode, structure) before training, so most
broken files are named before the first step; ``scan()`` decodes every sample for a full check.
A missing or empty split is always an error, whatever the policy.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..palette import get_palette
from .io import header_size, read_image, read_mask
from .meta import DatasetMeta
from .transforms import to_tensors

BAD_DATA_POLICIES = ("error", "skip")

Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


class BadDataWarning(UserWarning):
    """A sample was skipped because its image or mask cannot be used."""


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    name: str  # a stem that identifies the sample in output file names


class SegDataset(Dataset):
    """Base class of eseg's segmentation datasets.

    Attributes: ``class_names``, ``num_classes``, ``palette`` (uint8 (K, 3)), ``ignore_index``,
    ``split``, ``transform``, ``on_bad_data``. Items are dicts ``{"image": float32 (3, H, W),
    "mask": int64 (H, W), "index": int}`` where ``index`` is the sample actually returned (it
    differs from the requested one only when a bad sample was skipped). Without a ``transform``
    the image is float32 in [0, 1], not normalized.
    """

    def __init__(
        self,
        *,
        split: str,
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]] | str | None = None,
        ignore_index: int = 255,
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        if on_bad_data not in BAD_DATA_POLICIES:
            raise ConfigError(f"on_bad_data must be one of {BAD_DATA_POLICIES}, got {on_bad_data!r}")
        self.split = split
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.palette = get_palette(palette, self.num_classes)
        self.ignore_index = int(ignore_index)
        if 0 <= self.ignore_index < self.num_classes:
            raise ConfigError(f"ignore_index {self.ignore_index} collides with a class id (0..{self.num_classes - 1})")
        self.transform = transform
        self.on_bad_data = on_bad_data
        self.samples: list[Sample] = []
        self.bad_samples: dict[int, str] = {}

    # --- what subclasses provide -------------------------------------------------------------
    def map_labels(self, raw: np.ndarray, index: int) -> np.ndarray:
        """Raw mask values of sample ``index`` -> train ids (ignore_index where ignored). Identity
        by default; values that map outside the classes are reported by ``load``."""
        return raw

    def read_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8 H, W, 3) and the raw mask (int64 H, W) of one sample."""
        sample = self.samples[index]
        if sample.mask is None:
            raise DataError(f"{sample.image}: no mask file for this image")
        return read_image(sample.image), read_mask(sample.mask)

    def _finalize_samples(self, folder: Path, what: str) -> None:
        """Check the listed samples: an empty split is always an error naming ``folder``; images
        without masks are an error, or recorded as skipped under ``on_bad_data='skip'``."""
        if not self.samples:
            raise DataError(f"{folder}: no {what} found for split {self.split!r}; check the dataset root and split name")
        missing = [i for i, sample in enumerate(self.samples) if sample.mask is None]
        if not missing:
            return
        names = ", ".join(str(self.samples[i].image) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        if self.on_bad_data == "error":
            raise DataError(f"{len(missing)} image(s) in split {self.split!r} have no mask: {names}. "
                            "Add the masks, remove the images, or set on_bad_data: skip")
        for i in missing:
            self.bad_samples[i] = f"{self.samples[i].image}: no mask file for this image"
        warnings.warn(f"skipping {len(missing)} image(s) without a mask: {names}", BadDataWarning, stacklevel=3)

    # --- public API -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, index: int) -> Path | None:
        return self.samples[index].image

    def mask_path(self, index: int) -> Path | None:
        return self.samples[index].mask

    def sample_name(self, index: int) -> str:
        return self.samples[index].name

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read one sample and check it: uint8 (H, W, 3) image, int64 (H, W) train-id mask."""
        image, raw = self.read_sample(index)
        mask = self.map_labels(raw, index).astype(np.int64, copy=False)
        self._check(index, image, raw, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        skipped: list[str] = []
        image, mask, used = self._load_with_policy(index, skipped)
        transform = self.transform or to_tensors
        image_t, mask_t = transform(image, mask)
        return {"image": image_t, "mask": mask_t, "index": used, "skipped": "\n".join(skipped)}

    @property
    def meta(self) -> DatasetMeta:
        return DatasetMeta(self.class_names, self.palette, self.ignore_index)

    @property
    def num_skipped(self) -> int:
        return len(self.bad_samples)

    def skipped_summary(self) -> str:
        if not self.bad_samples:
            return f"{type(self).__name__}[{self.split}]: no samples skipped"
        lines = [f"{type(self).__name__}[{self.split}]: skipped {self.num_skipped} of {len(self)} samples with bad data:"]
        lines += [f"  {reason}" for _, reason in sorted(self.bad_samples.items())]
        return "\n".join(lines)

    def check_files(self) -> dict[int, str]:
        """Check every sample's files from their headers (exists, decodable structure, mask mode,
        image and mask sizes equal). Under ``on_bad_data='error'`` the first problems are one
        DataError naming the files; under ``skip`` they are recorded. Returns {index: problem}."""
        problems = {}
        for index in range(len(self)):
            if index not in self.bad_samples:
                problem = self._header_problem(index)
                if problem:
                    problems[index] = problem
        if problems and self.on_bad_data == "error":
            shown = "\n  ".join(list(problems.values())[:5]) + ("\n  ..." if len(problems) > 5 else "")
            raise DataError(f"{len(problems)} bad file(s) in {type(self).__name__}[{self.split}]:\n  {shown}\n"
                            "Fix or remove them, or set on_bad_data: skip to train without them")
        for index, problem in problems.items():
            self._record_bad(index, DataError(problem), [])
        return problems

    def _header_problem(self, index: int) -> str | None:
        image, mask = self.image_path(index), self.mask_path(index)
        if image is None or mask is None:
            return None  # generated samples: nothing on disk to check
        try:
            image_size, mask_size = header_size(image), header_size(mask, mask=True)
        except DataError as exc:
            return str(exc)
        if image_size != mask_size:
            return (f"{mask}: mask size {mask_size[1]}x{mask_size[0]} (WxH) differs from image {image} "
                    f"size {image_size[1]}x{image_size[0]}")
        return None

    def scan(self) -> dict[int, str]:
        """Load every sample once and return {index: problem} for the bad ones (also recorded in
        ``bad_samples``). Raises on the first bad sample under ``on_bad_data='error'``."""
        for index in range(len(self)):
            if index not in self.bad_samples:
                try:
                    self.load(index)
                except DataError as exc:
                    self._record_bad(index, exc, [])
        return dict(self.bad_samples)

    # --- internals ----------------------------------------------------------------------------
    def _describe(self, index: int) -> str:
        path = self.mask_path(index) or self.image_path(index)
        return str(path) if path is not None else self.sample_name(index)

    def _check(self, index: int, image: np.ndarray, raw: np.ndarray, mask: np.ndarray) -> None:
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{self._describe(index)}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from "
                f"image {self.image_path(index)} size {image.shape[1]}x{image.shape[0]}"
            )
        valid = ((mask >= 0) & (mask < self.num_classes)) | (mask == self.ignore_index)
        if not valid.all():
            bad_values = np.unique(raw[~valid])
            shown = ", ".join(str(v) for v in bad_values[:10]) + (" ..." if len(bad_values) > 10 else "")
            raise DataError(
                f"{self._describe(index)}: label values {shown} map outside the classes 0..{self.num_classes - 1} "
                f"and are not the ignore index {self.ignore_index}"
            )

    def _record_bad(self, index: int, exc: DataError, skipped: list[str]) -> None:
        """Raise under 'error'; under 'skip' record it, add it to ``skipped`` and warn (main
        process only: a worker's copy of the dataset reports through the item instead)."""
        if self.on_bad_data == "error":
            raise exc
        self.bad_samples[index] = str(exc)
        skipped.append(str(exc))
        if torch.utils.data.get_worker_info() is None:
            warnings.warn(f"skipping bad sample: {exc}", BadDataWarning, stacklevel=4)

    def _load_with_policy(self, index: int, skipped: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
        count = len(self)
        for step in range(count):
            candidate = (index + step) % count
            if candidate in self.bad_samples:
                continue
            try:
                image, mask = self.load(candidate)
            except DataError as exc:
                self._record_bad(candidate, exc, skipped)
                continue
            return image, mask, candidate
        raise DataError(f"{type(self).__name__}[{self.split}]: every one of the {count} samples is bad:\n"
                        + self.skipped_summary())
