"""A dataset spec's ``classes`` may be a list of names wherever a spec is read (training on the
command line, --palette SPEC); anything else unusable is a clear exit 2, not a TypeError."""
import numpy as np
import pytest
from PIL import Image

from eseg.cli import main
from eseg.inference.palettes import resolve_palette
from eseg.palette import get_palette

from . import data_exports as gen
from .conftest import tiny_model
from .test_train import tiny_config


@pytest.mark.parametrize("value, message", [
    ("5", "data.dataset.classes: expected a classes file or a list of class names, got 5"),
    ("[background, [circle]]", "data.dataset.classes: a list of classes must hold non-empty class-name strings"),
    ("{a: 1}", "data.dataset.classes: expected a classes file or a list of class names"),
    ("nowhere.yaml", "nowhere.yaml: classes file not found"),
])
def test_unusable_classes_are_a_usage_error_before_any_folder(tmp_path, capsys, value, message):
    gen.write_folder(tmp_path / "ds", split_folders=True)
    out = tmp_path / "run"
    argv = ["train", str(tiny_config(tmp_path, train={"steps": 1})), "data.dataset.type=folder",
            f"data.dataset.root={tmp_path / 'ds'}", f"data.dataset.classes={value}", "--out", str(out)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_palette_spec_may_list_its_classes(tmp_path, capsys):
    gen.write_folder(tmp_path / "ds", split_folders=True)
    (tmp_path / "ds" / "classes.yaml").unlink()  # the names come from the spec alone
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"type: folder\nroot: {tmp_path / 'ds'}\nclasses: [{', '.join(gen.CLASSES)}]\n")
    colors, names = resolve_palette(spec, 4, None)
    assert names == gen.CLASSES
    np.testing.assert_array_equal(colors, get_palette(None, 4))

    tiny_model(4).save_pretrained(tmp_path / "model")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "img.png")
    argv = ["predict", str(tmp_path / "model"), "--source", str(tmp_path / "img.png"), "--palette", str(spec),
            "--out", str(tmp_path / "pred"), "--no-progress"]
    assert main(argv) == 0
    assert (tmp_path / "pred" / "legend.png").is_file()
    spec.write_text(f"type: folder\nroot: {tmp_path / 'ds'}\nclasses: [a, b]\n")
    assert main(argv[:-3] + ["--out", str(tmp_path / "pred2"), "--no-progress"]) == 2
    assert "lists 2 classes but the model predicts 4" in capsys.readouterr().err
