"""The dataset base class: loading, validation of every sample, and the bad-data policy.

A subclass lists its samples (image path, mask path, name) and may override ``map_labels`` to
turn raw mask values into train ids. ``load(i)`` reads and validates one sample; ``__getitem__``
applies the transform and the bad-data policy:

- ``on_bad_data='error'`` (default): a bad sample raises ``DataError`` naming the file.
- ``on_bad_data='skip'``: a bad sample is recorded in ``bad_samples`` and replaced by the next
  good sample in index order (deterministic). Each item says which samples its call skipped
  (``item["skipped"]``, a list of reasons), so a consumer reading through DataLoader workers
  can report every file once (eseg.engine.trainer does); in the main process the dataset also
  warns once per file with a ``BadDataWarning``.

``check_files()``, run before training, reads every file's header (size, mode, structure) and
scans every mask's values (cached, see :mod:`eseg.data.scan`), so every broken file, out-of-range
id and unknown colour is named at once before the first step; it also warns (``DataWarning``) for
classes with no pixels in the split. ``scan()`` decodes every sample for a full check. A missing
or empty split is always an error, whatever the policy. Under ``skip`` a dataset warns once per
bad file (``eseg`` prints such warnings as one line, without Python's source line).

Stored mask values become class ids in three steps: a colour mask is decoded through
``mask_colors`` (:class:`~eseg.data.labels.ColorTable`), the dataset's ``map_labels`` applies its
format's rule (e.g. Cityscapes labelIds), then the spec's ``label_map`` / ``reduce_zero_label``
(``label_options``, applied by :class:`~eseg.data.labels.LabelMapping`). ``split_source`` says
where the split's samples came from (:mod:`eseg.data.splits`); ``sample_key(i)`` identifies a
sample across splits.
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
from ..models.config import check_ignore_index
from ..palette import get_palette
from .io import header_size, read_image, read_mask, read_mask_value_counts
from .labels import ColorTable, LabelMapping, LabelOptions
from .meta import DatasetMeta
from .splits import SplitOptions
from .transforms import to_tensors

BAD_DATA_POLICIES = ("error", "skip")
OUT_OF_RANGE_HINT = ("If the ids are your classes stored sparsely, map them: label_map: {3: 1, 7: 2}. Many stray "
                     "values are what JPEG compression leaves in a mask once saved as JPEG: export it again as PNG")

Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


class DataWarning(UserWarning):
    """Something in the data deserves a look (e.g. a class with no pixels in a split)."""


class BadDataWarning(DataWarning):
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

    ``ignore_index`` is the format's own (e.g. its classes file's); ``label_options``
    (:class:`~eseg.data.labels.LabelOptions`) may override it and remap ids, ``split_options``
    (:class:`~eseg.data.splits.SplitOptions`) say how a pool is split; formats without those
    spec keys leave them out.
    """

    def __init__(
        self,
        *,
        split: str,
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]] | str | None = None,
        ignore_index: int | None = None,
        transform: Transform | None = None,
        on_bad_data: str = "error",
        label_options: LabelOptions | None = None,
        split_options: SplitOptions | None = None,
    ):
        if on_bad_data not in BAD_DATA_POLICIES:
            raise ConfigError(f"on_bad_data must be one of {BAD_DATA_POLICIES}, got {on_bad_data!r}")
        self.split = split
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.palette = get_palette(palette, self.num_classes)
        self.label_options = label_options or LabelOptions()
        self.split_options = split_options or SplitOptions()
        self.ignore_index = self.label_options.ignore(default=ignore_index)
        check_ignore_index(self.ignore_index, self.num_classes)
        self.transform = transform
        self.on_bad_data = on_bad_data
        self.samples: list[Sample] = []
        self.bad_samples: dict[int, str] = {}
        self.labels = LabelMapping(self.label_options, num_classes=self.num_classes, ignore_index=self.ignore_index)
        self.mask_colors: ColorTable | None = None  # set by datasets whose masks may be colour-coded
        self.split_source = f"split {split!r}"
        self.scan_values = True  # check_files decodes every mask; generated data turns it off

    # --- what subclasses provide -------------------------------------------------------------
    def map_labels(self, raw: np.ndarray, index: int) -> np.ndarray:
        """Raw mask values of sample ``index`` -> train ids (ignore_index where ignored). Identity
        by default; values that map outside the classes are reported by ``load``."""
        return raw

    def read_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8 H, W, 3) and the raw mask (int64 H, W) of one sample."""
        raw = self.read_raw_mask(index)
        return read_image(self.samples[index].image), raw

    def read_raw_mask(self, index: int) -> np.ndarray:
        """The stored mask values of one sample (int64 H, W; colour masks already decoded)."""
        sample = self.samples[index]
        if sample.mask is None:
            raise DataError(f"{sample.image}: no mask file for this image")
        return read_mask(sample.mask, self.mask_colors)

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

    def sample_key(self, index: int) -> str | None:
        """What identifies the sample across splits (its resolved image file), for
        :func:`eseg.data.splits.check_disjoint`; None for generated samples."""
        image = self.image_path(index)
        return str(image.resolve()) if image is not None else None

    def to_class_ids(self, raw: np.ndarray, index: int) -> np.ndarray:
        """Stored values (colours already decoded) -> class ids: ``map_labels``, then the spec's
        label map."""
        return self.labels(self.map_labels(raw, index).astype(np.int64, copy=False))

    def load_mask(self, index: int) -> np.ndarray:
        """Only the mask of one sample, as checked class ids (int64 H, W)."""
        raw = self.read_raw_mask(index)
        mask = self.to_class_ids(raw, index)
        problem = self._range_problem(index, raw, mask)
        if problem:
            raise DataError(problem)
        return mask

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read one sample and check it: uint8 (H, W, 3) image, int64 (H, W) train-id mask."""
        image, raw = self.read_sample(index)
        mask = self.to_class_ids(raw, index)
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
        return {"image": image_t, "mask": mask_t, "index": used, "skipped": skipped}

    @property
    def meta(self) -> DatasetMeta:
        return DatasetMeta(self.class_names, self.palette, self.ignore_index)

    @property
    def allow_train_val_overlap(self) -> bool:
        """The spec allows train and val to share samples (see :func:`eseg.data.splits.check_disjoint`)."""
        return self.split_options.allow_train_val_overlap

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
        """Check every sample before training: the files' headers (exists, decodable structure,
        mask mode, image and mask sizes equal), then every mask's values (ids in range, colours
        known; see :mod:`eseg.data.scan`). Under ``on_bad_data='error'`` every problem is listed
        in one DataError; under ``skip`` each is recorded and warned about once. Warns
        (``DataWarning``) for classes with no pixels in the split. Returns {index: problem}."""
        problems = {}
        for index in range(len(self)):
            if index not in self.bad_samples:
                problem = self._header_problem(index)
                if problem:
                    problems[index] = problem
        pixels = None
        if self.scan_values:
            todo = [i for i in range(len(self)) if i not in self.bad_samples and i not in problems]
            value_problems, pixels = self._scan_values(todo)
            problems = dict(sorted({**problems, **value_problems}.items()))
        if problems and self.on_bad_data == "error":
            listed = "\n  ".join(problems.values())
            hint = f"{OUT_OF_RANGE_HINT}.\n" if any("map outside the classes" in p for p in problems.values()) else ""
            raise DataError(f"{len(problems)} bad file(s) in {type(self).__name__}[{self.split}]:\n  {listed}\n{hint}"
                            "Fix or remove them, or set on_bad_data: skip to train without them")
        for index, problem in problems.items():
            self._record_bad(index, DataError(problem), [])
        if pixels is not None and len(self) > len(self.bad_samples):
            self._warn_empty_classes(pixels)
        return problems

    def mask_size(self, index: int) -> tuple[int, int] | None:
        """(H, W) of sample ``index``'s mask from its file header; None when it has no file."""
        mask = self.mask_path(index)
        return None if mask is None else header_size(mask, mask=True, color_masks=self.mask_colors is not None)

    def stored_value_counts(self, index: int):
        """The distinct stored values of the sample's mask and their pixel counts (see
        :func:`eseg.data.io.mask_value_counts`); datasets whose masks are not files override it."""
        return read_mask_value_counts(self.mask_path(index))

    def _header_problem(self, index: int) -> str | None:
        image = self.image_path(index)
        if image is None:
            return None  # generated samples: nothing on disk to check
        try:
            image_size, mask_size = header_size(image), self.mask_size(index)
        except DataError as exc:
            return str(exc)
        if mask_size is not None and image_size != mask_size:
            return (f"{self._describe(index)}: mask size {mask_size[1]}x{mask_size[0]} (WxH) differs from image "
                    f"{image} size {image_size[1]}x{image_size[0]}")
        return None

    def _scan_values(self, indices: list[int]) -> tuple[dict[int, str], np.ndarray]:
        """{index: problem} of the masks whose values are no class, and the pixels per class."""
        from .scan import scan_value_counts

        results = scan_value_counts(indices, self.mask_path, self.stored_value_counts,
                                    identity=f"{type(self).__name__}|{getattr(self, 'root', '')}|{self.split}",
                                    progress=f"checking {self.split} masks")
        problems, pixels = {}, np.zeros(self.num_classes, dtype=np.int64)
        for index, result in results.items():
            try:
                if isinstance(result, DataError):
                    raise result
                ids, counts = self._class_ids_of_values(index, *result)
            except DataError as exc:
                problems[index] = str(exc)
                continue
            inside = (ids >= 0) & (ids < self.num_classes)
            pixels += np.bincount(ids[inside], weights=counts[inside], minlength=self.num_classes).astype(np.int64)
        return problems, pixels

    def _class_ids_of_values(self, index: int, is_color: bool, values: np.ndarray, counts: np.ndarray):
        """Class ids of a mask's distinct stored values; DataError for values of no class."""
        where = self._describe(index)
        if is_color:
            if self.mask_colors is None:
                raise DataError(f"{where}: a colour mask, but the dataset has no class colours to decode it: give "
                                "them as 'colors' in classes.yaml (or a CVAT labelmap.txt in the dataset root)")
            values = self.mask_colors.decode_keys(values, where, counts)
        ids = self.to_class_ids(values, index)
        problem = self._range_problem(index, values, ids, hint=False)
        if problem:
            raise DataError(problem)
        return ids, counts

    def _warn_empty_classes(self, pixels: np.ndarray) -> None:
        empty = [f"{i} ({name})" for i, name in enumerate(self.class_names) if pixels[i] == 0]
        if empty:
            warnings.warn(f"{type(self).__name__}[{self.split}]: class(es) {', '.join(empty)} have no pixels in the "
                          f"{len(self) - len(self.bad_samples)} masks of split {self.split!r} ({self.split_source}). "
                          "A class missing from train cannot be learned, one missing from val is not scored; check "
                          "the class list and label_map, or the split", DataWarning, stacklevel=3)

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
        problem = self._range_problem(index, raw, mask)
        if problem:
            raise DataError(problem)

    def _range_problem(self, index: int, raw: np.ndarray, ids: np.ndarray, hint: bool = True) -> str | None:
        """A message naming the stored values whose class ids are out of range, or None."""
        valid = ((ids >= 0) & (ids < self.num_classes)) | (ids == self.ignore_index)
        if valid.all():
            return None
        bad_values = np.unique(raw[~valid])
        shown = ", ".join(str(v) for v in bad_values[:10]) + (" ..." if len(bad_values) > 10 else "")
        mapped = f" (after {self.labels.describe()})" if self.labels.active else ""
        return (f"{self._describe(index)}: label values {shown}{mapped} map outside the classes "
                f"0..{self.num_classes - 1} and are not the ignore index {self.ignore_index}"
                + (f". {OUT_OF_RANGE_HINT}" if hint else ""))

    def _record_bad(self, index: int, exc: DataError, skipped: list[str]) -> None:
        """Raise under 'error'; under 'skip' record it, add it to ``skipped`` and warn (main
        process only: a worker's copy of the dataset reports through the item instead)."""
        if self.on_bad_data == "error":
            raise exc
        self.bad_samples[index] = str(exc)
        skipped.append(str(exc))
        if torch.utils.data.get_worker_info() is None:
            warnings.warn(f"skipping bad sample: {exc}", BadDataWarning, stacklevel=2)

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
