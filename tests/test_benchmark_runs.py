"""`eseg benchmark --models RUN,...`: trained models (a run folder, a saved model folder, an
exported graph) timed beside the peers, which are built for the trained model's classes and size."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from eseg import load_model
from eseg.benchmark.memory import EntrySpec, measure_cpu_memory
from eseg.benchmark.models import build_model
from eseg.cli import main
from eseg.flops import count_params
from eseg.paths import best_checkpoint

VAL_SIZE = (64, 96)  # the synthetic validation images' size: what the run validates at
TINY_MODEL = {"name": "eseg_lite_s", "backbone": "test_efficientnet", "fpn_width": 16, "fpn_repeats": 1,
              "head_width": 16, "head_layers": 1, "max_level": 6}
QUICK = ["--runs", "1", "--warmup", "0", "--threads", "1", "--no-memory"]
PEER = "lraspp_mobilenet_v3_large"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run of two steps on the 8-class synthetic scenes (64x96 validation images, 32x64 crops)."""
    root = tmp_path_factory.mktemp("bench_runs")
    config = {"model": TINY_MODEL,
              "data": {"dataset": {"type": "synthetic", "num_images": {"train": 4, "val": 2}, "size": list(VAL_SIZE),
                                   "seed": 3}, "crop_size": [32, 64], "num_workers": 0},
              "train": {"steps": 2, "batch_size": 2, "log_interval": 1, "seed": 0},
              "eval": {"interval": 2, "batch_size": 2, "num_overlays": 0, "num_predictions": 0},
              "run": {"progress": False}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", str(root / "tiny.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


def benchmark(out: Path, models: list, *extra: str) -> dict:
    assert main(["benchmark", "--models", ",".join(str(m) for m in models), "--out", str(out), *QUICK, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_a_run_is_timed_beside_peers_built_for_its_classes_and_size(run, tmp_path, capsys):
    doc = benchmark(tmp_path / "bench", [run, PEER], "--backends", "eager,onnxruntime")
    assert doc["settings"]["size"] == list(VAL_SIZE) and doc["settings"]["num_classes"] == 8
    assert doc["settings"]["trained"] == [str(run)]
    out = capsys.readouterr().out
    assert f"timing at 64x96: the size '{run}' was validated at" in out
    rows = {(r["model"], r["backend"]): r for r in doc["results"]}
    assert set(rows) == {(str(run), "eager"), (str(run), "onnxruntime"), (PEER, "eager"), (PEER, "onnxruntime")}
    for r in rows.values():
        assert r["error"] is None and r["latency_ms_median"] > 0
    trained = load_model(best_checkpoint(run))
    assert rows[str(run), "eager"]["params_m"] == pytest.approx(count_params(trained) / 1e6)  # its own weights
    # the peer has the run's 8 classes, not the default 19 (its classifier is smaller)
    assert rows[PEER, "eager"]["params_m"] == pytest.approx(count_params(build_model(PEER, num_classes=8)) / 1e6)
    assert rows[PEER, "eager"]["params_m"] != pytest.approx(count_params(build_model(PEER, num_classes=19)) / 1e6)
    assert f"random init except the trained {run}" in (tmp_path / "bench" / "results.md").read_text()


def test_an_exported_graph_runs_only_on_its_runtimes_and_registered_names_keep_working(run, tmp_path, capsys):
    assert main(["export", str(run)]) == 0  # at the size the run validated at
    graph = run / f"model_{VAL_SIZE[0]}x{VAL_SIZE[1]}.onnx"
    capsys.readouterr()
    doc = benchmark(tmp_path / "bench", [graph, best_checkpoint(run), "eseg_lite_s"], "--backends", "eager,onnxruntime",
                    "--set", "backbone=test_efficientnet", "--set", "fpn_width=16", "--set", "fpn_repeats=1")
    assert f"the fixed input size of the graph '{graph}'" in capsys.readouterr().out
    assert doc["settings"]["size"] == list(VAL_SIZE) and doc["settings"]["num_classes"] == 8
    rows = {(r["model"], r["backend"]): r for r in doc["results"]}
    assert "runs as onnxruntime or openvino, not eager" in rows[str(graph), "eager"]["error"]
    for key in [(str(graph), "onnxruntime"), (str(best_checkpoint(run)), "eager"), ("eseg_lite_s", "onnxruntime")]:
        assert rows[key]["error"] is None and rows[key]["latency_ms_median"] > 0
    assert rows[str(graph), "onnxruntime"]["params_m"] == pytest.approx(rows[str(best_checkpoint(run)), "eager"]["params_m"])


def test_explicit_size_and_classes_win_and_the_trained_model_keeps_its_own(run, tmp_path):
    doc = benchmark(tmp_path / "bench", [run, PEER], "--backends", "eager", "--size", "32x64", "--num-classes", "5")
    assert doc["settings"]["size"] == [32, 64] and doc["settings"]["num_classes"] == 5
    rows = {r["model"]: r for r in doc["results"]}
    assert rows[PEER]["params_m"] == pytest.approx(count_params(build_model(PEER, num_classes=5)) / 1e6)
    assert rows[str(run)]["params_m"] == pytest.approx(count_params(load_model(best_checkpoint(run))) / 1e6)


def test_a_trained_entry_is_rebuilt_from_its_path_in_the_memory_process(run, tmp_path):
    spec = EntrySpec(str(run), "eager", VAL_SIZE, threads=1, num_classes=19, encoder="test_efficientnet",
                     precision="fp32", model_options={}, onnx_path=str(tmp_path / "unused.onnx"))
    with torch.no_grad():
        assert spec.build_model()(torch.zeros(1, 3, *VAL_SIZE)).shape == (1, 8, *VAL_SIZE)
    memory = measure_cpu_memory(spec)
    assert "error" not in memory and memory["peak_mem_mb"] > 0


def test_a_path_that_is_no_model_is_refused(tmp_path, capsys):
    assert main(["benchmark", "--models", f"{tmp_path / 'nothing'},{PEER}", "--out", str(tmp_path / "b")]) == 2
    assert "neither a registered name nor an existing run folder, model folder or exported graph" in capsys.readouterr().err
