"""benchmarks/gpu_fps.py works: its CPU path runs end to end, and the graph it gives TensorRT is
the model (checked with onnxruntime)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_fps.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_fps_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cpu_path_measures_every_step(tmp_path, capsys):
    script = load_script()
    out = tmp_path / "fps.json"
    models = ["eseg_lite_s", "lraspp_mobilenet_v3_large"]
    assert script.main(["--device", "cpu", "--quick", "--models", *models, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "TensorRT skipped: TensorRT needs a CUDA device" in printed
    doc = json.loads(out.read_text())
    assert doc["machine"].startswith("CPU; torch ")
    compiled = [r for r in doc["results"] if r["backend"] == "torch eager"]
    assert [r["model"] for r in compiled] == models
    for r in compiled:
        assert r["size"] == "64x128" and r["precision"] == "fp32" and r["note"] == ""
        assert r["network_fps"] > 0 and r["end_to_end_fps"] > 0
    skipped = [r for r in doc["results"] if r["backend"] == "TensorRT"]
    assert len(skipped) == 2 and all(r["network_fps"] is None and "CUDA" in r["note"] for r in skipped)
    assert "| eseg_lite_s | 64x128 | torch eager | fp32 |" in printed


def test_an_exhausted_budget_is_reported_not_hidden(capsys):
    script = load_script()
    settings = script.settings_from(script.argparse.Namespace(
        device="cpu", quick=True, sizes=[(64, 128)], models=["eseg_lite_s"], runs=1, images=1, budget_s=-1.0))
    results = script.run(settings)
    assert [(r.model, r.note) for r in results] == [("eseg_lite_s", "not run: the time budget was spent")]


def test_every_model_it_names_can_be_built():
    from eseg.benchmark.models import build_model

    script = load_script()
    for name in script.MODELS:
        assert isinstance(build_model(name, num_classes=script.NUM_CLASSES), torch.nn.Module)


def test_the_graph_for_tensorrt_is_the_model(tmp_path):
    import onnxruntime

    script = load_script()
    from eseg.benchmark.models import build_model

    model = build_model("lraspp_mobilenet_v3_large", num_classes=script.NUM_CLASSES)
    path = script.onnx_graph(model, (64, 128), tmp_path)
    x = torch.randn(1, 3, 64, 128)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.inference_mode():
        expected = model(x).numpy()
    assert graph_out.shape == (1, script.NUM_CLASSES, 64, 128)
    np.testing.assert_allclose(graph_out, expected, rtol=1e-3, atol=1e-3)
