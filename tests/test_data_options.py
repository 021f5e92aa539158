"""The spec's split and label keys reach a dataset as one ``SplitOptions`` and one ``LabelOptions``:
built from a YAML spec or in Python they pick the same samples and ids, and a bad value is a
ConfigError naming the spec that holds it and the key."""
from __future__ import annotations

import numpy as np
import pytest

from eseg.data import build_dataset
from eseg.data.folder import FolderDataset
from eseg.data.labels import LabelOptions
from eseg.data.splits import SplitOptions
from eseg.errors import ConfigError

from . import data_exports as gen


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESEG_CACHE_DIR", str(tmp_path / "eseg-cache"))


def test_python_options_pick_what_the_spec_keys_pick(tmp_path):
    stored = gen.write_folder(tmp_path / "ds", ids=(0, 5, 7, 9))
    label_map = {5: 1, 7: 2, 9: 3}
    from_spec = build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "val_fraction": 0.25,
                               "label_map": label_map, "ignore_index": 200}, "val")
    in_python = FolderDataset(tmp_path / "ds", "val", split_options=SplitOptions(val_fraction=0.25),
                              label_options=LabelOptions(ignore_index=200, label_map=label_map))
    names = [in_python.sample_name(i) for i in range(len(in_python))]
    assert names == [from_spec.sample_name(i) for i in range(len(from_spec))] and len(names) == 3
    assert in_python.ignore_index == from_spec.ignore_index == 200
    lut = np.zeros(10, np.int64)
    lut[[0, 5, 7, 9]] = [0, 1, 2, 3]
    for i, name in enumerate(names):
        np.testing.assert_array_equal(in_python.load_mask(i), lut[stored[name]])
    assert not in_python.allow_train_val_overlap
    assert FolderDataset(tmp_path / "ds", "all", split_options=SplitOptions(allow_train_val_overlap=True)
                         ).allow_train_val_overlap


@pytest.mark.parametrize("key, value, message", [
    ("val_fraction", 1.5, "val_fraction must be a number between 0 and 1"),
    ("splits", ["train.txt"], "splits must map split names to list files"),
    ("allow_train_val_overlap", "yes", "allow_train_val_overlap must be true or false"),
    ("ignore_index", "255", "ignore_index must be an integer"),
    ("label_map", [5, 1], "label_map must map stored values to class ids"),
    ("reduce_zero_label", 1, "reduce_zero_label must be true or false"),
])
def test_a_bad_value_names_the_spec_and_the_key(tmp_path, key, value, message):
    spec = {"type": "folder", "root": str(tmp_path), key: value}
    with pytest.raises(ConfigError, match=rf"^data\.val_dataset\.{message}"):
        build_dataset(spec, "val", where="data.val_dataset")


def test_the_ignore_index_is_the_specs_else_the_classes_files_else_255():
    assert LabelOptions(ignore_index=0).ignore(default=100) == 0
    assert LabelOptions().ignore(default=100) == 100
    assert LabelOptions().ignore(default=None) == 255
