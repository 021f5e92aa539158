"""Each real on-disk format (Cityscapes, ADE20K, generic folder) built as a tiny fixture, the label
mappings checked against independent tables, the bad-data policy, and build_dataset's spec checks."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from eseg import palette
from eseg.data import BadDataWarning, build_dataset
from eseg.errors import ConfigError, DataError

H, W = 16, 24
RNG = np.random.default_rng(0)


def _save_rgb(path, image=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8) if image is None else image).save(path)


def _save_label(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


# --- palette ------------------------------------------------------------------------------------
def test_cityscapes_table_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels

    trained = sorted((l for l in labels if 0 <= l.trainId < 255), key=lambda l: l.trainId)
    assert [(l.name, l.id, tuple(l.color)) for l in trained] == list(palette.CITYSCAPES_LABELS)
    assert [l.trainId for l in trained] == list(range(19))
    np.testing.assert_array_equal(palette.get_palette("cityscapes", 19), [l.color for l in trained])
    np.testing.assert_array_equal(palette.cityscapes_train_id_to_label_id(), [l.id for l in trained])


def test_palettes_and_fallback():
    ade = palette.get_palette("ade20k", 150)
    assert len(palette.get_class_names("ade20k")) == 150 == len({tuple(c) for c in ade})
    assert palette.get_class_names("synthetic") == ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
    np.testing.assert_array_equal(palette.get_palette("synthetic", 8)[0], (128, 64, 128))  # Cityscapes road
    custom = palette.get_palette("cityscapes", 5)  # count mismatch -> deterministic fallback
    np.testing.assert_array_equal(custom, palette.get_palette(None, 5))
    assert custom.shape == (5, 3) and custom.dtype == np.uint8 and len({tuple(c) for c in custom}) == 5
    np.testing.assert_array_equal(palette.get_palette([[1, 2, 3], [4, 5, 6]], 2), [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ConfigError):
        palette.get_palette([[1, 2, 3]], 2)
    with pytest.raises(ConfigError, match="unknown"):
        palette.get_class_names("nope")


# --- Cityscapes ---------------------------------------------------------------------------------
def _official_train_ids(label_ids):
    """Oracle straight from cityscapesscripts: labelId -> trainId, 255 where not trained."""
    from cityscapesscripts.helpers.labels import id2label

    out = np.full(label_ids.shape, 255, np.int64)
    for label_id, label in id2label.items():
        if 0 <= label.trainId < 255:
            out[label_ids == label_id] = label.trainId
    return out


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    label_ids = np.arange(H * W).reshape(H, W) % 34  # every labelId 0..33 appears
    for city, frame in (("aachen", 19), ("bochum", 42)):
        stem = f"{city}_000000_{frame:06d}"
        _save_rgb(root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png")
        gt = root / "gtFine" / "train" / city
        _save_label(gt / f"{stem}_gtFine_labelIds.png", label_ids)
        _save_label(gt / f"{stem}_gtFine_labelTrainIds.png", _official_train_ids(label_ids))
    # a third image with only the converted trainIds file
    stem = "zurich_000001_000002"
    _save_rgb(root / "leftImg8bit" / "train" / "zurich" / f"{stem}_leftImg8bit.png")
    _save_label(root / "gtFine" / "train" / "zurich" / f"{stem}_gtFine_labelTrainIds.png", _official_train_ids(label_ids))
    return root, label_ids


def test_cityscapes_maps_label_ids_through_the_official_table(cityscapes_root):
    root, label_ids = cityscapes_root
    dataset = build_dataset({"type": "cityscapes", "root": str(root)}, "train")
    assert len(dataset) == 3 and dataset.num_classes == 19 and dataset.ignore_index == 255
    expected = _official_train_ids(label_ids)
    assert (expected == 255).sum() > 0 and set(np.unique(expected)) == set(range(19)) | {255}
    for i in range(3):
        np.testing.assert_array_equal(dataset.load(i)[1], expected)
    assert [dataset.sample_name(i) for i in range(3)] == ["aachen_000000_000019", "bochum_000000_000042", "zurich_000001_000002"]
    assert dataset.city(1) == "bochum"
    assert dataset.label_path(0).name == "aachen_000000_000019_gtFine_labelIds.png"
    assert dataset.mask_path(2).name.endswith("_labelTrainIds.png")
    with pytest.raises(DataError, match="zurich_000001_000002_gtFine_labelIds.png"):
        dataset.label_path(2)


def test_cityscapes_label_format_option(cityscapes_root):
    root, label_ids = cityscapes_root
    train_ids = build_dataset({"type": "cityscapes", "root": str(root), "label_format": "labelTrainIds"}, "train")
    assert all(train_ids.mask_path(i).name.endswith("labelTrainIds.png") for i in range(3))
    np.testing.assert_array_equal(train_ids.load(0)[1], _official_train_ids(label_ids))
    with pytest.raises(DataError, match="zurich_000001_000002_leftImg8bit.png"):
        build_dataset({"type": "cityscapes", "root": str(root), "label_format": "labelIds"}, "train")
    with pytest.raises(ConfigError, match="label_format"):
        build_dataset({"type": "cityscapes", "root": str(root), "label_format": "ids"}, "train")


def test_cityscapes_unknown_label_id_and_missing_split(cityscapes_root):
    root, label_ids = cityscapes_root
    bad = label_ids.copy()
    bad[0, 0] = 40
    _save_label(root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", bad)
    dataset = build_dataset({"type": "cityscapes", "root": str(root)}, "train")
    with pytest.raises(DataError, match=r"aachen_000000_000019_gtFine_labelIds\.png.*40"):
        dataset.load(0)
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=r"leftImg8bit[/\\]val"):
            build_dataset({"type": "cityscapes", "root": str(root), "on_bad_data": policy}, "val")


# --- ADE20K -------------------------------------------------------------------------------------
@pytest.fixture
def ade_root(tmp_path):
    root = tmp_path / "data" / "ADEChallengeData2016"
    values = np.arange(H * W).reshape(H, W) % 151  # 0..150
    for folder, count in (("training", 2), ("validation", 1)):
        for i in range(count):
            name = f"ADE_{folder[:5]}_{i + 1:08d}"
            path = root / "images" / folder / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path, quality=90)
            _save_label(root / "annotations" / folder / f"{name}.png", values)
    return root, values


def test_ade20k_reduces_zero_label(ade_root):
    root, values = ade_root
    expected = np.where(values == 0, 255, values - 1)
    for split, count in (("train", 2), ("training", 2), ("val", 1), ("validation", 1)):
        dataset = build_dataset({"type": "ade20k", "root": str(root)}, split)
        assert len(dataset) == count and dataset.num_classes == 150
        np.testing.assert_array_equal(dataset.load(0)[1], expected)
    parent = build_dataset({"type": "ade20k", "root": str(root.parent)}, "val")  # parent folder works too
    assert parent.sample_name(0) == "ADE_valid_00000001"
    with pytest.raises(DataError, match="test"):
        build_dataset({"type": "ade20k", "root": str(root)}, "test")


def test_ade20k_value_above_150_is_bad(ade_root):
    root, values = ade_root
    bad = values.copy()
    bad[3, 3] = 200
    _save_label(root / "annotations" / "validation" / "ADE_valid_00000001.png", bad)
    with pytest.raises(DataError, match=r"ADE_valid_00000001\.png.*200"):
        build_dataset({"type": "ade20k", "root": str(root)}, "val")[0]


# --- generic folder -----------------------------------------------------------------------------
def _folder(root, names=("a", "b", "c", "d"), split="train", num_classes=3, classes_doc=None):
    doc = classes_doc or {"names": [f"class{k}" for k in range(num_classes)], "colors": [[k, 2 * k, 3 * k] for k in range(num_classes)]}
    (root / "classes.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(doc))
    masks = {}
    for name in names:
        sub = f"/{split}" if split else ""
        _save_rgb(root / f"images{sub}" / f"{name}.png")
        masks[name] = RNG.integers(0, num_classes, (H, W))
        masks[name][0, :3] = 255
        _save_label(root / f"masks{sub}" / f"{name}.png", masks[name])
    return masks


def test_folder_dataset_reads_masks_by_stem(tmp_path):
    masks = _folder(tmp_path / "ds")
    dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "train")
    assert dataset.class_names == ("class0", "class1", "class2")
    np.testing.assert_array_equal(dataset.palette, [[0, 0, 0], [1, 2, 3], [2, 4, 6]])
    for i, name in enumerate("abcd"):
        assert dataset.sample_name(i) == name
        np.testing.assert_array_equal(dataset.load(i)[1], masks[name])
    item = dataset[2]
    assert item["image"].dtype.is_floating_point and item["mask"].shape == (H, W) and item["index"] == 2


def test_folder_flat_layout_custom_ignore_and_yaml(tmp_path):
    root = tmp_path / "flat"
    masks = _folder(root, split="", num_classes=2, classes_doc={"names": ["bg", "fg"], "ignore_index": 7})
    (root / "classes.json").unlink()
    (root / "classes.yaml").write_text("names: [bg, fg]\nignore_index: 7\n")
    with pytest.raises(DataError, match=r"a\.png.*255.*ignore index 7"):
        build_dataset({"type": "folder", "root": str(root)}, "val").load(0)
    dataset = build_dataset({"type": "folder", "root": str(root), "ignore_index": 255}, "val")
    assert dataset.ignore_index == 255 and dataset.palette.shape == (2, 3)
    np.testing.assert_array_equal(dataset.load(0)[1], masks["a"])


def test_folder_missing_classes_file_and_split(tmp_path):
    _folder(tmp_path / "ds")
    (tmp_path / "ds" / "classes.json").unlink()
    with pytest.raises(DataError, match="classes.yaml"):
        build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "train")
    _folder(tmp_path / "ds")
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=r"images[/\\]val.*available splits: train"):
            build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "on_bad_data": policy}, "val")
    (tmp_path / "ds" / "images" / "empty").mkdir()
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=r"images[/\\]empty.*no images"):
            build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "on_bad_data": policy}, "empty")


def test_converted_image_flavours_are_not_errors(tmp_path):
    root = tmp_path / "ds"
    _folder(root)
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(root / "images/train/a.png")
    Image.fromarray(RNG.integers(0, 256, (H, W, 4), dtype=np.uint8), mode="RGBA").save(root / "images/train/b.png")
    Image.fromarray(RNG.integers(0, 65536, (H, W), dtype=np.uint16)).save(root / "images/train/c.png")
    dataset = build_dataset({"type": "folder", "root": str(root)}, "train")
    for i in range(4):
        image, _ = dataset.load(i)
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(dataset.load(0)[0][..., 1], gray)


def _break_samples(root):
    """b: truncated image, c: mask of the wrong size, d: label out of range, e: image without mask."""
    data = (root / "images/train/b.png").read_bytes()
    (root / "images/train/b.png").write_bytes(data[: len(data) // 2])
    _save_label(root / "masks/train/c.png", np.zeros((H + 1, W), np.uint8))
    _save_label(root / "masks/train/d.png", np.full((H, W), 9))
    _save_rgb(root / "images/train/e.png")
    (root / "images/train/f.png").write_bytes(b"\x89PNG garbage")
    _save_label(root / "masks/train/f.png", np.zeros((H, W)))


def test_bad_data_error_policy_names_each_file(tmp_path):
    root = tmp_path / "ds"
    _folder(root, names=("a", "b", "c", "d", "f"))
    _break_samples(root)
    with pytest.raises(DataError, match=r"have no mask: .*e\.png"):
        build_dataset({"type": "folder", "root": str(root)}, "train")
    (root / "images/train/e.png").unlink()
    dataset = build_dataset({"type": "folder", "root": str(root)}, "train")
    assert dataset[0]["index"] == 0
    expectations = {1: r"b\.png.*corrupt or truncated", 2: r"c\.png.*size 24x17.*differs.*24x16",
                    3: r"d\.png.*label values 9.*0\.\.2", 4: r"f\.png.*cannot decode"}
    for index, pattern in expectations.items():
        with pytest.raises(DataError, match=pattern):
            dataset[index]


def test_bad_data_skip_policy_warns_counts_and_substitutes_deterministically(tmp_path):
    root = tmp_path / "ds"
    _folder(root, names=("a", "b", "c", "d", "f", "g"))
    _break_samples(root)
    with pytest.warns(BadDataWarning, match=r"e\.png"):
        dataset = build_dataset({"type": "folder", "root": str(root), "on_bad_data": "skip"}, "train")
    names = [dataset.sample_name(i) for i in range(len(dataset))]
    assert names == ["a", "b", "c", "d", "e", "f", "g"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        item = dataset[1]
    assert item["index"] == names.index("g") and item["mask"].shape == (H, W)
    messages = [str(w.message) for w in record if issubclass(w.category, BadDataWarning)]
    assert len(messages) == 4 and all(f"{n}.png" in m for n, m in zip("bcdf", messages))
    assert dataset.num_skipped == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already-known bad samples are skipped silently
        assert dataset[2]["index"] == names.index("g") and dataset[5]["index"] == names.index("g")
        assert dataset[0]["index"] == 0
    summary = dataset.skipped_summary()
    assert "skipped 5 of 7" in summary and all(f"{n}.png" in summary for n in "bcdef")


def test_scan_reports_every_bad_sample_up_front(tmp_path):
    root = tmp_path / "ds"
    _folder(root, names=("a", "b", "c", "d", "f", "g"))
    _break_samples(root)
    with pytest.warns(BadDataWarning):
        dataset = build_dataset({"type": "folder", "root": str(root), "on_bad_data": "skip"}, "train")
        problems = dataset.scan()
    assert sorted(problems) == [1, 2, 3, 4, 5]  # b, c, d, e (no mask), f; a and g are good
    assert "c.png" in problems[2] and "differs" in problems[2]
    assert dataset.num_skipped == 5


def test_every_sample_bad_is_an_error_even_when_skipping(tmp_path):
    root = tmp_path / "ds"
    _folder(root, names=("a",))
    _save_label(root / "masks/train/a.png", np.full((H, W), 5))
    dataset = build_dataset({"type": "folder", "root": str(root), "on_bad_data": "skip"}, "train")
    with pytest.warns(BadDataWarning), pytest.raises(DataError, match="every one of the 1 samples"):
        dataset[0]


def test_rgb_mask_is_bad_data(tmp_path):
    root = tmp_path / "ds"
    _folder(root, names=("a",))
    _save_rgb(root / "masks/train/a.png")
    # the classes file has colours, so the RGB mask is decoded through them: noise is no class
    with pytest.raises(DataError, match=r"a\.png: colour\(s\) \(\d+, \d+, \d+\) \(1 px\).* belong to no class of .*classes"):
        build_dataset({"type": "folder", "root": str(root)}, "train")[0]


# --- build_dataset spec checks ------------------------------------------------------------------
def test_spec_errors_name_the_key_and_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"'rot'.*did you mean 'root'"):
        build_dataset({"type": "cityscapes", "rot": "x"}, "train")
    with pytest.raises(ConfigError, match=r"'on_bad_dta'.*'on_bad_data'"):
        build_dataset({"type": "synthetic", "on_bad_dta": "skip"}, "train")
    with pytest.raises(ConfigError, match=r"'cityscape'.*'cityscapes'"):
        build_dataset({"type": "cityscape"}, "train")
    with pytest.raises(ConfigError, match="needs 'root'"):
        build_dataset({"type": "folder"}, "train")
    with pytest.raises(ConfigError, match="on_bad_data"):
        build_dataset({"type": "synthetic", "on_bad_data": "ignore"}, "train")
    with pytest.raises(ConfigError, match="'val'"):
        build_dataset({"type": "synthetic", "num_images": {"train": 4}}, "val")
    dataset = build_dataset({"type": "synthetic", "num_images": {"train": 4}, "size": [32, 64], "seed": 1}, "train")
    assert len(dataset) == 4 and dataset[3]["image"].shape == (3, 32, 64)
