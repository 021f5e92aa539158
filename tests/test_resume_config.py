"""`eseg train CONFIG --out RUN --resume` continues the run's own recorded config: the first run's
overrides need not be repeated; overrides that extend the run apply; overrides (or another CONFIG)
that would change the model, the data or the optimisation stop with exit 2, naming the keys."""
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from eseg.cli import main
from eseg.config import RESUMABLE_KEYS, is_resumable, load_config, read_origin

from .test_train import read_rows, tiny_config

# The first run's own choices, given once on its command line.
FIRST_OVERRIDES = ["model.fpn_width=24", "data.dataset.seed=5", "train.lr=0.03"]


def config(tmp_path: Path) -> Path:
    # A constant lr: the schedule must not depend on train.steps, so a run of 2 + 2 steps can
    # be compared with one of 4.
    return tiny_config(tmp_path, train={"steps": 4, "checkpoint_interval": 2, "deterministic": True,
                                        "schedule": "constant", "optimizer": "sgd"},
                       eval={"interval": 2, "num_overlays": 0, "num_predictions": 0})


def train(*argv: str) -> int:
    return main(["train", *argv])


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A 2-step run started with FIRST_OVERRIDES, and its config file."""
    tmp = tmp_path_factory.mktemp("resume")
    path = config(tmp)
    assert train(str(path), *FIRST_OVERRIDES, "train.steps=2", "--out", str(tmp / "run")) == 0
    return path, tmp / "run"


def test_resume_without_the_first_runs_overrides_continues_identically(tmp_path, capsys):
    path = config(tmp_path)
    assert train(str(path), *FIRST_OVERRIDES, "--out", str(tmp_path / "full")) == 0  # 4 steps at once
    assert train(str(path), *FIRST_OVERRIDES, "train.steps=2", "--out", str(tmp_path / "run")) == 0
    capsys.readouterr()
    assert train(str(path), "--resume", "train.steps=4", "--out", str(tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert f"resuming {tmp_path / 'run'} with its recorded config" in out
    assert "resumed from" in out and "at step 2" in out

    assert read_rows(tmp_path / "run") == read_rows(tmp_path / "full")  # losses and val metrics, step by step
    weights = [load_file(str(tmp_path / name / "checkpoints" / "last" / "model.safetensors")) for name in ("full", "run")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    resumed = load_config(tmp_path / "run" / "config.yaml")
    assert resumed.model.options["fpn_width"] == 24 and resumed.data.dataset["seed"] == 5 and resumed.train.lr == 0.03
    assert resumed.train.steps == 4
    assert read_origin(tmp_path / "run" / "config.yaml").overrides == (*FIRST_OVERRIDES, "train.steps=2", "train.steps=4")


@pytest.mark.parametrize("override, key", [
    ("data.dataset.seed=9", "data.dataset.seed"),
    ("data.hflip=false", "data.hflip"),
    ("data.crop_size=[32,32]", "data.crop_size"),
    ("model.fpn_width=16", "model.fpn_width"),
    ("train.batch_size=4", "train.batch_size"),
    ("train.lr=0.5", "train.lr"),
    ("train.loss={type: dice}", "train.loss.type"),
    ("train.seed=3", "train.seed"),
])
def test_an_override_that_changes_what_the_run_trains_is_refused(first_run, capsys, override, key):
    path, run = first_run
    before = files_of(run)
    assert train(str(path), "--resume", "train.steps=4", override, "--out", str(run)) == 2
    err = capsys.readouterr().err
    assert "These overrides would change what it trains" in err and key in err
    assert "train.steps" not in err.split("These overrides")[1]  # the extension is not blamed
    assert files_of(run) == before  # refused before anything was written


def test_repeating_the_first_runs_overrides_is_allowed(first_run, tmp_path, capsys):
    path, run = first_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert train(str(path), *FIRST_OVERRIDES, "--resume", "train.steps=3", "eval.interval=3", "train.log_interval=3",
                 "train.checkpoint_interval=3", "data.num_workers=0", "run.tensorboard=false", "--no-progress",
                 "--out", str(copy)) == 0
    cfg = load_config(copy / "config.yaml")
    assert (cfg.train.steps, cfg.eval.interval, cfg.train.log_interval, cfg.train.checkpoint_interval) == (3, 3, 3, 3)
    assert cfg.run.tensorboard is False and cfg.run.progress is False


def test_another_config_file_is_refused_naming_what_differs(first_run, tmp_path, capsys):
    path, run = first_run
    other = yaml.safe_load(path.read_text())
    other["model"]["head_width"] = 8
    other_path = tmp_path / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    assert train(str(other_path), "--resume", "train.steps=4", "--out", str(run)) == 2
    err = capsys.readouterr().err
    assert f"CONFIG '{other_path}' gives other values than the run's" in err
    assert "model.head_width (run: 16, now: 8)" in err and f"started from {path.resolve()}" in err


def test_a_run_without_a_recorded_origin_resumes_from_its_own_config_file(first_run, tmp_path, capsys):
    """A run folder written before config.yaml recorded its origin: CONFIG without the first
    run's overrides differs, and the message says to name the run's config.yaml."""
    path, run = first_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text("".join(line for line in text.splitlines(True) if not line.startswith("#")))
    assert train(str(path), "--resume", "train.steps=3", "--out", str(copy)) == 2
    err = capsys.readouterr().err
    assert "model.fpn_width (run: 24, now: 16)" in err and str(copy / "config.yaml") in err
    assert train(str(copy / "config.yaml"), "--resume", "train.steps=3", "--no-progress", "--out", str(copy)) == 0
    assert load_config(copy / "config.yaml").train.steps == 3


def test_the_resumable_keys_extend_a_run_and_nothing_else():
    """The one table; the --resume help and the README list the same keys."""
    from eseg.cli import command_parser

    _, parser = command_parser("train")
    (resume,) = [a for a in parser._actions if "--resume" in a.option_strings]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for key in RESUMABLE_KEYS:
        shown = key if "." in key else key + ".*"
        assert shown in resume.help and f"`{shown}`" in readme, key
    assert set(RESUMABLE_KEYS) == {"train.steps", "train.log_interval", "train.checkpoint_interval",
                                   "data.num_workers", "eval", "run"}
    for key in ("train.steps", "eval.interval", "eval.max_images", "run.progress", "run.mlflow", "data.num_workers"):
        assert is_resumable(key), key
    for key in ("train.lr", "train.stepsize", "data.dataset.root", "data.crop_size", "model.name", "evaluation",
                "train.amp", "train.device"):
        assert not is_resumable(key), key
