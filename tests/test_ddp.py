"""torchrun + DDP on CPU (gloo): 2 processes x 2 images match 1 process x 4 images.

BN: PyTorch's SyncBatchNorm has no CPU kernel, and plain BN normalizes each process's 2 images
with their own statistics, which a single process with 4 images does not. The comparison is
therefore run with ``train.freeze_bn=true`` (BN uses its running statistics, identical on every
process). Everything else that could differ is equal by construction: the global batch holds the
same 4 images (DistributedSampler's permutation dealt round-robin), each image's augmentation is
seeded by (seed, epoch, index), every image has the same number of labelled pixels (no scaling, a
crop the size of the image, no ignore labels), so the mean of the per-process mean losses equals
the single-process mean and DDP's averaged gradient equals the single-process gradient.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import eseg

CONFIG = {
    "model": {"name": "eseg_lite_s", "backbone": "test_efficientnet", "fpn_width": 16, "fpn_repeats": 1,
              "head_width": 16, "head_layers": 1, "max_level": 6},
    "data": {"dataset": {"type": "synthetic", "num_images": {"train": 12, "val": 3}, "size": [64, 96], "seed": 5},
             "crop_size": [64, 96], "scale_range": [1.0, 1.0], "hflip": True, "num_workers": 0},
    "train": {"steps": 4, "batch_size": 4, "optimizer": "sgd", "lr": 0.05, "freeze_bn": True,
              "log_interval": 1, "checkpoint_interval": 100, "deterministic": True},
    "eval": {"interval": 0, "batch_size": 1, "num_overlays": 0, "num_predictions": 0},
    "run": {"progress": False, "tensorboard": False},
}


def losses_and_val(run_dir: Path) -> tuple[list[float], float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], next(r["val/mIoU"] for r in rows if "val/mIoU" in r)


def run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    train = ["-m", "eseg.cli", "train", str(config)]
    run([sys.executable, *train, "--out", str(tmp_path / "single")])
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *train, "--out", str(tmp_path / "ddp")])

    single_losses, single_miou = losses_and_val(tmp_path / "single")
    ddp_losses, ddp_miou = losses_and_val(tmp_path / "ddp")
    assert len(single_losses) == len(ddp_losses) == 4
    assert ddp_losses == pytest.approx(single_losses, abs=1e-5, rel=1e-5)
    assert single_losses[-1] != single_losses[0]  # the weights did move
    # SegEvaluator sums the two processes' confusion matrices: same metric as one process.
    assert ddp_miou == pytest.approx(single_miou, abs=1e-6)

    single = eseg.load_model(tmp_path / "single" / "checkpoints" / "last").state_dict()
    ddp = eseg.load_model(tmp_path / "ddp" / "checkpoints" / "last").state_dict()
    for key, value in single.items():
        if value.is_floating_point():
            torch.testing.assert_close(ddp[key], value, atol=1e-5, rtol=1e-4, msg=key)
    # Only rank 0 wrote: one metrics file, one line per step, no per-rank leftovers.
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best", "last"]


def reported_and_revalidated(run_dir: Path, tmp_path: Path, max_images: int) -> tuple[float, float]:
    reported = json.loads((run_dir / "final_metrics.json").read_text())["mIoU"]
    out = tmp_path / f"val_{run_dir.name}"
    run([sys.executable, "-m", "eseg.cli", "val", str(run_dir), "--out", str(out), "--max-images", str(max_images),
         "--num-workers", "0", "--device", "cpu", "--no-progress"])
    return reported, json.loads((out / "results.json").read_text())["mIoU"]


@pytest.mark.slow
def test_reported_best_miou_is_what_eseg_val_measures_on_the_saved_checkpoint(tmp_path):
    """BN is trained (not frozen), so under DDP each rank's buffers drift apart; they are averaged
    before each evaluation and checkpoint, so the number the trainer reports is the saved model's."""
    config = dict(CONFIG)
    config["train"] = {**CONFIG["train"], "freeze_bn": False, "steps": 6}
    config["eval"] = {**CONFIG["eval"], "interval": 3, "max_images": 3}
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    train = ["-m", "eseg.cli", "train", str(path)]
    run([sys.executable, *train, "--out", str(tmp_path / "single")])
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *train, "--out", str(tmp_path / "ddp")])
    for name in ("single", "ddp"):
        reported, measured = reported_and_revalidated(tmp_path / name, tmp_path, 3)
        assert reported == pytest.approx(measured, abs=1e-6), name
