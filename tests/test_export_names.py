"""eseg export's output names (--out), its default size (the one the model was validated at),
what a failed export leaves behind (nothing), and reading a graph whatever its file name."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")

from eseg.cli import main  # noqa: E402
from eseg.errors import CheckpointError, ConfigError  # noqa: E402
from eseg.export import pipeline  # noqa: E402
from eseg.export.pipeline import ExportSizeWarning  # noqa: E402
from eseg.export.formats import graph_out_path, sniff_graph_format  # noqa: E402
from eseg.runtimes import load_runner  # noqa: E402
from eseg.runtimes.onnxruntime import OnnxRunner  # noqa: E402

from .conftest import tiny_model  # noqa: E402

SIZE = (64, 96)  # the size the module's model was validated at


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny 3-class model saved with the validation size training records, 64x96."""
    torch.manual_seed(0)
    model = tiny_model(num_classes=3, eval_size=SIZE, val_sizes=[SIZE]).eval()
    return model.save_pretrained(tmp_path_factory.mktemp("names") / "model")


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_out_gets_the_format_suffix_and_a_folder_gets_model_inside(tmp_path):
    assert graph_out_path(str(tmp_path / "somewhere" / "model"), "openvino") == tmp_path / "somewhere" / "model.xml"
    assert graph_out_path(str(tmp_path / "somewhere" / "model"), "onnx") == tmp_path / "somewhere" / "model.onnx"
    assert graph_out_path(str(tmp_path / "m.onnx"), "onnx") == tmp_path / "m.onnx"
    assert graph_out_path(str(tmp_path / "model.v2"), "onnx") == tmp_path / "model.v2.onnx"
    assert graph_out_path(f"{tmp_path / 'new'}/", "openvino") == tmp_path / "new" / "model.xml"  # need not exist
    assert graph_out_path(str(tmp_path), "onnx") == tmp_path / "model.onnx"  # an existing folder
    with pytest.raises(ConfigError, match=r"ends in \.onnx, which --format openvino does not write.*--out .*m\.xml, "
                                          r"or --format onnx"):
        graph_out_path("m.onnx", "openvino")
    with pytest.raises(ConfigError, match=r"ends in \.xml, which --format onnx does not write"):
        graph_out_path("m.xml", "onnx")
    with pytest.raises(ConfigError, match=r"ends in \.bin.*use --out m\.xml$"):
        graph_out_path("m.bin", "openvino")


def test_export_writes_where_out_says(model_dir, tmp_path):
    os.chdir(tmp_path)  # relative --out, as a user types it (pytest restores the folder)
    assert main(["export", str(model_dir), "--out", "somewhere/model"]) == 0
    assert main(["export", str(model_dir), "--out", "folder/"]) == 0
    assert listing(tmp_path) == ["folder", "folder/model.onnx", "somewhere", "somewhere/model.onnx"]
    runner = OnnxRunner(tmp_path / "somewhere" / "model.onnx")
    assert runner.info.fixed_size == SIZE and runner.info.num_classes == 3


