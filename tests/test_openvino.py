"""OpenVINO export and backend: fp32 parity (fixed and dynamic, f32 stated, never the CPU's silent
bf16), bf16 and int8 graphs, eseg's metadata in the IR, and predict / val / Segmenter on .xml."""
import contextlib
import io
import json
import shutil
import sys

import numpy as np
import pytest
import torch

ov = pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from eseg import Segmenter  # noqa: E402
from eseg.cli import main  # noqa: E402
from eseg.errors import CheckpointError, DataError, ESegError  # noqa: E402
from eseg.export.onnx import export_onnx  # noqa: E402
from eseg.export.openvino import quantized_op_count  # noqa: E402
from eseg.export.pipeline import (  # noqa: E402
    MIN_ARGMAX_AGREEMENT,
    TOLERANCES,
    ExportRequest,
    export_model,
)
from eseg.runtimes import load_runner  # noqa: E402
from eseg.runtimes import openvino as ov_runtime  # noqa: E402
from eseg.runtimes.openvino import OpenVINORunner, layer_precisions, openvino_core  # noqa: E402

from .conftest import tiny_model  # noqa: E402

SIZE = (64, 96)
ODD = (97, 203)
CLASSES = [f"class{i}" for i in range(8)]  # 8 classes: the synthetic validation set's
CPU_CAPS = openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
BF16 = "bf16" if "BF16" in CPU_CAPS else "f32"  # what a bf16 request can get on this CPU


