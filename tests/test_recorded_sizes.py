"""A trained model's config records the sizes its training really used: the train crop, and the
size of its validation images (``eval_size``, null when they vary; ``val_sizes`` lists them),
read from the files' headers. ``validated_size`` is what export defaults to."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import eseg
from eseg.config import load_config
from eseg.data.folder import FolderDataset
from eseg.engine.trainer import Trainer, image_sizes
from eseg.models.config import MAX_RECORDED_SIZES, validated_size
from eseg.models.registry import get_config

from .conftest import TINY


def write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """images/{split}/ and masks/{split}/ PNGs of the given (H, W) sizes, 4 classes."""
    rng = np.random.default_rng(0)
    for split, shapes in sizes.items():
        for i, (height, width) in enumerate(shapes):
            for kind, array in (("images", rng.integers(0, 256, (height, width, 3), dtype=np.uint8)),
                                ("masks", rng.integers(0, 4, (height, width), dtype=np.uint8))):
                (root / kind / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / kind / split / f"{split}{i:02d}.png")
    (root / "classes.yaml").write_text("names: [background, circle, square, triangle]\n")
    return root


def train_two_steps(tmp_path: Path, data_root: Path, **eval_options) -> Path:
    cfg = {
        "model": {"name": "eseg_lite_s", **TINY, "fpn_repeats": 1, "max_level": 6},
        "data": {"dataset": {"type": "folder", "root": str(data_root)}, "crop_size": [128, 256], "num_workers": 0},
        "train": {"steps": 2, "batch_size": 2, "checkpoint_interval": 1000},
        "eval": {"interval": 0, "num_overlays": 0, "num_predictions": 0, **eval_options},
        "run": {"progress": False, "tensorboard": False},
    }
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run_dir = tmp_path / "run"
    Trainer(load_config(path), run_dir).fit()
    return run_dir


def saved_config(run_dir: Path, checkpoint: str) -> dict:
    return json.loads((run_dir / "checkpoints" / checkpoint / "config.json").read_text())["model"]


def test_a_run_on_240x320_images_records_its_crop_and_validation_size(tmp_path):
    data = write_folder(tmp_path / "data", {"train": [(240, 320)] * 4, "val": [(240, 320)] * 3})
    run_dir = train_two_steps(tmp_path, data)
    for checkpoint in ("last", "best"):
        recorded = saved_config(run_dir, checkpoint)
        assert recorded["train_crop"] == [128, 256]  # not the model's default 512x1024
        assert recorded["eval_size"] == [240, 320]
        assert recorded["val_sizes"] == [[240, 320]]
    model = eseg.load_model(run_dir / "checkpoints" / "best")
    assert validated_size(model.config) == (240, 320)


def test_validation_images_of_varied_sizes_record_no_single_size(tmp_path):
    data = write_folder(tmp_path / "data", {"train": [(240, 320)] * 4, "val": [(240, 320), (200, 300), (240, 320)]})
    run_dir = train_two_steps(tmp_path, data)
    recorded = saved_config(run_dir, "best")
    assert recorded["eval_size"] is None
    assert recorded["val_sizes"] == [[240, 320], [200, 300]]  # the most common first
    model = eseg.load_model(run_dir / "checkpoints" / "best")
    assert validated_size(model.config) is None  # export: a dynamic graph
    # such a model still predicts, each image at its own size, also with size="eval"
    image = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    assert eseg.Segmenter(model, size="eval")(image).shape == (200, 300)


def test_only_the_images_validation_uses_are_recorded(tmp_path):
    data = write_folder(tmp_path / "data", {"train": [(240, 320)] * 4, "val": [(200, 300), (240, 320)]})
    recorded = saved_config(train_two_steps(tmp_path, data, max_images=1), "best")
    assert recorded["eval_size"] == [200, 300] and recorded["val_sizes"] == [[200, 300]]


def test_sizes_come_from_the_headers_at_most_a_few(tmp_path, monkeypatch):
    shapes = [(32 + 8 * i, 48) for i in range(MAX_RECORDED_SIZES + 2)] + [(40, 48)] * 2
    dataset = FolderDataset(write_folder(tmp_path, {"val": shapes}), split="val")

    def no_decoding(index):
        raise AssertionError("a full decode; the header has the size")

    monkeypatch.setattr(dataset, "read_sample", no_decoding)
    sizes = image_sizes(dataset, len(dataset))
    assert len(sizes) == MAX_RECORDED_SIZES and sizes[0] == (40, 48)  # three images of 40x48
    assert set(sizes) <= set(shapes)
    assert image_sizes(dataset, 1) == [(32, 48)]


def test_validated_size_of_configs_that_record_none():
    assert validated_size(get_config("eseg_lite_s")) == tuple(get_config("eseg_lite_s").eval_size)
    assert validated_size(get_config("eseg_lite_s", val_sizes=[[96, 128]], eval_size=[96, 128])) == (96, 128)
    with pytest.raises(eseg.errors.ConfigError, match="val_sizes"):
        get_config("eseg_lite_s", val_sizes="240x320")
