"""ModelInfo, the metadata every runner carries: the stride it pads to follows the one padding
rule (the model's input_stride) also for graphs exported before their metadata recorded it."""
import pytest

import eseg
from eseg.runtimes.info import META_INPUT_STRIDE, ModelInfo, input_stride_of

from .conftest import TINY


def old_export_metadata(model) -> dict[str, str]:
    """The metadata of a graph exported before the stride was recorded."""
    meta = ModelInfo(model.config, model.input_stride).to_metadata()
    del meta[META_INPUT_STRIDE]
    return meta


@pytest.mark.parametrize("name, options", [
    ("eseg_lite_s", {**TINY}),  # P2-P9 pyramid: 2**max_level would be 512
    ("eseg_lite_s", {**TINY, "max_level": 6}),
    ("deeplabv3plus", {"backbone": "test_efficientnet", "output_stride": 8}),
    ("deeplabv3plus", {"backbone": "test_efficientnet", "output_stride": 16}),
])
def test_a_graph_without_a_recorded_stride_pads_as_its_model_does(name, options):
    model = eseg.create_model(name, num_classes=3, **options)
    info = ModelInfo.from_metadata(old_export_metadata(model), source="old.onnx")
    assert info.input_stride == model.input_stride == input_stride_of(model.config)
    assert info.config.to_dict() == model.config.to_dict()


def test_a_recorded_stride_is_read_as_recorded():
    model = eseg.create_model("eseg_lite_s", num_classes=3, **TINY)
    meta = {**ModelInfo(model.config, model.input_stride).to_metadata(), META_INPUT_STRIDE: "64"}
    assert ModelInfo.from_metadata(meta, source="x.onnx").input_stride == 64


def test_reading_the_stride_leaves_the_config_as_it_was():
    model = eseg.create_model("eseg_lite_s", num_classes=3, **TINY)
    before = model.config.to_dict()
    input_stride_of(model.config)
    assert model.config.to_dict() == before


def test_an_onnx_graph_exported_without_the_stride_loads_and_batches_as_its_model(tmp_path):
    """Today's export with the stride removed from its metadata, as graphs exported before it was
    recorded: onnxruntime batches two sizes on the model's canvas and agrees with PyTorch."""
    pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from eseg.export.onnx import export_onnx
    from eseg.runtimes.onnxruntime import OnnxRunner

    model = eseg.create_model("eseg_lite_s", num_classes=3, **TINY).eval()
    path = export_onnx(model, tmp_path / "old.onnx", size=(64, 64), dynamic=True)
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != META_INPUT_STRIDE]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(path))
    runner = OnnxRunner(path)
    assert runner.info.input_stride == model.input_stride == 32
    images = [torch.randn(3, 40, 70), torch.randn(3, 65, 33)]
    got = eseg.Segmenter(runner).logits_from_tensors(images)
    expected = eseg.Segmenter(model).logits_from_tensors(images)
    for a, b in zip(got, expected):
        assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-3
