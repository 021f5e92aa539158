"""Every folder-valued --out (train, predict, val, benchmark) follows one rule: an existing file,
a path inside a file, or a file name such as out.png is refused with exit 2 and a message that
says --out is a folder; nothing is written, with or without --overwrite."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eseg.cli import main
from eseg.errors import ConfigError
from eseg.rundir import check_output_folder

from .conftest import tiny_model
from .test_train import tiny_config


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A saved model, an image and an experiment config: each command gets real inputs, so only
    its --out can be what stops it."""
    root = tmp_path_factory.mktemp("inputs")
    tiny_model().save_pretrained(root / "model")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(root / "img.jpg")
    return {"model": root / "model", "image": root / "img.jpg",
            "config": tiny_config(root, train={"steps": 1}, eval={"num_overlays": 0, "num_predictions": 0})}


def command(name: str, inputs: dict, out: Path) -> list[str]:
    return {
        "predict": ["predict", str(inputs["model"]), "--source", str(inputs["image"]), "--no-progress"],
        "val": ["val", str(inputs["model"]), "--data-type", "synthetic", "--no-progress"],
        "benchmark": ["benchmark", "--models", "eseg_lite_s", "--set", "backbone=test_efficientnet", "--runs", "1",
                      "--warmup", "0", "--no-memory", "--size", "64x64"],
        "train": ["train", str(inputs["config"])],
    }[name] + ["--out", str(out)]


COMMANDS = ["predict", "val", "benchmark", "train"]


@pytest.mark.parametrize("name, overwrite", [(name, []) for name in COMMANDS]
                         + [(name, ["--overwrite"]) for name in ("predict", "val", "train")])  # benchmark has none
def test_an_existing_file_as_the_output_folder_is_refused(inputs, tmp_path, capsys, name, overwrite):
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    assert main(command(name, inputs, existing) + overwrite) == 2
    err = capsys.readouterr().err
    assert f"--out '{existing}' is an existing file; --out is a folder" in err
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_path_inside_a_file_is_refused(inputs, tmp_path, capsys, name):
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(command(name, inputs, tmp_path / "notes.txt" / "sub")) == 2
    assert f"is inside '{tmp_path / 'notes.txt'}', an existing file" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".mp4", ".json"])
@pytest.mark.parametrize("name", COMMANDS)
def test_a_file_name_for_a_folder_option_is_refused(inputs, tmp_path, capsys, name, suffix):
    out = tmp_path / f"out{suffix}"
    assert main(command(name, inputs, out)) == 2
    err = capsys.readouterr().err
    assert f"--out '{out}' ends in '{suffix}' like a file name, but --out is a folder" in err
    assert f"e.g. --out {tmp_path / 'out'}" in err
    assert list(tmp_path.iterdir()) == []  # no folder named out.png


def test_the_cityscapes_export_folder_follows_the_same_rule(inputs, tmp_path, capsys):
    argv = command("val", inputs, tmp_path / "val") + ["--cityscapes-export", str(tmp_path / "preds.png")]
    assert main(argv) == 2
    assert "--cityscapes-export '" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_folders_new_existing_and_dotted_are_accepted(tmp_path):
    (tmp_path / "existing").mkdir()
    for name in ("new", "existing", "run.v2", "nested/new"):
        assert check_output_folder(tmp_path / name) == tmp_path / name
    with pytest.raises(ConfigError, match="--source-dir 'x.PNG' ends in '.PNG'"):
        check_output_folder("x.PNG", "--source-dir")
