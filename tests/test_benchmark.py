"""`eseg benchmark` plumbing (no timing asserts) and the arithmetic behind its tables."""
import csv
import json

import pytest

from eseg.benchmark import Result, add_ratios, build_model, pareto_front, speed_goals
from eseg.cli import main
from eseg.errors import ConfigError

TINY_ESEG = ["backbone=test_efficientnet", "fpn_width=16", "head_width=16", "fpn_repeats=1", "max_level=6"]


def test_benchmark_cli_writes_every_output_for_two_models(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["benchmark", "--models", "eseg_lite_s,lraspp_mobilenet_v3_large", "--size", "64x128",
                 "--runs", "2", "--warmup", "1", "--threads", "1", "--backends", "eager",
                 "--reference", "lraspp_mobilenet_v3_large", "--out", str(out), "--eseg-overrides", *TINY_ESEG])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in doc["results"]}
    assert set(rows) == {"eseg_lite_s", "lraspp_mobilenet_v3_large"}
    for r in rows.values():
        assert r["error"] is None and r["latency_ms_median"] > 0 and r["latency_ms_p90"] >= r["latency_ms_median"]
        assert r["peak_mem_mb"] is not None and r["gmacs"] > 0 and r["params_m"] > 0
    assert rows["lraspp_mobilenet_v3_large"]["latency_vs_reference"] == pytest.approx(1.0)
    assert rows["eseg_lite_s"]["published_miou"] == 76.0  # the paper's number, labelled as such
    assert doc["matmul_gflops"] > 0 and doc["settings"]["eseg_overrides"]["fpn_width"] == 16
    with open(out / "results.csv", newline="") as f:
        assert [row["model"] for row in csv.DictReader(f)] == ["eseg_lite_s", "lraspp_mobilenet_v3_large"]
    table = (out / "results.md").read_text()
    assert "| eseg_lite_s | eager |" in table and "arXiv 2203.12683" in table
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_benchmark_cli_rejects_unknown_models_and_backends(tmp_path, capsys):
    assert main(["benchmark", "--models", "eseg_lite_s,unet9000", "--out", str(tmp_path)]) == 2
    assert "unet9000" in capsys.readouterr().err
    assert main(["benchmark", "--models", "eseg_lite_s", "--backends", "tensorflow", "--out", str(tmp_path)]) == 2
    with pytest.raises(ConfigError, match="unknown benchmark model"):
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


def test_ratios_and_goals_follow_from_the_measured_numbers():
    def result(model, backend, ms, mem, share=0.2):
        return Result(model, backend, 1.0, 5.0, latency_ms_median=ms, peak_mem_mb=mem, matmul_share=share)

    results = [
        result("eseg_lite_s", "eager", 100.0, 40.0), result("eseg_lite_s", "onnxruntime", 50.0, 30.0, share=0.4),
        result("smp_deeplabv3plus", "eager", 400.0, 100.0), result("lraspp_mobilenet_v3_large", "eager", 80.0, 20.0),
    ]
    add_ratios(results, "smp_deeplabv3plus")
    assert results[0].latency_vs_reference == pytest.approx(0.25)
    assert results[0].memory_vs_reference == pytest.approx(0.4)
    assert results[1].latency_vs_reference == pytest.approx(0.125)  # no smp onnxruntime entry: vs its eager run
    assert results[1].speedup_vs_eager == pytest.approx(2.0)
    goals = {g["goal"]: g for g in speed_goals(results)}
    assert goals["eseg_lite_s eager latency / smp_deeplabv3plus eager"]["met"] is True  # 0.25 <= 0.30
    assert goals["eseg_lite_s eager latency / lraspp_mobilenet_v3_large eager"]["value"] == pytest.approx(1.25)
    assert goals["eseg_lite_s eager latency / lraspp_mobilenet_v3_large eager"]["met"] is False
    assert goals["eseg_lite_s onnxruntime speed-up over eager"]["met"] is True
    assert goals["eseg_lite_s (onnxruntime) achieved GFLOP/s share of matmul"]["value"] == pytest.approx(0.4)
    assert goals["eseg_lite_s eager peak memory / smp_deeplabv3plus eager"]["value"] == pytest.approx(0.4)


def test_environment_works_without_the_onnx_extra(monkeypatch):
    """eseg reproduce records the environment on a core install, where onnxruntime is absent."""
    import importlib.metadata as metadata
    import sys

    import torch

    from eseg.benchmark import environment

    real_version = metadata.version

    def version(name):
        if name == "onnxruntime":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    monkeypatch.setattr(metadata, "version", version)
    env = environment(1, torch.device("cpu"))
    assert env["onnxruntime"] is None and env["torch"] == torch.__version__
