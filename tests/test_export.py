"""ONNX export: parity with PyTorch at several sizes (dynamic pad in the graph), fixed-size
graphs, fp16, int8, and the onnxruntime backend of the Segmenter on a real photo."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402

from eseg import Segmenter  # noqa: E402
from eseg.cli import main  # noqa: E402
from eseg.engine.checkpoint import STATE_FILE  # noqa: E402
from eseg.errors import CheckpointError  # noqa: E402
from eseg.export.onnx import convert_fp16, export_onnx, quantize_onnx, read_metadata  # noqa: E402
from eseg.export.parity import check_parity  # noqa: E402
from eseg.runtimes.info import META_CONFIG  # noqa: E402
from eseg.runtimes.onnxruntime import OnnxRunner  # noqa: E402

from .conftest import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny P2-P9 model saved to a folder and exported by the CLI with dynamic H and W."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("export")
    model = tiny_model(num_classes=5).eval()
    model.save_pretrained(root / "model")
    # 512x512 is a multiple of the pad: the traced graph must still pad other sizes.
    code = main(["export", str(root / "model"), "--size", "512x512", "--dynamic", "--simplify", "--out", str(root / "m.onnx")])
    assert code == 0
    return model, root / "m.onnx"


def test_dynamic_export_matches_pytorch_at_sizes_that_need_the_in_graph_pad(exported, capsys):
    model, path = exported
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    runner = OnnxRunner(path)
    assert runner.info.fixed_size is None and runner.info.num_classes == 5 and runner.info.input_stride == model.input_stride
    assert runner.info.output == "lowres"  # eseg export's default: the head's logits of the padded input
    for size, batch in (((97, 203), 1), ((130, 70), 2)):
        x = torch.randn(batch, 3, *size)
        with torch.no_grad():
            expected = model.forward_lowres(x)
        got = runner(x)
        assert got.shape == expected.shape and got.shape[:2] == (batch, 5)
        assert (got - expected).abs().max().item() <= 1e-3


def test_fixed_size_export_of_a_non_multiple_size(tmp_path):
    model = tiny_model(num_classes=3).eval()
    path = export_onnx(model, tmp_path / "fixed.onnx", size=(100, 150))
    graph_input = onnx.load(str(path)).graph.input[0]
    dims = [d.dim_value or d.dim_param for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 100, 150]
    runner = OnnxRunner(path)
    assert runner.info.fixed_size == (100, 150)
    (result,) = check_parity(model, runner, [(100, 150)], batch=2)
    assert result["max_abs_diff"] <= 1e-3 and result["argmax_agreement"] == 1.0
    with pytest.raises(CheckpointError, match=r"onnxruntime cannot run '.*fixed\.onnx' on a \(1, 3, 100, 160\) input"):
        runner(torch.randn(1, 3, 100, 160))  # the graph is for 100x150 only


def test_onnxruntime_predict_equals_torch_predict_on_a_real_photo(exported):
    data = pytest.importorskip("skimage.data")
    model, path = exported
    photo = data.coffee()  # 400x600 RGB photograph
    torch_seg = Segmenter(model)
    ort_seg = Segmenter.from_pretrained(path, backend="onnxruntime")
    torch_logits = torch_seg.predict_logits(photo)
    ort_logits = ort_seg.predict_logits(photo)
    assert ort_logits.shape == torch_logits.shape == (5, 400, 600)
    assert (ort_logits - torch_logits).abs().max().item() <= 1e-3
    agreement = (ort_seg(photo) == torch_seg(photo)).mean()
    assert agreement >= 0.999


def test_fp16_and_int8_graphs_stay_close_to_float32(exported, tmp_path):
    model, path = exported
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.forward_lowres(x)  # the graph's output contract: low-resolution logits
    fp16 = OnnxRunner(convert_fp16(path, tmp_path / "m16.onnx"))
    assert (fp16(x) - expected).abs().max().item() <= 5e-2
    int8 = OnnxRunner(quantize_onnx(path, tmp_path / "m8.onnx", "dynamic"))
    out = int8(x)
    assert out.shape == expected.shape and torch.isfinite(out).all()
    scale = expected.abs().max().item()
    assert (out - expected).abs().max().item() <= 0.1 * scale
    assert read_metadata(tmp_path / "m8.onnx")[META_CONFIG] == read_metadata(path)[META_CONFIG]


def test_runner_refuses_files_it_cannot_use(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        OnnxRunner(tmp_path / "missing.onnx")
    plain = torch.nn.Conv2d(3, 2, 1)
    torch.onnx.export(plain, (torch.randn(1, 3, 8, 8),), str(tmp_path / "plain.onnx"), dynamo=False,
                      input_names=["images"], output_names=["logits"])
    with pytest.raises(CheckpointError, match="eseg_config"):
        OnnxRunner(tmp_path / "plain.onnx")
    bare = OnnxRunner(tmp_path / "plain.onnx", with_info=False)  # as the benchmark runs a peer's graph
    assert bare.info is None and bare(torch.randn(1, 3, 8, 8)).shape == (1, 2, 8, 8)


def test_export_cli_reports_parity_and_refuses_what_it_cannot_do(exported, tmp_path, capsys):
    model_dir = exported[1].parent / "model"
    code = main(["export", str(model_dir), "--size", "64", "96", "--out", str(tmp_path / "f.onnx")])  # H W form
    assert code == 0 and (tmp_path / "f.onnx").is_file()
    out = capsys.readouterr().out
    assert "fp32 64x96: max |logit diff|" in out and "ok;" in out
    assert main(["export", str(model_dir), "--size", "64x96", "--out", str(tmp_path / "f.onnx")]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(model_dir), "--precision", "bf16", "--out", str(tmp_path / "b.onnx")]) == 2
    assert "bf16 is not available for onnx" in capsys.readouterr().err
    # int8 needs validation images of the model's 5 classes: refused before anything is written
    assert main(["export", str(model_dir), "--precision", "int8", "--size", "64x96", "--out", str(tmp_path / "q.onnx")]) == 2
    assert "pass --eval-data" in capsys.readouterr().err
    assert main(["export", str(model_dir), "--precision", "int8", "--eval-data", "synthetic", "--size", "64x96",
                 "--out", str(tmp_path / "q.onnx")]) == 2
    assert "the model has 5 classes but the validation data (synthetic) has 8" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx"]  # no file and no temporary left behind


def test_int8_export_reports_the_miou_change_and_keeps_the_metadata(tmp_path, capsys):
    model = tiny_model(num_classes=8).eval()
    model.save_pretrained(tmp_path / "m8")
    code = main(["export", str(tmp_path / "m8"), "--precision", "int8", "--size", "64x128", "--eval-data", "synthetic",
                 "--eval-images", "4", "--out", str(tmp_path / "q.onnx")])
    assert code == 0
    out = capsys.readouterr().out
    assert "mIoU on 4 'synthetic' validation images" in out and "onnx int8" in out and "change vs fp32" in out
    assert OnnxRunner(tmp_path / "q.onnx").info.num_classes == 8
    ops = {node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ quantization


def test_export_accepts_a_training_run_folder_and_writes_next_to_it(exported, tmp_path):
    run = tmp_path / "run"
    best = exported[0].save_pretrained(run / "checkpoints" / "best")  # the layout eseg train leaves:
    torch.save({"step": 1}, best / STATE_FILE)  # a model folder plus its training state
    assert main(["export", str(run), "--size", "64x96"]) == 0
    graph = run / "model_64x96.onnx"
    assert graph.is_file() and not (run / "checkpoints" / "best" / "model_64x96.onnx").exists()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = exported[0].forward_lowres(x).numpy()  # the default output contract: low resolution
    assert np.abs(OnnxRunner(graph)(x).numpy() - expected).max() < 1e-4


def data_ops(path) -> list[str]:
    """Op types that move tensor data (a Slice of a Shape is size arithmetic, not a copy)."""
    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return [n.op_type for n in graph.node if not (n.op_type == "Slice" and producer.get(n.input[0]) == "Shape")]


def test_a_fixed_graph_at_a_multiple_of_the_stride_has_no_pad_or_crop(tmp_path):
    """A zero pad and an identity crop cost real copies in a runtime; only a dynamic graph
    needs them (their amounts depend on its input)."""
    model = tiny_model(num_classes=3).eval()
    ops = {dynamic: data_ops(export_onnx(model, tmp_path / f"m{dynamic}.onnx", size=(64, 96), dynamic=dynamic))
           for dynamic in (False, True)}
    assert "Pad" not in ops[False] and "Slice" not in ops[False]
    assert "Pad" in ops[True] and "Slice" in ops[True]
    odd = export_onnx(model, tmp_path / "odd.onnx", size=(70, 100))  # 70x100 pads to 96x128: both stay
    assert {"Pad", "Slice"} <= set(data_ops(odd))
    assert check_parity(model, OnnxRunner(odd), [(70, 100)])[0]["max_abs_diff"] <= 1e-3


def test_static_shapes_is_an_argument_of_the_forward_not_a_switch():
    """What a fixed-size trace needs travels down the forward: traced with it, the graph keeps
    no pad and resizes to constant sizes; traced without it (any other tracing, before or after),
    the pad and the size arithmetic stay."""
    import warnings

    model = tiny_model(num_classes=3).eval().requires_grad_(False)  # weights become the trace's constants
    x = torch.randn(1, 3, 64, 96)  # a multiple of the stride: the pad is zero

    def traced_ops(forward) -> list[str]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about shape-to-int conversions
            return [node.kind() for node in torch.jit.trace(forward, x, check_trace=False).graph.nodes()]

    dynamic = traced_ops(lambda t: model(t))
    static = traced_ops(lambda t: model(t, True))
    assert "aten::pad" in dynamic and "aten::pad" not in static
    assert static.count("aten::size") < dynamic.count("aten::size")  # resize sizes are constants
    assert traced_ops(lambda t: model(t)) == dynamic  # nothing was left switched on
    with torch.no_grad():
        assert torch.equal(model(x, True), model(x))  # eager: the same numbers either way


def test_export_leaves_the_callers_model_in_its_mode(tmp_path):
    model = tiny_model(num_classes=3).train()
    path = export_onnx(model, tmp_path / "m.onnx", size=(64, 96))
    assert model.training and all(m.training for m in model.modules())  # traced in eval mode, then put back
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model.eval()(x)
    assert (OnnxRunner(path)(x) - expected).abs().max().item() <= 1e-3  # the graph holds eval-mode BN
