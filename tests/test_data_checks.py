"""Splits that never leak silently, and the data checks that run before a run folder exists:
every bad file in one message, JPEG masks named, classes without pixels, the cached value scan,
and ``on_bad_data: skip`` warning once per file as one plain line."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eseg.data.base as data_base
from eseg.cli import main
from eseg.config import load_config
from eseg.data import DataWarning, build_dataset, check_disjoint
from eseg.errors import ConfigError, DataError

from . import data_exports as gen
from .test_data_own import DEMO, TINY

REPO = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESEG_CACHE_DIR", str(tmp_path / "eseg-cache"))


def names_of(dataset) -> list[str]:
    return [dataset.sample_name(i) for i in range(len(dataset))]


# --- splits ---------------------------------------------------------------------------------------
def test_val_fraction_holds_out_the_smallest_sha1_names(tmp_path):
    stored = gen.write_folder(tmp_path / "ds", n=10)
    spec = {"type": "folder", "root": str(tmp_path / "ds"), "val_fraction": 0.3}
    by_hash = sorted(stored, key=lambda name: hashlib.sha1(name.encode()).hexdigest())
    val, train = build_dataset(spec, "val"), build_dataset(spec, "train")
    assert sorted(names_of(val)) == sorted(by_hash[:3])  # round(0.3 * 10)
    assert sorted(names_of(train)) == sorted(by_hash[3:])
    assert names_of(build_dataset(spec, "val")) == names_of(val)  # the same on every build
    assert names_of(build_dataset({**spec, "val_fraction": 0.01}, "val")) == [by_hash[0]]  # at least one
    check_disjoint(train, val)
    assert "val_fraction 0.3" in val.split_source and "3 of 10" in val.split_source
    with pytest.raises(DataError, match="only, not 'test'"):
        build_dataset(spec, "test")


def test_split_lists_pick_from_a_flat_folder(tmp_path):
    stored = gen.write_folder(tmp_path / "ds", n=6)
    names = sorted(stored)
    (tmp_path / "ds" / "lists").mkdir()
    (tmp_path / "ds" / "lists" / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (tmp_path / "ds" / "lists" / "val.txt").write_text(f"# held out\n{names[5]}\n{names[4]}\n")
    spec = {"type": "folder", "root": str(tmp_path / "ds"), "splits": {"train": "lists/train.txt", "val": "lists/val.txt"}}
    assert names_of(build_dataset(spec, "train")) == names[:4]
    val = build_dataset(spec, "val")
    assert names_of(val) == [names[5], names[4]]  # in list order
    assert f"split list {tmp_path / 'ds' / 'lists' / 'val.txt'} (2 images)" == val.split_source
    with pytest.raises(DataError, match="no split list for split 'test'"):
        build_dataset(spec, "test")
    (tmp_path / "ds" / "lists" / "val.txt").write_text("s004\nnot_there\n")
    with pytest.raises(DataError, match=r"val\.txt: 1 listed sample\(s\) are not in .*: not_there"):
        build_dataset(spec, "val")


def test_val_fraction_is_refused_where_splits_exist(tmp_path):
    gen.write_folder(tmp_path / "ds", split_folders=True)
    with pytest.raises(ConfigError, match=r"val_fraction is for data without splits, but this has split folders \(train, val\)"):
        build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "val_fraction": 0.2}, "train")
    with pytest.raises(ConfigError, match=r"data\.dataset\.val_fraction must be a number between 0 and 1"):
        load_config(DEMO, ["data.dataset={type: folder, root: x, val_fraction: 1.5}"])
    with pytest.raises(ConfigError, match=r"allow_train_val_overlap must be true or false"):
        load_config(DEMO, ["data.dataset={type: folder, root: x, allow_train_val_overlap: maybe}"])


def test_train_and_val_sharing_files_is_refused_unless_asked_for(tmp_path, capsys):
    gen.write_folder(tmp_path / "ds", n=8)
    run = tmp_path / "run"
    args = ["train", str(DEMO), *TINY, "data.dataset.type=folder", f"data.dataset.root={tmp_path / 'ds'}"]
    assert main([*args, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "train and val share 8 of the 8 val images" in err
    assert "val_fraction" in err and "data.dataset.allow_train_val_overlap=true" in err
    assert not run.exists()
    assert main([*args, "data.dataset.allow_train_val_overlap=true", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"all 8 images of {tmp_path / 'ds'} (no split folders or lists)") == 2  # train and val lines


# --- checks before the run --------------------------------------------------------------------------
def test_every_bad_file_is_listed_at_once_before_the_run_folder(tmp_path, capsys):
    gen.write_folder(tmp_path / "ds", n=8, split_folders=True)
    masks = tmp_path / "ds" / "masks" / "train"
    bad = {"s000": [9], "s002": [4, 5, 6, 7], "s004": [200]}
    for name, values in bad.items():
        mask = np.array(Image.open(masks / f"{name}.png"))
        mask[0, : len(values)] = values
        Image.fromarray(mask).save(masks / f"{name}.png")
    Image.fromarray(np.zeros((gen.H, gen.W, 3), np.uint8)).save(masks / "s005.png")  # RGB, no colours given
    run = tmp_path / "run"
    code = main(["train", str(DEMO), *TINY, "data.dataset.type=folder", f"data.dataset.root={tmp_path / 'ds'}",
                 "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and not run.exists()
    assert "4 bad file(s) in FolderDataset[train]" in err
    for name, values in bad.items():
        assert f"{masks / name}.png: label values {', '.join(map(str, values))} map outside the classes 0..3" in err
    assert f"{masks / 's005'}.png: mask has mode 'RGB', a colour mask" in err
    assert "label_map" in err and "JPEG" in err  # the two usual causes, named once


def test_jpeg_masks_are_named_as_lossy(tmp_path):
    gen.write_folder(tmp_path / "ds", n=4, split_folders=True)
    for path in (tmp_path / "ds" / "masks" / "train").glob("*.png"):
        Image.open(path).save(path.with_suffix(".jpg"), quality=90)
        path.unlink()
    dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "train")  # found, not "no mask"
    with pytest.raises(DataError) as info:
        dataset.check_files()
    message = str(info.value)
    assert message.startswith("3 bad file(s)") and message.count(".jpg: a JPEG mask; JPEG is lossy") == 3
    assert "Export the masks again as PNG" in message and "have no mask" not in message


def test_classes_without_pixels_are_warned_per_split(tmp_path):
    gen.write_folder(tmp_path / "ds", split_folders=True, names=[*gen.CLASSES, "never"])
    for split in ("train", "val"):
        dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, split)
        with pytest.warns(DataWarning, match=rf"FolderDataset\[{split}\]: class\(es\) 4 \(never\) have no pixels"):
            dataset.check_files()


def test_mask_scan_cache_decodes_only_new_or_changed_masks(tmp_path, monkeypatch):
    gen.write_folder(tmp_path / "ds", n=6, split_folders=True)
    decoded = []
    original = data_base.read_mask_value_counts
    monkeypatch.setattr(data_base, "read_mask_value_counts", lambda path: decoded.append(Path(path).name) or original(path))
    spec = {"type": "folder", "root": str(tmp_path / "ds")}
    assert build_dataset(spec, "train").check_files() == {}
    assert sorted(decoded) == ["s000.png", "s001.png", "s002.png", "s003.png"]
    decoded.clear()
    assert build_dataset(spec, "train").check_files() == {}
    assert decoded == []  # every mask from the cache
    changed = tmp_path / "ds" / "masks" / "train" / "s001.png"
    mask = np.array(Image.open(changed))
    mask[5, 5] = 17
    Image.fromarray(mask).save(changed)
    os.utime(changed, ns=(0, 123))  # another time and size: the cached entry no longer matches
    problems = build_dataset({**spec, "on_bad_data": "skip"}, "train")
    with pytest.warns(DataWarning):
        found = problems.check_files()
    assert decoded == ["s001.png"] and list(found) == [1] and "label values 17" in found[1]
    assert len(list((tmp_path / "eseg-cache" / "mask-values").glob("*.json"))) == 1


def test_skip_warns_once_per_file_as_one_line(tmp_path):
    gen.write_folder(tmp_path / "ds", n=8, split_folders=True)
    broken = tmp_path / "ds" / "masks" / "train" / "s001.png"
    mask = np.array(Image.open(broken))
    mask[0, 0] = 9
    Image.fromarray(mask).save(broken)
    env = {**os.environ, "ESEG_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": "default"}
    result = subprocess.run(
        [sys.executable, "-m", "eseg.cli", "train", str(DEMO), *TINY, "data.dataset.type=folder",
         f"data.dataset.root={tmp_path / 'ds'}", "data.dataset.on_bad_data=skip",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if str(broken) in line]
    assert lines == [f"eseg train: warning: skipping bad sample: {broken}: label values 9 map outside the classes "
                     "0..3 and are not the ignore index 255"]
    assert "warnings.warn" not in result.stderr and "_record_bad" not in result.stderr
    assert "skipped bad files (on_bad_data: skip): train 1" in result.stdout


def test_an_unreadable_or_unwritable_mask_cache_is_reported_and_the_masks_scanned_again(tmp_path, monkeypatch):
    from eseg.data.scan import ValueCountCache

    monkeypatch.setenv("ESEG_CACHE_DIR", str(tmp_path / "cache"))
    cache = ValueCountCache("split-a")
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text("{not json", encoding="utf-8")
    with pytest.warns(UserWarning, match="unreadable mask-value cache"):
        assert ValueCountCache("split-a").entries == {}
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    monkeypatch.setenv("ESEG_CACHE_DIR", str(blocked))
    cache = ValueCountCache("split-b")
    cache.changed = True
    with pytest.warns(UserWarning, match="cannot write the mask-value cache"):
        cache.save()
