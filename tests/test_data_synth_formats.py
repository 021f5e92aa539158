"""``eseg data synth --format``: the synthetic scenes written as a labelling tool exports them read
back, through the dataset type the command names, as exactly the scenes' class ids; the output
folder rules of ``eseg data synth``, ``eseg data convert`` and ``eseg reproduce``; ``eseg val
--data-type``'s help naming every dataset type."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from eseg.cli import main
from eseg.data import build_dataset
from eseg.data.exports import JPEG_QUALITY, Classes, LabelledImage, write_coco, write_folder
from eseg.data.synthetic import CLASSES, SyntheticStreets
from eseg.palette import get_palette

from . import data_exports as gen

SIZE = (48, 80)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESEG_CACHE_DIR", str(tmp_path / "eseg-cache"))


def synth(tmp_path, capsys, layout: str, *extra: str) -> tuple[dict, str]:
    """Run the command; the spec it prints ('use it with: {...}') and its output."""
    out = tmp_path / layout
    code = main(["data", "synth", "--out", str(out), "--n", "6", "--size", f"{SIZE[0]}x{SIZE[1]}",
                 "--format", layout, "--seed", "3", *extra])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    spec = yaml.safe_load(printed.out.split("use it with: ", 1)[1].splitlines()[0])
    assert spec["root"] == str(out)
    return spec, printed.out


def scenes(split: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    generated = SyntheticStreets(split, num_images=count, size=SIZE, seed=3)
    return [generated.load(i) for i in range(count)]


def read_back(spec: dict, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    dataset = build_dataset(spec, split)
    assert dataset.class_names == CLASSES
    return {dataset.sample_name(i): dataset.load(i) for i in range(len(dataset))}


def assert_same_scene(read: tuple, generated: tuple, lossless: bool) -> None:
    (image, mask), (expected_image, expected_mask) = read, generated
    np.testing.assert_array_equal(mask, expected_mask)
    if lossless:
        np.testing.assert_array_equal(image, expected_image)
    else:  # the JPEG of exactly this scene
        buffer = io.BytesIO()
        Image.fromarray(expected_image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        np.testing.assert_array_equal(image, np.asarray(Image.open(buffer).convert("RGB")))


@pytest.mark.parametrize("layout", ["folder", "voc"])
def test_folder_and_voc_keep_train_and_val(tmp_path, capsys, layout):
    spec, printed = synth(tmp_path, capsys, layout)
    assert spec == {"type": layout, "root": str(tmp_path / layout)} and "train: 5 images" in printed
    for split, count in (("train", 5), ("val", 1)):
        read = read_back(spec, split)
        assert sorted(read) == [f"{split}_{i:06d}" for i in range(count)]
        for (name, sample), generated in zip(sorted(read.items()), scenes(split, count)):
            assert_same_scene(sample, generated, lossless=layout == "folder")
    if layout == "voc":  # palette PNGs drawn in the classes' colours, listed per split
        voc = tmp_path / "voc"
        mask = Image.open(voc / "SegmentationClass" / "train_000000.png")
        assert mask.mode == "P"
        assert np.array(mask.getpalette()[:24], np.uint8).reshape(8, 3).tolist() == \
            get_palette("synthetic", 8).tolist()
        lists = voc / "ImageSets" / "Segmentation"
        assert (lists / "trainval.txt").read_text().split() == \
            (lists / "train.txt").read_text().split() + (lists / "val.txt").read_text().split()


@pytest.mark.parametrize("layout", ["cvat", "coco"])
def test_cvat_and_coco_write_one_pool_that_trains_with_a_held_out_share(tmp_path, capsys, layout):
    spec, printed = synth(tmp_path, capsys, layout)
    assert spec["val_fraction"] == 0.2 and "one pool: 6 images" in printed
    assert spec.get("unannotated") == ("ignore" if layout == "coco" else None)  # every pixel is annotated
    read = {**read_back(spec, "train"), **read_back(spec, "val")}
    assert sorted(read) == [f"scene_{i:06d}" for i in range(6)]
    for (name, sample), generated in zip(sorted(read.items()), scenes("train", 6)):
        assert_same_scene(sample, generated, lossless=False)
    if layout == "cvat":  # colour masks in labelmap.txt's colours
        rgb = np.array(Image.open(tmp_path / "cvat" / "SegmentationClass" / "scene_000000.png"))
        np.testing.assert_array_equal(rgb, get_palette("synthetic", 8)[scenes("train", 1)[0][1]])
        assert (tmp_path / "cvat" / "labelmap.txt").read_text().splitlines()[1] == "road:128,64,128::"
    else:
        doc = json.loads((tmp_path / "coco" / "annotations" / "instances_default.json").read_text())
        assert [c["name"] for c in doc["categories"]] == list(CLASSES) and {a["iscrowd"] for a in doc["annotations"]} == {0}


def test_a_flat_folder_without_val_and_a_pool_with_val_fraction(tmp_path, capsys):
    spec, _ = synth(tmp_path, capsys, "folder", "--val-fraction", "0")
    assert spec["val_fraction"] == 0.2
    assert sorted(p.name for p in (tmp_path / "folder" / "images").iterdir()) == [f"scene_{i:06d}.png" for i in range(6)]
    assert (len(build_dataset(spec, "train")), len(build_dataset(spec, "val"))) == (5, 1)
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--n", "4", "--format", "cvat",
                 "--val-fraction", "0.3"]) == 2
    assert "holds one pool of images" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_coco_leaves_a_background_class_and_ignore_unannotated(tmp_path):
    """A class named background is what no annotation covers: read back by the default rule."""
    labels = gen.paint(gen.rectangles(np.random.default_rng(0)))
    classes = Classes(gen.CLASSES, np.array(gen.COLORS, np.uint8))
    write_coco(tmp_path / "c", {"": [LabelledImage("a", gen.photo(np.random.default_rng(1), labels), labels)]}, classes)
    doc = json.loads((tmp_path / "c" / "annotations" / "instances_default.json").read_text())
    assert [c["name"] for c in doc["categories"]] == gen.CLASSES[1:]
    dataset = build_dataset({"type": "coco", "root": str(tmp_path / "c"), "allow_train_val_overlap": True}, "train")
    assert list(dataset.class_names) == gen.CLASSES
    np.testing.assert_array_equal(dataset.load_mask(0), labels)


def test_synth_refuses_a_used_folder_unless_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "d"
    write_folder(out, {"": []}, Classes(["a"]))  # a folder with a classes.yaml in it
    (out / "mine.txt").write_text("keep me")
    argv = ["data", "synth", "--out", str(out), "--n", "3", "--size", "32x48"]
    assert main(argv) == 2
    assert f"{out}: already exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    assert main(argv + ["--overwrite"]) == 0  # replaced whole: no file of the old folder stays
    assert sorted(p.name for p in out.iterdir()) == ["classes.yaml", "images", "masks"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("argv", [
    ["data", "synth", "--n", "2"],
    ["data", "convert", "cvat", "SRC"],
    ["reproduce", "--report-only"],
])
@pytest.mark.parametrize("bad", ["file", "suffix"])
def test_out_is_a_folder_for_synth_convert_and_reproduce(tmp_path, capsys, argv, bad):
    if "SRC" in argv:
        gen.write_cvat(tmp_path / "src", n=2)
        argv = [str(tmp_path / "src") if a == "SRC" else a for a in argv]
    out = tmp_path / "existing.txt"
    if bad == "file":
        out.write_text("keep me")
    else:
        out = tmp_path / "out.png"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out '{out}'" in err and "--out is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if bad == "file":
        assert out.read_text() == "keep me"


def test_reproduce_work_dir_is_a_folder_too(tmp_path, capsys):
    (tmp_path / "w.txt").write_text("keep me")
    assert main(["reproduce", "--report-only", "--out", str(tmp_path / "o"), "--work-dir", str(tmp_path / "w.txt")]) == 2
    assert f"--work-dir '{tmp_path / 'w.txt'}' is an existing file" in capsys.readouterr().err


def test_val_data_type_help_names_every_dataset_type(capsys):
    from eseg.data.specs import DATASETS

    with pytest.raises(SystemExit):
        main(["val", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    listed = help_text.split("--data-type DATA_TYPE dataset type: ", 1)[1].split("(", 1)[0]
    assert sorted(DATASETS.names()) == sorted(re.split(r",\s*|\s+or\s+", listed.strip()))


def test_the_old_folder_writer_still_works_with_a_deprecation_warning(tmp_path):
    from eseg.data import write_folder_dataset

    with pytest.warns(DeprecationWarning, match="write_dataset"):
        counts = write_folder_dataset(tmp_path / "d", num_images=3, size=(32, 48))
    assert counts == {"train": 2, "val": 1}
    assert len(build_dataset({"type": "folder", "root": str(tmp_path / "d")}, "val")) == 1