def cli(*args) -> str:
    """``eseg ...`` in-process; its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in args]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One tiny 8-class model exported four ways: fp32 fixed (CLI), fp32 dynamic (library),
    bf16 dynamic (CLI), int8 fixed with the synthetic mIoU check (CLI); and each export's log."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("openvino")
    model = tiny_model(num_classes=8, class_names=CLASSES, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)).eval()
    model.save_pretrained(root / "model")
    common = ("export", root / "model", "--format", "openvino", "--size", "64x96")
    logs, paths = {}, {}
    paths["fixed"] = root / "fixed.xml"
    logs["fixed"] = cli(*common, "--out", paths["fixed"])
    lines: list[str] = []
    paths["dynamic"] = export_model(ExportRequest(model=str(root / "model"), format="openvino", size=SIZE, dynamic=True,
                                                  out=str(root / "dynamic.xml")), log=lines.append)
    logs["dynamic"] = "\n".join(lines)
    paths["bf16"] = root / "bf16.xml"
    logs["bf16"] = cli(*common, "--dynamic", "--precision", "bf16", "--out", paths["bf16"])
    paths["int8"] = root / "int8.xml"
    spec = root / "val_48x80.yaml"  # validation images of another size than the graph's: resized to it
    spec.write_text("{type: synthetic, size: [48, 80]}\n")
    logs["int8"] = cli(*common, "--precision", "int8", "--eval-data", spec, "--eval-images", "2",
                       "--out", paths["int8"])
    return {"model": model, "root": root, "paths": paths, "logs": logs}


def max_diff(model, runner, size, batch=2):
    """Max |logit difference| of what the graph outputs (eseg export's default contract: the head's
    low-resolution logits of the padded input) and the agreement of its masks (the argmax of those
    logits resized as the model's forward resizes them) with PyTorch's."""
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        full = model(x)
        expected = model.forward_lowres(x) if runner.info.output == "lowres" else full
    got = runner(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    if runner.info.output == "lowres":
        padded = [-(-s // model.input_stride) * model.input_stride for s in size]
        got_full = torch.nn.functional.interpolate(got, size=padded, mode="bilinear", align_corners=False)
        got_full = got_full[..., : size[0], : size[1]]
    else:
        got_full = got
    return (got - expected).abs().max().item(), (got_full.argmax(1) == full.argmax(1)).float().mean().item()


def test_fp32_exports_match_pytorch_and_run_in_f32(made):
    model, paths, logs = made["model"], made["paths"], made["logs"]
    for name in ("fixed", "dynamic"):
        assert paths[name].is_file() and paths[name].with_suffix(".bin").is_file()
        assert "OpenVINO inference precision: f32" in logs[name]
        runner = OpenVINORunner(paths[name])
        assert runner.precision == "f32" and runner.graph_precision == "fp32"
        assert set(layer_precisions(runner.compiled)) == {"f32"}  # not the CPU's default bf16
        sizes = [SIZE] if name == "fixed" else [SIZE, ODD, (101, 77)]
        for size in sizes:
            diff, agreement = max_diff(model, runner, size)
            assert diff <= 1e-3 and agreement == 1.0, (name, size, diff)
    assert "openvino fp32 97x203" in logs["dynamic"]  # the pipeline checked the odd size too


def test_fixed_graph_rejects_other_sizes_and_outputs_are_copies(made):
    runner = OpenVINORunner(made["paths"]["fixed"])
    with pytest.raises(DataError, match="fixed 64x96"):
        runner(torch.randn(1, 3, 64, 100))
    dynamic = OpenVINORunner(made["paths"]["dynamic"])
    x = torch.randn(1, 3, *SIZE)
    first = dynamic(x)
    kept = first.clone()
    dynamic(torch.randn(1, 3, *SIZE))  # the same shape: OpenVINO reuses its output buffer
    assert torch.equal(first, kept)


def test_bf16_export_states_and_uses_bf16_where_the_cpu_has_it(made):
    model, paths, log = made["model"], made["paths"], made["logs"]["bf16"]
    assert f"OpenVINO inference precision: {BF16}" in log
    runner = OpenVINORunner(paths["bf16"])
    assert runner.precision == BF16 and runner.graph_precision == "bf16"
    assert BF16 in layer_precisions(runner.compiled)
    for size in (SIZE, ODD):
        diff, agreement = max_diff(model, runner, size)
        assert diff <= TOLERANCES["bf16"] or agreement >= MIN_ARGMAX_AGREEMENT["bf16"], (size, diff, agreement)
    # an explicit precision overrides the recorded one, both ways
    assert OpenVINORunner(paths["bf16"], precision="f32").precision == "f32"
    assert OpenVINORunner(paths["fixed"], precision="bf16").precision == BF16


def test_int8_graph_is_quantized_and_reports_the_miou_change(made):
    log, path = made["logs"]["int8"], made["paths"]["int8"]
    assert "OpenVINO inference precision: int8+f32" in log
    assert "mIoU on 2 'synthetic' validation images:" in log
    changes = {}
    for name in ("torch", "openvino fp32", "openvino int8"):
        (line,) = [line for line in log.splitlines() if line.strip().startswith(f"{name}:")]
        changes[name] = float(line.split("change vs fp32")[1].split("points")[0])
    assert changes["openvino fp32"] == 0.0 and abs(changes["openvino int8"]) <= 5.0
    assert abs(changes["torch"]) <= 0.05  # PyTorch scored through the graph's fixed input size too
    assert quantized_op_count(openvino_core().read_model(str(path))) > 0
    runner = OpenVINORunner(path)
    assert runner.graph_precision == "int8" and runner.precision == "int8+f32"
    if "INT8" in CPU_CAPS:
        executed = layer_precisions(runner.compiled)
        assert executed.get("u8", 0) + executed.get("i8", 0) > 0, executed


def test_int8_report_scores_pytorch_at_the_graphs_input_size(made):
    """A fixed-size graph sees every validation image resized to its size; PyTorch must see the
    same, or the mIoU change would measure the resize, not the runtime."""
    from eseg.export.calibration import eval_dataset
    from eseg.export.pipeline import Exporter, Int8Data, Stage

    model, paths = made["model"], made["paths"]
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        val = eval_dataset({"type": "synthetic", "size": [48, 80]}, "val", mean=model.config.mean,
                           std=model.config.std, num_classes=8, num_images=2)
        request = ExportRequest(model="m", format="openvino", size=(64, 96), precision="int8")
        exporter = Exporter(model, request, (64, 96), made["root"] / "unused.xml", log=lambda line: None,
                            data=Int8Data(val=val, calib=val, name="synthetic"))
        fp32 = Stage("openvino fp32", "fp32", paths["fixed"], OpenVINORunner(paths["fixed"]))
        int8 = Stage("openvino int8", "int8", paths["int8"], OpenVINORunner(paths["int8"]))
        exporter.report_int8(fp32, int8)
    finally:
        hook.remove()
    assert list(exporter.miou) == ["torch", "openvino fp32", "openvino int8"]  # the results, by name
    assert [r["size"] for r in int8.parity] == [[64, 96]]
    assert seen and {tuple(x.shape[-2:]) for x in seen} == {(64, 96)}
    # resized to 64x96, not pasted at 48x80 onto a zero-padded 64x96 canvas
    assert all(x[..., 48:, :].abs().amax(dim=(1, 2, 3)).min() > 0 for x in seen)


def test_metadata_round_trip(made):
    model, paths = made["model"], made["paths"]
    for name, fixed in (("fixed", SIZE), ("dynamic", None)):
        info = OpenVINORunner(paths[name]).info
        assert info.num_classes == 8 and info.class_names == CLASSES
        assert info.mean == pytest.approx((0.5, 0.4, 0.3)) and info.std == pytest.approx((0.2, 0.25, 0.3))
        assert info.input_stride == model.input_stride and info.fixed_size == fixed
        assert info.config.to_dict() == model.config.to_dict()


def test_segmenter_from_xml_equals_torch_on_a_real_photo(made):
    photo = pytest.importorskip("skimage.data").coffee()  # 400x600 RGB photograph
    seg = Segmenter.from_pretrained(made["paths"]["dynamic"])
    assert isinstance(seg.runner, OpenVINORunner)
    reference = Segmenter(made["model"])
    logits, expected = seg.predict_logits(photo), reference.predict_logits(photo)
    assert logits.shape == expected.shape == (8, 400, 600)
    assert (logits - expected).abs().max().item() <= 1e-3
    assert (seg(photo) == reference(photo)).mean() >= 0.999


def test_cli_predict_and_val_on_an_xml(made, tmp_path):
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (70, 110, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "frame.png")
    xml = made["paths"]["dynamic"]
    printed = cli("predict", xml, "--source", tmp_path / "frame.png", "--out", tmp_path / "pred")
    assert "predicted 1 of 1" in printed and "OpenVINORunner" in printed
    mask = np.asarray(Image.open(tmp_path / "pred" / "masks" / "frame.png"))
    assert mask.shape == (70, 110) and np.array_equal(mask, Segmenter(made["model"])(image))
    (tmp_path / "spec.yaml").write_text("{type: synthetic, num_images: {val: 2}, size: [64, 96]}\n")
    cli("val", xml, "--data", tmp_path / "spec.yaml", "--out", tmp_path / "val", "--num-workers", "0")
    results = json.loads((tmp_path / "val" / "results.json").read_text())
    assert "mIoU" in json.dumps(results)


def test_an_ir_converted_by_openvino_itself_reads_the_onnx_metadata(made, tmp_path):
    onnx_path = export_onnx(made["model"], tmp_path / "m.onnx", size=SIZE)
    ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_path / "ovc.xml"), compress_to_fp16=False)
    runner = load_runner(tmp_path / "ovc.xml")
    assert isinstance(runner, OpenVINORunner)
    assert runner.precision == "f32" and runner.info.fixed_size == SIZE and runner.info.class_names == CLASSES


def test_unusable_files_name_themselves(made, tmp_path):
    from openvino import opset13 as ops

    image = ops.parameter([1, 3, 8, 8], np.float32, name="images")
    ov.save_model(ov.Model([ops.relu(image)], [image], "peer"), str(tmp_path / "peer.xml"))
    with pytest.raises(CheckpointError, match=r"peer\.xml.*eseg_config"):
        OpenVINORunner(tmp_path / "peer.xml")
    shutil.copy(made["paths"]["fixed"], tmp_path / "alone.xml")
    with pytest.raises(CheckpointError, match=r"alone\.xml.*alone\.bin"):
        OpenVINORunner(tmp_path / "alone.xml")
    (tmp_path / "labels.xml").write_text("<annotation><object/></annotation>\n")
    with pytest.raises(CheckpointError, match=r"labels\.xml' is not an OpenVINO IR"):
        OpenVINORunner(tmp_path / "labels.xml")
    with pytest.raises(CheckpointError, match=r"nothere\.xml"):
        OpenVINORunner(tmp_path / "nothere.xml")


def test_a_failed_parity_check_writes_nothing(made, tmp_path, monkeypatch):
    class Off(OpenVINORunner):
        def __call__(self, batch):
            return super().__call__(batch) + 0.01

    monkeypatch.setattr(ov_runtime, "OpenVINORunner", Off)
    request = ExportRequest(model=str(made["root"] / "model"), format="openvino", size=SIZE,
                            out=str(tmp_path / "m.xml"))
    with pytest.raises(CheckpointError, match="openvino fp32 parity check failed"):
        export_model(request, log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_missing_openvino_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ESegError, match=r"pip install 'eseg\[openvino\]'"):
        ov_runtime.require_openvino()


def test_devices_and_precisions_are_checked(made):
    from eseg.errors import ConfigError

    xml = made["paths"]["fixed"]
    with pytest.raises(ConfigError, match="OpenVINO does not run on cuda"):
        OpenVINORunner(xml, device=torch.device("cuda", 0))
    with pytest.raises(ConfigError, match="no device 'TPU'"):
        OpenVINORunner(xml, device="TPU")
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        OpenVINORunner(xml, precision="fp16")
    assert OpenVINORunner(xml, device=torch.device("cpu"), threads=1).compiled.get_property("INFERENCE_NUM_THREADS") == 1
