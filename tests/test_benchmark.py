"""`eseg benchmark` plumbing (no timing asserts) and the arithmetic behind its tables."""
import csv
import json

import pytest

from eseg.benchmark.models import build_model
from eseg.benchmark.report import pareto_front
from eseg.benchmark.run import Result, add_ratios
from eseg.cli import main
from eseg.errors import ConfigError

TINY_ESEG = ["--set", "backbone=test_efficientnet", "--set", "fpn_width=16", "--set", "head_width=16",
             "--set", "fpn_repeats=1", "--set", "max_level=6"]


def test_benchmark_cli_writes_every_output_for_two_models(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["benchmark", "--models", "eseg_lite_s,lraspp_mobilenet_v3_large", "--size", "64x128",
                 "--runs", "2", "--warmup", "1", "--threads", "1", "--backends", "eager",
                 "--reference", "lraspp_mobilenet_v3_large", "--out", str(out), *TINY_ESEG])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in doc["results"]}
    assert set(rows) == {"eseg_lite_s", "lraspp_mobilenet_v3_large"}
    for r in rows.values():
        assert r["error"] is None and r["latency_ms_median"] > 0 and r["latency_ms_p90"] >= r["latency_ms_median"]
        assert r["peak_mem_mb"] is not None and r["gmacs"] > 0 and r["params_m"] > 0
    assert rows["lraspp_mobilenet_v3_large"]["latency_vs"]["lraspp_mobilenet_v3_large"] == pytest.approx(1.0)
    ratio = rows["eseg_lite_s"]["latency_ms_median"] / rows["lraspp_mobilenet_v3_large"]["latency_ms_median"]
    assert rows["eseg_lite_s"]["latency_vs"]["lraspp_mobilenet_v3_large"] == pytest.approx(ratio)
    assert "76.0" not in (out / "results.md").read_text()  # untrained weights: no paper mIoU beside them
    assert doc["matmul_gflops"] > 0 and doc["settings"]["model_options"]["fpn_width"] == 16
    assert rows["eseg_lite_s"]["precision"] == "fp32"
    with open(out / "results.csv", newline="") as f:
        assert [row["model"] for row in csv.DictReader(f)] == ["eseg_lite_s", "lraspp_mobilenet_v3_large"]
    table = (out / "results.md").read_text()
    assert "| eseg_lite_s | eager | fp32 |" in table and "latency / lraspp_mobilenet_v3_large" in table
    assert "2 timed runs per entry" in table  # few runs: the report says its figures may be noise
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_benchmark_cli_rejects_unknown_models_and_backends(tmp_path, capsys):
    assert main(["benchmark", "--models", "eseg_lite_s,unet9000", "--out", str(tmp_path)]) == 2
    assert "unet9000" in capsys.readouterr().err
    assert main(["benchmark", "--models", "eseg_lite_s", "--backends", "tensorflow", "--out", str(tmp_path)]) == 2
    with pytest.raises(ConfigError, match="unknown benchmark peer .resnet9000."):
        build_model("resnet9000")


def test_peer_models_return_logit_tensors_at_the_input_size():
    import torch

    pytest.importorskip("segmentation_models_pytorch")
    for name in ("lraspp_mobilenet_v3_large", "smp_fpn"):
        with torch.no_grad():
            out = build_model(name, num_classes=3, encoder="test_efficientnet")(torch.randn(1, 3, 64, 96))
        assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 64, 96)


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 10.0), (2.0, 5.0), (3.0, 6.0), (4.0, 1.0), (2.0, 5.0), (0.5, 20.0)]
    # (3, 6) is beaten by (2, 5); the duplicate (2, 5) points do not dominate each other.
    assert pareto_front(points) == [5, 0, 1, 4, 3]


def test_ratios_follow_from_the_measured_numbers_for_every_reference():
    def result(model, backend, ms, mem):
        return Result(model, backend, 1.0, 5.0, latency_ms_median=ms, peak_mem_mb=mem)

    results = [
        result("eseg_lite_s", "eager", 100.0, 40.0), result("eseg_lite_s", "openvino", 50.0, 30.0),
        result("smp_deeplabv3plus", "eager", 400.0, 100.0), result("lraspp_mobilenet_v3_large", "eager", 80.0, 20.0),
        result("lraspp_mobilenet_v3_large", "openvino", 40.0, 10.0),
    ]
    add_ratios(results, ["smp_deeplabv3plus", "lraspp_mobilenet_v3_large"])
    assert results[0].latency_vs == pytest.approx({"smp_deeplabv3plus": 0.25, "lraspp_mobilenet_v3_large": 1.25})
    assert results[0].memory_vs["smp_deeplabv3plus"] == pytest.approx(0.4)
    assert results[1].latency_vs == pytest.approx({"lraspp_mobilenet_v3_large": 1.25})  # same backend only
    assert results[1].speedup_vs_eager == pytest.approx(2.0)


def test_environment_works_without_the_onnx_extra(monkeypatch):
    """eseg reproduce records the environment on a core install, where onnxruntime is absent."""
    import importlib.metadata as metadata
    import sys

    import torch

    from eseg.benchmark.run import environment

    real_version = metadata.version

    def version(name):
        if name == "onnxruntime":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    monkeypatch.setattr(metadata, "version", version)
    env = environment(1, torch.device("cpu"))
    assert env["onnxruntime"] is None and env["torch"] == torch.__version__