def test_a_mismatched_suffix_is_refused_with_exit_2_before_anything_is_written(model_dir, tmp_path, capsys):
    assert main(["export", str(model_dir), "--format", "openvino", "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"use --out {tmp_path / 'm.xml'}, or --format onnx" in capsys.readouterr().err
    assert main(["export", str(model_dir), "--out", str(tmp_path / "new" / "m.xml")]) == 2
    assert listing(tmp_path) == []


def test_openvino_into_a_folder_with_overwrite_writes_the_pair_inside_it(model_dir, tmp_path):
    """The issue's `--format openvino --out somedir/ --overwrite`: no IsADirectoryError, no
    stray somedir.bin beside the folder."""
    pytest.importorskip("openvino")
    (tmp_path / "somedir").mkdir()
    (tmp_path / "somedir" / "notes.txt").write_text("kept")
    for out in (f"{tmp_path / 'somedir'}/", str(tmp_path / "somedir")):  # with and without the slash
        assert main(["export", str(model_dir), "--format", "openvino", "--out", out, "--overwrite"]) == 0
        assert listing(tmp_path) == ["somedir", "somedir/model.bin", "somedir/model.xml", "somedir/notes.txt"]
    runner = load_runner(tmp_path / "somedir" / "model.xml")
    assert runner.info.fixed_size == SIZE


def test_a_folder_where_the_graph_would_go_is_refused(model_dir, tmp_path, capsys):
    (tmp_path / "d" / "model.onnx").mkdir(parents=True)
    assert main(["export", str(model_dir), "--out", f"{tmp_path / 'd'}/", "--overwrite"]) == 2
    assert f"'{tmp_path / 'd' / 'model.onnx'}' is a folder" in capsys.readouterr().err
    assert listing(tmp_path) == ["d", "d/model.onnx"]


def failing_convert(error: BaseException):
    def convert(self, fp32, work):
        (work / "model.half.onnx").write_bytes(b"half written")  # a temporary the failure must not leave
        raise error
    return convert


@pytest.mark.parametrize("error, code", [(CheckpointError("onnx fp16 parity check failed"), 2),
                                         (KeyboardInterrupt(), 130)])
def test_a_failed_export_leaves_no_file_and_no_folder_it_made(model_dir, tmp_path, monkeypatch, error, code):
    monkeypatch.setattr(pipeline.Exporter, "convert", failing_convert(error))
    assert main(["export", str(model_dir), "--out", str(tmp_path / "new" / "deeper" / "m.onnx")]) == code
    assert listing(tmp_path) == []


def test_a_failure_between_the_weights_and_the_graph_keeps_the_previous_export(model_dir, tmp_path, monkeypatch, capsys):
    """The .bin is moved first: when the .xml move fails, the new .bin goes and the previous pair
    comes back, so graph and weights always belong together."""
    pytest.importorskip("openvino")
    out = tmp_path / "ov" / "m.xml"
    assert main(["export", str(model_dir), "--format", "openvino", "--size", "32x64", "--out", str(out)]) == 0
    before = {name: (out.parent / name).read_bytes() for name in ("m.xml", "m.bin")}
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == out and Path(src).name == "model.xml":  # the new graph onto the target
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(pipeline.os, "replace", replace)
    assert main(["export", str(model_dir), "--format", "openvino", "--out", str(out), "--overwrite"]) == 2
    assert f"cannot write '{out}'" in capsys.readouterr().err
    assert listing(tmp_path) == ["ov", "ov/m.bin", "ov/m.xml"]
    assert {name: (out.parent / name).read_bytes() for name in before} == before
    assert load_runner(out).info.fixed_size == (32, 64)  # the previous graph, whole


def test_export_defaults_to_the_validated_size_and_warns_when_it_differs(model_dir, tmp_path, capsys):
    assert main(["export", str(model_dir), "--out", str(tmp_path / "default.onnx")]) == 0
    assert OnnxRunner(tmp_path / "default.onnx").info.fixed_size == SIZE
    with pytest.warns(ExportSizeWarning, match=r"exporting a fixed 64x64 graph, but the model was validated at 64x96.*"
                                         r"drop --size to export at 64x96"):
        assert main(["export", str(model_dir), "--size", "64x64", "--out", str(tmp_path / "other.onnx")]) == 0
    assert OnnxRunner(tmp_path / "other.onnx").info.fixed_size == (64, 64)


def test_validation_images_of_varied_sizes_give_a_dynamic_graph(tmp_path, capsys):
    model = tiny_model(num_classes=3, eval_size=None, val_sizes=[(64, 96), (64, 64)]).eval()
    model.save_pretrained(tmp_path / "varied")
    assert main(["export", str(tmp_path / "varied")]) == 0
    assert "validation images varied in size (64x96, 64x64): exporting a dynamic graph" in capsys.readouterr().out
    assert OnnxRunner(tmp_path / "varied" / "model_dynamic.onnx").info.fixed_size is None
    with pytest.warns(ExportSizeWarning, match="validated at 64x96, 64x64.*use --dynamic"):
        assert main(["export", str(tmp_path / "varied"), "--size", "64x96", "--out", str(tmp_path / "f.onnx")]) == 0


def test_a_model_saved_before_sizes_were_recorded_exports_at_its_eval_size_with_a_note(tmp_path, capsys):
    model = tiny_model(num_classes=3, eval_size=(32, 64)).eval()
    assert model.config.val_sizes is None
    model.save_pretrained(tmp_path / "old")
    assert main(["export", str(tmp_path / "old")]) == 0
    assert "records no validation sizes" in capsys.readouterr().out
    assert OnnxRunner(tmp_path / "old" / "model_32x64.onnx").info.fixed_size == (32, 64)


def test_a_graph_is_read_by_what_it_holds_whatever_its_name(model_dir, tmp_path):
    assert main(["export", str(model_dir), "--out", str(tmp_path / "g.onnx")]) == 0
    os.rename(tmp_path / "g.onnx", tmp_path / "graph")
    assert sniff_graph_format(tmp_path / "graph") == "onnx" and sniff_graph_format(model_dir) is None
    assert isinstance(load_runner(tmp_path / "graph"), OnnxRunner)
    assert isinstance(load_runner(tmp_path / "graph", "onnxruntime"), OnnxRunner)
    with pytest.raises(ConfigError, match="holds an onnx graph, which the torch backend does not read; use "
                                          "--backend onnxruntime or --backend openvino"):
        load_runner(tmp_path / "graph", "torch")
    with pytest.raises(ConfigError, match="is a saved model, not an exported graph.*eseg export"):
        load_runner(model_dir, "onnxruntime")


def test_predict_with_backend_openvino_reads_an_ir_named_without_suffix(model_dir, tmp_path):
    """The issue's `--out somewhere/model` wrote an XML named `model` that predict refused; an XML
    written into a `.onnx` file by an older eseg is read too, as what it holds."""
    pytest.importorskip("openvino")
    from eseg.runtimes.openvino import OpenVINORunner

    assert main(["export", str(model_dir), "--format", "openvino", "--out", str(tmp_path / "ov" / "model")]) == 0
    os.rename(tmp_path / "ov" / "model.xml", tmp_path / "ov" / "model")  # weights stay model.bin
    image = np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    assert main(["predict", str(tmp_path / "ov" / "model"), "--backend", "openvino", "--source",
                 str(tmp_path / "img.png"), "--out", str(tmp_path / "preds"), "--save", "masks", "--no-progress"]) == 0
    mask = np.asarray(Image.open(tmp_path / "preds" / "masks" / "img.png"))
    assert mask.shape == SIZE and mask.max() < 3
    (tmp_path / "old").mkdir()
    shutil.copy(tmp_path / "ov" / "model", tmp_path / "old" / "m.onnx")
    shutil.copy(tmp_path / "ov" / "model.bin", tmp_path / "old" / "m.bin")
    assert isinstance(load_runner(tmp_path / "old" / "m.onnx"), OpenVINORunner)
    with pytest.raises(ConfigError, match="holds an openvino graph.*use --backend openvino"):
        load_runner(tmp_path / "old" / "m.onnx", "onnxruntime")
