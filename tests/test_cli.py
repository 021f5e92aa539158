"""One command grammar, run folders that are numbered and locked, loggers and the Hub."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import eseg
from eseg.cli import SUBCOMMANDS, command_parser, main
from eseg.cli.options import SizeAction
from eseg.errors import ConfigError
from eseg.paths import RUN_OUTPUTS
from eseg.rundir import prepare_run_dir

from .conftest import tiny_model
from .test_train import tiny_config


def all_parsers():
    for name in SUBCOMMANDS:
        _, parser = command_parser(name)
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield f"{name} {sub_name}", sub


def options_of(parser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_option_of_every_command_has_help_text():
    missing = [f"{name} {a.option_strings[0]}" for name, parser in all_parsers() for a in options_of(parser)
               if not (a.help or "").strip()]
    assert missing == []


def test_one_spelling_for_shared_options():
    """--size HxW with H W accepted, --batch-size, --overwrite, --device auto, --progress/--no-progress."""
    seen = {}
    for name, parser in all_parsers():
        for action in options_of(parser):
            flag = action.option_strings[0]
            seen.setdefault(flag, []).append(name)
            if flag in ("--size", "--crop", "--stride"):
                assert isinstance(action, SizeAction), f"{name} {flag}"
            if flag == "--device":
                assert action.default == "auto", name
            if flag == "--progress":
                assert isinstance(action, argparse.BooleanOptionalAction) and "--no-progress" in action.option_strings
    for old in ("--batch", "--exist-ok", "--no-progress", "--save-logits", "--eseg-overrides", "--fp16", "--quantize"):
        assert old not in seen, f"{old} is spelled differently elsewhere: {seen[old]}"
    assert {"val", "predict", "train"} <= set(seen["--progress"])


@pytest.mark.parametrize("argv", [["--size", "64x96"], ["--size", "64", "96"], ["--size", "64X96"]])
def test_size_takes_both_forms(argv):
    _, parser = command_parser("predict")
    args = parser.parse_args(["m", "--source", "x", *argv])
    assert args.size == (64, 96)


def test_bad_sizes_are_usage_errors(capsys):
    _, parser = command_parser("export")
    for bad in (["0x5"], ["a", "b"], ["1", "2", "3"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["m", "--size", *bad])
        assert info.value.code == 2
    assert "HxW" in capsys.readouterr().err


def test_a_new_run_gets_a_numbered_folder_and_resume_takes_the_latest(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    path = tiny_config(configs, train={"steps": 1}, eval={"num_overlays": 0, "num_predictions": 0})
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(path)]) == 0
    assert main(["train", str(path)]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny", "tiny-2"]
    assert main(["train", str(path), "--resume", "train.steps=2"]) == 0  # continues runs/tiny-2
    rows = [json.loads(line) for line in (tmp_path / "runs" / "tiny-2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert main(["train", str(path), "--overwrite"]) == 0  # starts over in runs/tiny itself
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny", "tiny-2"]
    written = {p.name for p in (tmp_path / "runs" / "tiny").iterdir()}
    assert {"config.yaml", "checkpoints", "metrics.jsonl"} <= written <= set(RUN_OUTPUTS)  # what --overwrite clears


def test_overwrite_clears_exactly_the_run_outputs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in RUN_OUTPUTS:
        (run / name).mkdir() if "." not in name else (run / name).write_text("old")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume.*--overwrite.*--out"):
        prepare_run_dir(run, resume=False, overwrite=False)
    prepare_run_dir(run, resume=True, overwrite=False)
    assert len(list(run.iterdir())) == len(RUN_OUTPUTS) + 1
    prepare_run_dir(run, resume=False, overwrite=True)
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_the_old_run_folder_module_still_imports_with_a_warning(monkeypatch):
    import importlib

    import eseg.rundir

    monkeypatch.delitem(sys.modules, "eseg.engine.rundir", raising=False)
    with pytest.warns(DeprecationWarning, match="eseg.engine.rundir moved to eseg.rundir"):
        old = importlib.import_module("eseg.engine.rundir")
    assert old.next_free is eseg.rundir.next_free and old.RunLock is eseg.rundir.RunLock
    assert old.RUN_OUTPUTS == RUN_OUTPUTS


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path, capsys):
    weights = tmp_path / "not_weights.safetensors"
    weights.write_bytes(b"\x80\x04 a pickle, not safetensors")
    path = tiny_config(tmp_path, train={"steps": 1})
    assert main(["train", str(path), f"model.backbone_weights={weights}", "--out", str(tmp_path / "run")]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_busy_run_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    path = tiny_config(tmp_path, train={"steps": 1}, eval={"num_overlays": 0, "num_predictions": 0})
    run = tmp_path / "run"
    run.mkdir()
    lock = run / ".eseg.lock"
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # a live process
    assert main(["train", str(path), "--out", str(run)]) == 2
    assert f"in use by process {os.getpid()}" in capsys.readouterr().err
    assert not (run / "config.yaml").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    assert main(["train", str(path), "--out", str(run)]) == 0
    assert f"took over the stale lock of process {dead.pid}" in capsys.readouterr().out
    assert not lock.exists()  # released at the end


def test_mlflow_logs_params_metrics_and_artifacts_to_a_local_store(tmp_path):
    pytest.importorskip("mlflow")
    from eseg.config import load_config
    from eseg.engine.trainer import Trainer

    store = tmp_path / "mlruns"
    path = tiny_config(tmp_path, train={"steps": 2}, eval={"num_overlays": 0, "num_predictions": 0})
    Trainer(load_config(path, [f"run.mlflow={store}"]), tmp_path / "run").fit()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.as_uri())
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FINISHED" and run.data.params["train.steps"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    assert client.get_metric_history(run.info.run_id, "val_mIoU")
    assert {"final_metrics.json", "curves.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


HUB_PROBE = """
import sys, numpy as np, eseg
model = eseg.SegmentationModel.from_pretrained("eseg-test/tiny")
seg = eseg.Segmenter.from_pretrained("eseg-test/tiny")
print(type(model).__name__, model.config.num_classes, seg(np.zeros((20, 30, 3), np.uint8)).shape)
"""


def test_models_load_by_hub_id_from_the_offline_cache(tmp_path):
    """The same config.json + safetensors, read through huggingface_hub's cache layout."""
    model = tiny_model(num_classes=3)
    snapshot = tmp_path / "hub" / "models--eseg-test--tiny" / "snapshots" / "0123456789abcdef"
    model.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123456789abcdef")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", HUB_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ESeg 3 (20, 30)"
    missing = subprocess.run([sys.executable, "-c", HUB_PROBE.replace("eseg-test/tiny", "eseg-test/none")], env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "CheckpointError" in missing.stderr and "eseg-test/none" in missing.stderr


def test_save_pretrained_writes_a_model_card_and_push_to_hub_is_there(tmp_path):
    folder = tiny_model(num_classes=2, class_names=["bg", "fg"]).save_pretrained(tmp_path / "m")
    card = (folder / "README.md").read_text()
    assert "library_name: eseg" in card and "bg, fg" in card
    assert callable(eseg.SegmentationModel.push_to_hub)
    assert yaml.safe_load(card.split("---")[1])["library_name"] == "eseg"
    assert eseg.load_model(folder).config.class_names == ["bg", "fg"]


def test_eseg_models_filter_and_recount(capsys):
    assert main(["models", "lite", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["eseg_lite_l", "eseg_lite_m", "eseg_lite_s"]
    assert main(["models", "eseg_lite_s", "--flops", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["params_M"] == rows[-1]["params_M"]


def test_exit_codes_are_documented_in_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| 0 |" in readme and "| 1 |" in readme and "| 2 |" in readme
