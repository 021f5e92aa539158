"""A run that fails before its first step leaves no run folder behind, or leaves an existing one
(--resume, --overwrite) exactly as it was; the next attempt with the same --out is not refused."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eseg.cli import main
from eseg.engine.trainer import Trainer
from eseg.errors import ConfigError, DataError
from eseg.rundir import START_BACKUP, RunStart

from . import data_exports as gen
from .test_train import tiny_config


def config(tmp_path: Path) -> Path:
    return tiny_config(tmp_path, train={"steps": 2, "checkpoint_interval": 1},
                       eval={"num_overlays": 0, "num_predictions": 0})


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def fail_at_step(monkeypatch, failing: int) -> None:
    """Trainer.train_step raises a DataError at step number ``failing`` (1 = the first)."""
    original = Trainer.train_step

    def train_step(self, batch):
        if self.step + 1 == failing:
            raise DataError(f"made-up bad batch at step {failing}")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_a_bad_mask_found_while_building_leaves_no_folder_and_the_retry_runs(tmp_path, capsys):
    stored = gen.write_folder(tmp_path / "ds", split_folders=True)
    mask_path = tmp_path / "ds" / "masks" / "train" / "s000.png"
    bad = stored["s000"].copy()
    bad[:4, :4] = 9  # class id 9 of 4 classes
    gen.save_png(mask_path, bad)
    out = tmp_path / "runs" / "own"
    argv = ["train", str(config(tmp_path)), "data.dataset.type=folder", f"data.dataset.root={tmp_path / 'ds'}",
            "--out", str(out)]
    assert main(argv) == 2
    assert "s000.png: label values 9" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "runs").exists()  # nor the parent this start made

    gen.save_png(mask_path, stored["s000"])  # the user fixes the mask and runs the same command
    assert main(argv) == 0
    assert (out / "checkpoints" / "best").is_dir() and not (out / START_BACKUP).exists()


def test_an_empty_dataset_root_leaves_no_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    assert main(["train", str(config(tmp_path)), "data.dataset.type=folder", f"data.dataset.root={tmp_path / 'empty'}",
                 "--out", str(out)]) == 2
    assert "no classes.yaml" in capsys.readouterr().err
    assert not out.exists()


def test_a_failure_in_the_loop_before_the_first_step_removes_what_the_start_wrote(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    fail_at_step(monkeypatch, 1)  # after config.yaml and the metrics file were written
    assert main(["train", str(config(tmp_path)), "--out", str(out)]) == 2
    assert "made-up bad batch at step 1" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.undo()
    assert main(["train", str(config(tmp_path)), "--out", str(out)]) == 0  # not refused as "already holds a run"


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_failed_restart_leaves_the_existing_run_exactly_as_it_was(tmp_path, monkeypatch, capsys, flag):
    out = tmp_path / "run"
    path = config(tmp_path)
    assert main(["train", str(path), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    before = files_of(out)
    fail_at_step(monkeypatch, 3 if flag == "--resume" else 1)  # the first step of this start
    assert main(["train", str(path), "train.steps=4", flag, "--out", str(out)]) == 2
    assert "made-up bad batch" in capsys.readouterr().err
    assert files_of(out) == before  # config.yaml, metrics, checkpoints: byte for byte, nothing added
    assert sorted(p.name for p in out.iterdir()) == sorted({name.split("/")[0] for name in before})
    monkeypatch.undo()
    assert main(["train", str(path), "train.steps=4", flag, "--out", str(out)]) == 0


def test_a_failure_after_the_first_step_keeps_the_run_to_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    path = config(tmp_path)
    fail_at_step(monkeypatch, 2)  # checkpoint_interval 1: step 1 was saved
    assert main(["train", str(path), "--out", str(out)]) == 2
    assert (out / "checkpoints" / "last").is_dir() and not (out / START_BACKUP).exists()
    assert not (out / ".eseg.lock").exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", str(path), "--resume", "--out", str(out)]) == 0
    assert "at step 1" in capsys.readouterr().out


def test_an_overwrite_sets_the_old_run_aside_until_the_first_step(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("old")
    with RunStart(run, resume=False, overwrite=True) as start:
        assert sorted(p.name for p in run.iterdir()) == sorted([".eseg.lock", START_BACKUP])
        assert sorted(p.name for p in (run / START_BACKUP).iterdir()) == ["checkpoints", "config.yaml"]
        (run / "config.yaml").write_text("new")
        start.committed()
        assert not (run / START_BACKUP).exists()
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    assert (run / "config.yaml").read_text() == "new"


def test_a_set_aside_folder_left_by_a_killed_start_is_named_and_kept(tmp_path):
    run = tmp_path / "run"
    (run / START_BACKUP).mkdir(parents=True)
    (run / START_BACKUP / "config.yaml").write_text("from before")
    (run / "config.yaml").write_text("half-written")
    with pytest.raises(ConfigError, match="killed before its first step"):
        with RunStart(run, resume=True, overwrite=False):
            pass
    assert (run / START_BACKUP / "config.yaml").read_text() == "from before"
    assert (run / "config.yaml").read_text() == "half-written" and not (run / ".eseg.lock").exists()
