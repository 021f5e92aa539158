"""The training engine end to end on tiny synthetic data: overfitting, exact kill -9 resume,
a NaN loss stopping cleanly, and the run folder's contents."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import eseg
from eseg.config import load_config
from eseg.engine import checkpoint as ckpt
from eseg.engine.trainer import NonFiniteLossError, Trainer

TINY_MODEL = {"name": "eseg_lite_s", "backbone": "test_efficientnet", "fpn_width": 16, "fpn_repeats": 1,
              "head_width": 16, "head_layers": 1, "max_level": 6}


def tiny_config(tmp_path: Path, *, train: dict, data: dict | None = None, eval: dict | None = None,
                run: dict | None = None) -> Path:
    cfg = {
        "model": TINY_MODEL,
        "data": {"dataset": {"type": "synthetic", "num_images": {"train": 8, "val": 2}, "size": [64, 128], "seed": 3},
                 "crop_size": [64, 64], "scale_range": [0.75, 1.25], "num_workers": 0, **(data or {})},
        "train": {"batch_size": 2, "log_interval": 1, "seed": 0, **train},
        "eval": {"batch_size": 2, "num_overlays": 1, "num_predictions": 1, **(eval or {})},
        "run": {"progress": False, "tensorboard": True, **(run or {})},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def read_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("images_per_s", None)  # wall-clock dependent
    return rows


def test_overfits_one_small_batch(tmp_path):
    """Two fixed images (no scale/crop/flip randomness), evaluated on those same images in eval
    mode. train.bn_momentum=0.1 lets BN's running statistics catch up within the run (BiFPN's own
    EfficientDet momentum, 0.01, would need several hundred steps)."""
    path = tiny_config(
        tmp_path,
        data={"dataset": {"type": "synthetic", "num_images": 2, "size": [64, 64], "seed": 1},
              "crop_size": [64, 64], "scale_range": [1.0, 1.0], "hflip": False, "val_split": "train"},
        train={"steps": 80, "optimizer": "adamw", "lr": 0.02, "weight_decay": 0.0, "schedule": "constant",
               "bn_momentum": 0.1, "checkpoint_interval": 1000, "log_interval": 10},
        eval={"interval": 0},
    )
    cfg = load_config(path)
    trainer = Trainer(cfg, tmp_path / "run")
    metrics = trainer.fit()
    assert metrics["aAcc"] > 0.95, metrics["aAcc"]
    assert all(m.momentum == 0.1 for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # Independent check of the saved best model on the same two images.
    model = eseg.load_model(tmp_path / "run" / "checkpoints" / "best")
    images = torch.stack([trainer.val_set[i]["image"] for i in range(2)])
    masks = torch.stack([trainer.val_set[i]["mask"] for i in range(2)])
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == masks).float().mean().item()
    assert accuracy == pytest.approx(metrics["aAcc"], abs=1e-6)
    losses = [r["loss"] for r in read_rows(tmp_path / "run") if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]


def test_run_folder_contents(tmp_path):
    path = tiny_config(tmp_path, train={"steps": 4, "checkpoint_interval": 2, "ema_decay": 0.9, "channels_last": True},
                       eval={"interval": 2})
    run_dir = tmp_path / "run"
    Trainer(load_config(path), run_dir).fit()
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "curves.png", "final_metrics.json",
                 "per_class_iou.png", "confusion_matrix.png", "overlays/step_000002/0000.png",
                 "overlays/step_000004/0000.png", "predictions/0000_pred.png", "predictions/0000.png"):
        assert (run_dir / name).is_file(), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb")).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("val/mIoU")] == [2, 4]
    assert load_config(run_dir / "config.yaml").train.ema_decay == 0.9
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if "val/mIoU" in r] == [2, 4]
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss", "lr", "val/mIoU"} <= set(header)
    # checkpoints/best is a plain model folder holding the EMA weights of the best step.
    best_state = ckpt.load_train_state(run_dir / "checkpoints" / "best")
    assert best_state["ema"] is True
    last_state = ckpt.load_train_state(run_dir / "checkpoints" / "last")
    assert last_state["step"] == 4
    best = eseg.load_model(run_dir / "checkpoints" / "best")
    if best_state["step"] == 4:
        ema_weights = last_state["ema"]["module"]
        assert all(torch.equal(v, ema_weights[k]) for k, v in best.state_dict().items())
    assert best.config.class_names == list(eseg.data.synthetic.CLASSES)
    assert best.config.palette[0] == tuple(int(c) for c in eseg.palette.get_palette("synthetic", 8)[0])

    def no_nan(token):
        raise AssertionError(f"final_metrics.json holds {token}, which strict JSON readers refuse")

    json.loads((run_dir / "final_metrics.json").read_text(), parse_constant=no_nan)
    # --benchmark on a finished run folder times a few steps and leaves every file as it was
    from eseg.cli import main

    log_before = (run_dir / "metrics.jsonl").read_bytes()
    assert main(["train", str(path), "--out", str(run_dir), "--benchmark", "1"]) == 0
    assert (run_dir / "metrics.jsonl").read_bytes() == log_before


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    path = tiny_config(tmp_path, train={"steps": 6, "checkpoint_interval": 2}, eval={"interval": 0})
    trainer = Trainer(load_config(path), tmp_path / "run")
    real_loss = trainer.criterion

    def loss_going_nan(logits, target):
        loss = real_loss(logits, target)
        return loss * float("nan") if trainer.step == 2 else loss  # the 3rd step

    trainer.criterion = loss_going_nan
    with pytest.raises(NonFiniteLossError, match="nan at step 3"):
        trainer.fit()
    last = tmp_path / "run" / "checkpoints" / "last"
    assert ckpt.find_checkpoint(last) == last
    assert ckpt.load_train_state(last)["step"] == 2
    model = eseg.load_model(last)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last"]


def eseg_train(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "eseg.cli", "train", str(config), "--out", str(out), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_kill_9_and_resume_reproduces_the_uninterrupted_losses(tmp_path):
    path = tiny_config(
        tmp_path,
        train={"steps": 12, "checkpoint_interval": 4, "deterministic": True, "ema_decay": 0.8,
               "optimizer": "sgd", "lr": 0.05, "warmup_steps": 2},
        eval={"interval": 6, "num_overlays": 0},
    )
    full = eseg_train(path, tmp_path / "full")
    output = full.communicate(timeout=300)[0]
    assert full.returncode == 0, output

    killed = eseg_train(path, tmp_path / "resumed")
    last = tmp_path / "resumed" / "checkpoints" / "last"
    deadline = time.monotonic() + 300
    while ckpt.find_checkpoint(last) is None and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved_step = ckpt.load_train_state(ckpt.find_checkpoint(last))["step"]
    assert 4 <= saved_step < 12

    resumed = eseg_train(path, tmp_path / "resumed", "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"resumed from {last} at step {saved_step}" in output

    expected, got = read_rows(tmp_path / "full"), read_rows(tmp_path / "resumed")
    assert [r["step"] for r in got if "loss" in r] == list(range(1, 13))
    assert got == expected  # losses, lrs and val metrics (EMA weights) bit for bit
    full_w = eseg.load_model(tmp_path / "full" / "checkpoints" / "last").state_dict()
    resumed_w = eseg.load_model(last).state_dict()
    assert all(torch.equal(full_w[k], resumed_w[k]) for k in full_w)


def test_existing_run_folder_needs_resume_or_exist_ok(tmp_path):
    path = tiny_config(tmp_path, train={"steps": 1})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    from eseg.cli import main

    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ""  # nothing was overwritten
