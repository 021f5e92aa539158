"""A Hugging Face ``datasets`` dataset (``pip install 'eseg[hf]'``).

``path`` is a ``save_to_disk`` folder (``dataset_dict.json`` or ``state.json`` inside), a folder
of parquet files in the Hub's layout (``data/train-00000-of-00001.parquet``, ...: split names
from the file names, as ``datasets.load_dataset`` reads them), one ``.parquet`` file, or a Hub
dataset id (downloaded when online, else read from the ``datasets`` cache).

``image_column`` (default ``image``) holds the images and ``label_column`` the label images
(default: the first of label, annotation, semantic_seg, segmentation, mask, labels that exists):
``datasets.Image`` features (PNG bytes: values are class ids; RGB decoded through ``colors``) or
2-D integer arrays. Classes: the spec's ``classes`` (a list or a file), else a classes.yaml /
labelmap.txt / ``id2label.json`` (``{"0": "road", ...}``) in the local folder.

Splits: the dataset's own (``val`` reads ``validation`` or ``valid`` when there is no ``val``);
a dataset with one split (or none) is a pool, split by ``val_fraction`` on the image file names
(row numbers when the images carry none). Rows are decoded by eseg's own image reader (EXIF,
16-bit, grey as for files); there are no files, so the header check before training is skipped
and every start decodes the label images for the value scan (no cache).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from ..imports import require
from .base import SegDataset, Transform
from .classes import CLASSES_FILES, LABELMAP_FILE, load_classes_file, resolve_classes
from .io import array_to_rgb, decode_mask, image_to_rgb, mask_value_counts
from .labels import ColorTable, LabelOptions
from .splits import SplitOptions, refuse_mixed

LABEL_COLUMNS = ("label", "annotation", "semantic_seg", "segmentation", "mask", "labels")
SPLIT_ALIASES = {"val": ("val", "validation", "valid"), "train": ("train",), "test": ("test",)}


def load_hf(path: str):
    """(the loaded Dataset or DatasetDict, a description of where it came from)."""
    datasets = require("datasets", "hf", "type: huggingface")
    local = Path(path)
    try:
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            return datasets.load_from_disk(str(local)), f"save_to_disk folder {local}"
        if local.is_file() and local.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files={"train": str(local)}), f"parquet file {local}"
        if local.is_dir():
            if not any(local.rglob("*.parquet")):
                raise DataError(f"{local}: neither a save_to_disk folder (dataset_dict.json / state.json) nor a "
                                "folder of parquet files")
            return datasets.load_dataset(str(local)), f"parquet folder {local}"
        return datasets.load_dataset(path), f"Hub dataset {path}"
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFoundError, ConnectionError, DatasetNotFoundError)
        raise DataError(f"{path}: cannot load the Hugging Face dataset ({type(exc).__name__}: {exc}); give a local "
                        "save_to_disk folder, parquet files, or a Hub id while online") from exc


def pick_split(loaded, split: str, where: str):
    """(the table for ``split``, its name in the dataset, whether it is the split's own)."""
    if not hasattr(loaded, "keys"):
        return loaded, split, False
    available = list(loaded.keys())
    for name in SPLIT_ALIASES.get(split, (split,)):
        if name in available:
            return loaded[name], name, True
    if len(available) == 1:
        return loaded[available[0]], available[0], False
    raise DataError(f"{where}: no split {split!r}; the dataset has {', '.join(available)}")


def hf_classes(classes, path: str) -> dict:
    local = Path(path)
    if classes not in (None, "") or not local.is_dir():
        return resolve_classes(classes, None, "data.dataset.classes")
    for name in (*CLASSES_FILES, LABELMAP_FILE):
        if (local / name).is_file():
            return {**load_classes_file(local / name), "source": str(local / name)}
    id2label = local / "id2label.json"
    if id2label.is_file():
        try:
            table = {int(k): str(v) for k, v in json.loads(id2label.read_text(encoding="utf-8")).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise DataError(f"{id2label}: expected {{\"0\": \"name\", ...}} ({exc})") from exc
        if sorted(table) != list(range(len(table))):
            raise DataError(f"{id2label}: ids must run 0..{len(table) - 1} without gaps")
        return {"names": [table[i] for i in range(len(table))], "colors": None, "ignore_index": None,
                "source": str(id2label)}
    raise DataError(f"{local}: no classes: give classes: [road, car, ...] (or a classes.yaml) in the spec, or put "
                    "classes.yaml / id2label.json in the folder")


class HuggingFaceDataset(SegDataset):
    """Rows of a ``datasets`` dataset as samples; see the module docstring."""

    def __init__(self, path: str | Path, split: str = "train", *, classes: str | Path | list[str] | None = None,
                 image_column: str = "image", label_column: str | None = None,
                 label_options: LabelOptions | None = None, split_options: SplitOptions | None = None,
                 transform: Transform | None = None, on_bad_data: str = "error"):
        self.path = str(path)
        loaded, origin = load_hf(self.path)
        info = hf_classes(classes, self.path)
        super().__init__(split=split, class_names=info["names"], palette=info["colors"], ignore_index=info["ignore_index"],
                         transform=transform, on_bad_data=on_bad_data, label_options=label_options,
                         split_options=split_options)
        if info["colors"]:
            self.mask_colors = ColorTable(info["colors"], source=info["source"])
        table, self.hf_split, own = pick_split(loaded, split, origin)
        self.image_column, self.label_column = self._columns(table, image_column, label_column, origin)
        self.table = self._undecoded(table)
        names = self._row_names()
        rule = self.split_options.rule(split, f"{origin} [{self.hf_split}]", Path("."))
        refuse_mixed(rule, own, f"its own split {self.hf_split!r}")
        if own and not rule.lists:
            self.rows, self.split_source = list(range(len(names))), f"{origin}, split {self.hf_split!r} ({len(names)} rows)"
        else:
            self.rows, self.split_source = rule.select(names)
        self.names = [names[i] for i in self.rows]
        if not self.rows:
            raise DataError(f"{origin}: split {self.hf_split!r} has no rows")

    @staticmethod
    def _columns(table, image_column: str, label_column: str | None, origin: str) -> tuple[str, str]:
        columns = list(table.column_names)
        label_column = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
        for what, column in (("image_column", image_column), ("label_column", label_column)):
            if column not in columns:
                raise DataError(f"{origin}: no {what} {column!r}; the columns are {', '.join(columns)}")
        return image_column, label_column

    def _undecoded(self, table):
        """The table with Image columns left as {bytes, path}, so eseg decodes them (and reads
        names without decoding)."""
        import datasets

        for column in (self.image_column, self.label_column):
            if isinstance(table.features[column], datasets.Image):
                table = table.cast_column(column, datasets.Image(decode=False))
        return table.flatten_indices() if getattr(table, "_indices", None) is not None else table

    def _row_names(self) -> list[str]:
        import pyarrow as pa

        column = self.table.data.table.column(self.image_column)
        if pa.types.is_struct(column.type) and column.type.get_field_index("path") >= 0:
            paths = pa.chunked_array([chunk.field("path") for chunk in column.chunks], type=pa.string()).to_pylist()
            stems = [Path(p).stem if p else None for p in paths]
            if all(stems) and len(set(stems)) == len(stems):
                return stems
        return [f"{i:06d}" for i in range(len(self.table))]

    # --- samples are rows ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def image_path(self, index: int) -> None:
        return None  # rows, not files

    def mask_path(self, index: int) -> None:
        return None

    def sample_name(self, index: int) -> str:
        return self.names[index]

    def sample_key(self, index: int) -> str:
        return f"{self.path}|{self.hf_split}|{self.rows[index]}"

    def _describe(self, index: int) -> str:
        return f"{self.path} [{self.hf_split}] row {self.rows[index]} ({self.names[index]})"

    def _decode(self, index: int, column: str) -> Image.Image | np.ndarray:
        value = self.table[int(self.rows[index])][column]
        if isinstance(value, dict):
            try:
                data = value.get("bytes") or Path(value["path"]).read_bytes()
                img = Image.open(io.BytesIO(data))
                img.load()
            except Exception as exc:  # PIL raises many types for broken bytes
                raise DataError(f"{self._describe(index)}: cannot decode {column} ({exc})") from exc
            return img
        return np.asarray(value)

    def read_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = self._decode(index, self.image_column)
        source = self._describe(index)
        rgb = image_to_rgb(image, source=source) if isinstance(image, Image.Image) else array_to_rgb(image, source=source)
        return rgb, self.read_raw_mask(index)

    def read_raw_mask(self, index: int) -> np.ndarray:
        label = self._decode(index, self.label_column)
        if isinstance(label, Image.Image):
            return decode_mask(label, self._describe(index), self.mask_colors)
        if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
            raise DataError(f"{self._describe(index)}: label column {self.label_column!r} holds {label.dtype} "
                            f"{label.shape}, not a 2-D integer array or a label image")
        return label.astype(np.int64)

    def stored_value_counts(self, index: int):
        label = self._decode(index, self.label_column)
        if isinstance(label, Image.Image):
            return mask_value_counts(label, self._describe(index))
        values, counts = np.unique(self.read_raw_mask(index), return_counts=True)
        return False, values, counts
