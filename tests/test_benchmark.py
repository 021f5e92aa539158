"""`eseg benchmark` plumbing (no timing asserts) and the arithmetic behind its tables."""
import csv
import json
from dataclasses import asdict

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


def test_every_variant_runs_through_the_runners_and_states_its_precision(tmp_path):
    """eager and channels_last are a TorchRunner with its options; onnxruntime and openvino run
    the exported graph in eseg's runners (a peer's graph, without eseg metadata, too), and agree
    with PyTorch."""
    import torch

    pytest.importorskip("onnxruntime")
    from eseg.benchmark.prepare import prepare_variant
    from eseg.runtimes.onnxruntime import OnnxRunner
    from eseg.runtimes.torch import TorchRunner

    from .conftest import tiny_model

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    models = {"eseg": tiny_model(num_classes=3).eval(), "peer": build_model("lraspp_mobilenet_v3_large", num_classes=3)}
    variants = ["eager", "channels_last", "onnxruntime"] + (["openvino"] if _has("openvino") else [])
    for name, model in models.items():
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            expected = model(x)
        for variant in variants:
            runnable = prepare_variant(model, variant, (64, 96), device=cpu, threads=1, onnx_path=tmp_path / f"{name}.onnx")
            given = runnable.make_input(1)  # made outside the timed call, as the runner takes it
            assert runnable.fn(given).shape == expected.shape and runnable.precision == "fp32", (name, variant)
            assert (runnable.fn(x) - expected).abs().max().item() < 1e-3, (name, variant)
            if variant in ("eager", "channels_last"):
                assert isinstance(runnable.fn, TorchRunner)
                assert given.is_contiguous(memory_format=torch.channels_last) == (variant == "channels_last")
        assert next(model.parameters()).is_contiguous()  # the caller's model is not converted
    onnx = prepare_variant(models["peer"], "onnxruntime", (64, 96), device=cpu, threads=1, onnx_path=tmp_path / "peer.onnx")
    assert isinstance(onnx.fn, OnnxRunner) and onnx.fn.info is None  # the graph runs as it is: a peer has no metadata
    options = onnx.fn.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # no spinning into the next entry
    if "openvino" in variants:
        from eseg.runtimes.openvino import OpenVINORunner

        ov = prepare_variant(models["peer"], "openvino", (64, 96), device=cpu, threads=1, onnx_path=tmp_path / "peer.onnx")
        assert isinstance(ov.fn, OpenVINORunner) and ov.fn.info is None and ov.fn.precision == "f32"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_a_failed_entry_says_why_in_its_latency_column():
    from eseg.benchmark.report import markdown_report, table_rows

    ok = Result("eseg_lite_s", "eager", 1.0, 5.0, latency_ms_median=12.0, latency_ms_p90=13.0)
    failed = Result("eseg_lite_s", "openvino", 1.0, 5.0, error="CheckpointError: cannot compile")
    doc = {"settings": {"references": ["eseg_lite_s"], "size": [64, 128], "threads": 1, "precision": "fp32", "runs": 2,
                        "warmup": 1, "batch": 1, "encoder": "x"},
           "environment": {"cpu": "cpu", "device": "cpu", "torch": "2", "onnxruntime": None, "openvino": None},
           "matmul_gflops": 1.0, "skipped": {}, "results": [asdict(ok), asdict(failed)]}
    headers, rows = table_rows(doc)
    by_header = [dict(zip(headers, row)) for row in rows]
    assert by_header[0]["latency median (ms)"] == "12.0" and by_header[0]["p90 (ms)"] == "13.0"
    assert by_header[1]["latency median (ms)"] == "failed: CheckpointError: cannot compile"
    assert by_header[1]["p90 (ms)"] == "–" and by_header[1]["backend"] == "openvino"
    assert "| eseg_lite_s | openvino | fp32 | 1.00 | 5.00 | failed: CheckpointError: cannot compile |" in markdown_report(doc)


def test_the_names_everyone_reads_are_torch_free():
    """The CLI's --help reads formats, precisions and variants; none of their homes may import torch."""
    import subprocess
    import sys

    probe = ("import sys, eseg.export.formats, eseg.tables, eseg.benchmark.variants, eseg.benchmark.peers; "
             "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_variants_are_named_apart_from_runtimes():
    from eseg.benchmark.variants import VARIANTS, variant_names
    from eseg.runtimes import BACKENDS

    assert variant_names() == ["eager", "channels_last", "compile", "onnxruntime", "openvino"]
    assert {VARIANTS.get(name).runtime for name in variant_names()} == set(BACKENDS.names())
    assert VARIANTS.get("channels_last").channels_last and VARIANTS.get("compile").compile
    with pytest.raises(ConfigError, match="unknown benchmark variant 'eagre'.*eager"):
        VARIANTS.get("eagre")


def test_one_markdown_table_writer():
    from eseg.tables import markdown_header, markdown_row, markdown_table

    table = markdown_table(["a", "b"], [[1, "x"], [2.5, None]])
    assert table == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |"
    assert table == "\n".join([markdown_header(["a", "b"]), markdown_row([1, "x"]), markdown_row([2.5, None])])
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        markdown_table(["a", "b"], [[1, 2, 3]])
