"""Users' own data in the layouts labelling tools export: each format generated on disk, read
back (class ids equal the painted ones, splits as the format says), converted to eseg's folder
layout, and trained on for two steps through ``eseg train configs/demo.yaml``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eseg.cli import main
from eseg.data import DataWarning, build_dataset
from eseg.errors import ConfigError, DataError, ESegError
from eseg.palette import VOC_CLASSES, get_palette

from . import data_exports as gen

DEMO = Path(__file__).parents[1] / "configs" / "demo.yaml"
TINY = ["model.backbone=test_efficientnet", "model.fpn_width=16", "model.fpn_repeats=2", "model.head_width=16",
        "model.head_layers=1", "data.crop_size=[64,96]", "data.scale_range=[1.0,1.0]", "data.num_workers=0",
        "train.steps=2", "train.warmup_steps=0", "train.batch_size=2", "train.checkpoint_interval=2",
        "train.loss={type: cross_entropy}", "eval.interval=2", "eval.batch_size=4", "eval.num_overlays=0",
        "eval.num_predictions=0", "run.progress=false", "run.tensorboard=false"]


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("ESEG_CACHE_DIR", str(tmp_path / "eseg-cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def masks_of(dataset) -> dict[str, np.ndarray]:
    return {dataset.sample_name(i): dataset.load_mask(i) for i in range(len(dataset))}


def train(tmp_path, capsys, *overrides) -> tuple[Path, str]:
    run = tmp_path / "run"
    code = main(["train", str(DEMO), *TINY, *overrides, "--out", str(run)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return run, out.out


def trained_classes(run: Path) -> list[str]:
    import eseg

    return list(eseg.load_model(run / "checkpoints" / "best").config.class_names)


# --- Pascal VOC -------------------------------------------------------------------------------------
def test_voc_palette_pngs_void_and_split_lists(tmp_path):
    labels = gen.write_voc(tmp_path / "voc")
    lists = tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    train = build_dataset({"type": "voc", "root": str(tmp_path / "voc" / "VOCdevkit")}, "train")
    val = build_dataset({"type": "voc", "root": str(tmp_path / "voc" / "VOCdevkit")}, "val")
    assert [train.sample_name(i) for i in range(len(train))] == (lists / "train.txt").read_text().split()
    assert [val.sample_name(i) for i in range(len(val))] == (lists / "val.txt").read_text().split()
    assert str(lists / "train.txt") in train.split_source and str(lists / "val.txt") in val.split_source
    for name, mask in {**masks_of(train), **masks_of(val)}.items():
        np.testing.assert_array_equal(mask, labels[name])  # palette indices are the ids, 255 stays void
    assert 255 in np.concatenate([m.ravel() for m in labels.values()])
    assert train.class_names == VOC_CLASSES
    np.testing.assert_array_equal(train.palette, gen.voc_colormap_reference()[:21])  # drawn in VOC's colours


def test_voc_rgb_masks_decode_through_the_voc_colours_with_void(tmp_path):
    labels = gen.write_voc(tmp_path / "voc", n=4)
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    for name in labels:  # a tool that re-saved the palette PNGs as RGB
        path = voc / "SegmentationClass" / f"{name}.png"
        Image.open(path).convert("RGB").save(path)
    dataset = build_dataset({"type": "voc", "root": str(voc), "allow_train_val_overlap": True}, "trainval")
    for name, mask in masks_of(dataset).items():
        np.testing.assert_array_equal(mask, labels[name])


def test_voc_trains_on_its_split_lists(tmp_path, capsys):
    gen.write_voc(tmp_path / "voc")
    with pytest.warns(DataWarning, match=r"class\(es\) 1 \(aeroplane\)"):  # 18 of VOC's classes never appear
        run, out = train(tmp_path, capsys, "data.dataset.type=voc", f"data.dataset.root={tmp_path / 'voc'}")
    assert "8 train / 4 val images, 21 classes" in out
    assert "ImageSets/Segmentation/train.txt" in out and "ImageSets/Segmentation/val.txt" in out
    assert trained_classes(run) == list(VOC_CLASSES)


# --- CVAT "Segmentation mask 1.1" ----------------------------------------------------------------------
def test_cvat_colour_masks_decode_through_labelmap(tmp_path):
    labels = gen.write_cvat(tmp_path / "cvat")
    spec = {"type": "cvat", "root": str(tmp_path / "cvat"), "val_fraction": 0.25}
    train, val = build_dataset(spec, "train"), build_dataset(spec, "val")
    assert train.class_names == tuple(gen.CLASSES)
    np.testing.assert_array_equal(train.palette, gen.COLORS)
    decoded = {**masks_of(train), **masks_of(val)}
    assert set(decoded) == set(labels) and len(val) == 3  # round(0.25 * 12)
    for name, mask in decoded.items():
        np.testing.assert_array_equal(mask, labels[name])


def test_cvat_unknown_colour_names_the_file_and_the_colour(tmp_path):
    labels = gen.write_cvat(tmp_path / "cvat", n=4)
    name = sorted(labels)[2]
    path = tmp_path / "cvat" / "SegmentationClass" / f"{name}.png"
    rgb = np.array(Image.open(path))
    rgb[:2, :3] = (10, 20, 30)
    Image.fromarray(rgb).save(path)
    dataset = build_dataset({"type": "cvat", "root": str(tmp_path / "cvat"), "allow_train_val_overlap": True}, "train")
    with pytest.raises(DataError) as info:
        dataset.check_files()
    assert f"{path}: colour(s) (10, 20, 30) (6 px) belong to no class of {tmp_path / 'cvat' / 'labelmap.txt'}" \
        in str(info.value)


def test_cvat_without_labelmap_says_where_the_classes_belong(tmp_path):
    gen.write_cvat(tmp_path / "cvat", n=2)
    (tmp_path / "cvat" / "labelmap.txt").unlink()
    with pytest.raises(DataError, match=r"labelmap\.txt: not found"):
        build_dataset({"type": "cvat", "root": str(tmp_path / "cvat")}, "train")


# --- COCO JSON ---------------------------------------------------------------------------------------
def test_coco_polygons_rle_crowd_overlaps_and_category_order(tmp_path):
    expected = gen.write_coco_cvat(tmp_path / "coco")
    spec = {"type": "coco", "root": str(tmp_path / "coco"), "allow_train_val_overlap": True}
    dataset = build_dataset(spec, "train")
    assert dataset.class_names == ("background", "square", "circle", "triangle")  # 'categories' order, ids 7, 3, 11
    decoded = masks_of(dataset)
    assert set(decoded) == set(expected)
    for name, mask in decoded.items():
        np.testing.assert_array_equal(mask, expected[name])
    assert all(255 in mask for mask in decoded.values())  # every image has its crowd region
    ignored = build_dataset({**spec, "unannotated": "ignore"}, "train")
    assert ignored.class_names == ("square", "circle", "triangle")
    for name, mask in masks_of(ignored).items():
        shifted = np.where(expected[name] == 255, 255, expected[name].astype(np.int64) - 1)
        np.testing.assert_array_equal(mask, np.where(expected[name] == 0, 255, shifted))


def test_coco_sets_layout_reads_one_file_per_split(tmp_path):
    expected = gen.write_coco_sets(tmp_path / "coco")
    for split in ("train", "val"):
        dataset = build_dataset({"type": "coco", "root": str(tmp_path / "coco")}, split)
        assert f"instances_{split}2017.json" in dataset.split_source
        decoded = masks_of(dataset)
        assert set(decoded) == set(expected[split])
        for name, mask in decoded.items():
            np.testing.assert_array_equal(mask, expected[split][name])
    with pytest.raises(ConfigError, match="val_fraction is for data without splits"):
        build_dataset({"type": "coco", "root": str(tmp_path / "coco"), "val_fraction": 0.2}, "train")


def test_coco_unknown_category_and_detection_exports_are_named(tmp_path):
    gen.write_coco_cvat(tmp_path / "coco", n=2)
    path = tmp_path / "coco" / "annotations" / "instances_default.json"
    doc = json.loads(path.read_text())
    doc["annotations"][1]["category_id"] = 99
    path.write_text(json.dumps(doc))
    dataset = build_dataset({"type": "coco", "root": str(tmp_path / "coco"), "allow_train_val_overlap": True}, "train")
    with pytest.raises(DataError, match=r"img_0000\.jpg \(annotations in .*instances_default\.json\): annotation 2 "
                                        r"has category_id 99"):
        dataset.check_files()
    for ann in doc["annotations"]:
        ann["segmentation"] = []
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="detection"):
        build_dataset({"type": "coco", "root": str(tmp_path / "coco")}, "train")


def test_coco_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    gen.write_coco_cvat(tmp_path / "coco", n=1)
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ESegError, match=r"pip install 'eseg\[coco\]'"):
        build_dataset({"type": "coco", "root": str(tmp_path / "coco")}, "train")


# --- Hugging Face datasets ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["save_to_disk", "parquet"])
def test_huggingface_folders_with_reduce_zero_label(tmp_path, kind):
    truth = gen.write_hf(tmp_path / "hf", kind)
    spec = {"type": "huggingface", "path": str(tmp_path / "hf"), "label_column": "annotation",
            "reduce_zero_label": True, **({} if kind == "save_to_disk" else {"classes": gen.CLASSES})}
    for split, hf_split in (("train", "train"), ("val", "validation")):
        dataset = build_dataset(spec, split)
        assert dataset.class_names == tuple(gen.CLASSES) and f"split '{hf_split}'" in dataset.split_source
        decoded = masks_of(dataset)
        assert set(decoded) == set(truth[hf_split])
        for name, mask in decoded.items():
            np.testing.assert_array_equal(mask, truth[hf_split][name])
        image, _ = dataset.load(0)
        assert image.shape == (gen.H, gen.W, 3) and image.dtype == np.uint8


def test_huggingface_errors_name_columns_and_splits(tmp_path):
    gen.write_hf(tmp_path / "hf")
    with pytest.raises(DataError, match=r"no label_column 'mask'; the columns are image, annotation"):
        build_dataset({"type": "huggingface", "path": str(tmp_path / "hf"), "label_column": "mask"}, "train")
    with pytest.raises(DataError, match=r"no split 'test'; the dataset has train, validation"):
        build_dataset({"type": "huggingface", "path": str(tmp_path / "hf")}, "test")
    with pytest.raises(DataError, match="cannot load the Hugging Face dataset"):
        build_dataset({"type": "huggingface", "path": str(tmp_path / "nowhere"), "classes": ["a", "b"]}, "train")


# --- training on the pooled formats (DATA: where the export is written) -------------------------------------
@pytest.mark.parametrize("write, overrides, expected, classes", [
    pytest.param(gen.write_cvat, ["data.dataset.type=cvat", "data.dataset.root=DATA", "data.dataset.val_fraction=0.25"],
                 ["9 train / 3 val images, 4 classes", "val_fraction 0.25"], gen.CLASSES, id="cvat-held-out-fraction"),
    pytest.param(gen.write_coco_cvat, ["data.dataset.type=coco", "data.dataset.root=DATA", "data.dataset.val_fraction=0.25"],
                 ["9 train / 3 val images, 4 classes"], ["background", "square", "circle", "triangle"], id="coco"),
    pytest.param(gen.write_hf, ["data.dataset={type: huggingface}", "data.dataset.path=DATA",
                                "data.dataset.reduce_zero_label=true"],
                 ["8 train / 4 val images, 4 classes", "split 'validation'"], gen.CLASSES, id="huggingface-own-splits"),
])
def test_pooled_formats_train(tmp_path, capsys, write, overrides, expected, classes):
    write(tmp_path / "data")
    run, out = train(tmp_path, capsys, *(override.replace("DATA", str(tmp_path / "data")) for override in overrides))
    assert [text for text in expected if text not in out] == []
    assert trained_classes(run) == classes


# --- eseg's folder: label maps, colour masks, class lists ------------------------------------------------
def test_folder_sparse_ids_with_a_label_map(tmp_path):
    stored = gen.write_folder(tmp_path / "ds", ids=(0, 5, 7, 9))
    spec = {"type": "folder", "root": str(tmp_path / "ds"), "label_map": {5: 1, 7: 2, 9: 3}, "val_fraction": 0.25}
    train, val = build_dataset(spec, "train"), build_dataset(spec, "val")
    lut = np.zeros(10, np.int64)
    lut[[0, 5, 7, 9]] = [0, 1, 2, 3]
    for name, mask in {**masks_of(train), **masks_of(val)}.items():
        np.testing.assert_array_equal(mask, lut[stored[name]])
    with pytest.raises(DataError, match=r"s000\.png: label values 5, 7, 9 map outside the classes 0\.\.3(.|\n)*label_map"):
        build_dataset({**spec, "label_map": None}, "train").check_files()
    with pytest.raises(ConfigError, match=r"label_map: 7 -> 4: the target must be a class id 0\.\.3"):
        build_dataset({**spec, "label_map": {7: 4}}, "train")
    with pytest.raises(ConfigError, match="label_map or reduce_zero_label, not both"):
        build_dataset({**spec, "reduce_zero_label": True}, "train")


def test_folder_colour_masks_use_the_classes_colours(tmp_path):
    truth = gen.write_folder(tmp_path / "ds", colour_masks=True, split_folders=True)
    dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "val")
    assert dataset.check_files() == {}
    for name, mask in masks_of(dataset).items():
        np.testing.assert_array_equal(mask, truth[name])


def test_folder_classes_may_be_a_list(tmp_path, capsys):
    gen.write_folder(tmp_path / "ds", split_folders=True)
    (tmp_path / "ds" / "classes.yaml").unlink()
    run, out = train(tmp_path, capsys, "data.dataset.type=folder", f"data.dataset.root={tmp_path / 'ds'}",
                     "data.dataset.classes=[background,circle,square,triangle]")
    assert "9 train / 3 val images, 4 classes" in out and "split folder" in out
    assert trained_classes(run) == gen.CLASSES


# --- eseg data convert ----------------------------------------------------------------------------------
def test_convert_voc_keeps_its_splits_and_ids(tmp_path, capsys):
    labels = gen.write_voc(tmp_path / "voc")
    assert main(["data", "convert", "voc", str(tmp_path / "voc"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "images/train: 8 images" in out and "images/val: 4 images" in out
    for split, count in (("train", 8), ("val", 4)):
        dataset = build_dataset({"type": "folder", "root": str(tmp_path / "out")}, split)
        assert len(dataset) == count and dataset.class_names == VOC_CLASSES
        for name, mask in masks_of(dataset).items():
            np.testing.assert_array_equal(mask, labels[name])
    np.testing.assert_array_equal(dataset.palette, get_palette("voc", 21))
    assert not (tmp_path / "out" / "images" / "trainval").exists()  # the union is not written twice
    assert main(["data", "convert", "voc", str(tmp_path / "voc"), "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_convert_cvat_and_coco_pools(tmp_path, capsys):
    labels = gen.write_cvat(tmp_path / "cvat")
    assert main(["data", "convert", "cvat", str(tmp_path / "cvat"), "--out", str(tmp_path / "c1"),
                 "--val-fraction", "0.25"]) == 0
    train = build_dataset({"type": "folder", "root": str(tmp_path / "c1")}, "train")
    val = build_dataset({"type": "folder", "root": str(tmp_path / "c1")}, "val")
    assert (len(train), len(val)) == (9, 3)
    for name, mask in {**masks_of(train), **masks_of(val)}.items():
        np.testing.assert_array_equal(mask, labels[name])
    expected = gen.write_coco_cvat(tmp_path / "coco")
    assert main(["data", "convert", "coco", str(tmp_path / "coco"), "--out", str(tmp_path / "c2")]) == 0
    assert "images (no split folders): 12 images" in capsys.readouterr().out
    flat = build_dataset({"type": "folder", "root": str(tmp_path / "c2"), "allow_train_val_overlap": True}, "all")
    for name, mask in masks_of(flat).items():
        np.testing.assert_array_equal(mask, expected[name])
    assert flat.class_names == ("background", "square", "circle", "triangle")


def test_convert_refuses_bad_sources_before_writing(tmp_path, capsys):
    labels = gen.write_cvat(tmp_path / "cvat", n=3)
    path = tmp_path / "cvat" / "SegmentationClass" / f"{sorted(labels)[0]}.png"
    rgb = np.array(Image.open(path))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    assert main(["data", "convert", "cvat", str(tmp_path / "cvat"), "--out", str(tmp_path / "out")]) == 2
    assert "(1, 2, 3) (1 px)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and list(tmp_path.glob(".out.*")) == []
