"""Ctrl-C (SIGINT) and SIGTERM during training: the step in progress finishes, checkpoints/last
holds that step, the exact resume command is printed, exit code 130, and the resumed run logs
the same losses as an uninterrupted one. A second signal aborts at once. Under torchrun the
ranks stop at one step and rank 0 writes."""
import json
import os
import shlex
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
from eseg.engine.hooks import HookBase
from eseg.engine.interrupt import EXIT_INTERRUPTED, StopSignals, TrainingInterrupted
from eseg.engine.trainer import Trainer
from .test_train import tiny_config


def write_config(tmp_path: Path, *, steps: int, data: dict | None = None, train: dict | None = None,
                 train_images: int = 8, tensorboard: bool = False) -> Path:
    dataset = {"type": "synthetic", "num_images": {"train": train_images, "val": 2}, "size": [64, 96], "seed": 3}
    train = {"steps": steps, "checkpoint_interval": 1000, "deterministic": True, "optimizer": "sgd", "lr": 0.05,
             "warmup_steps": 2, **(train or {})}
    return tiny_config(tmp_path, data={"dataset": dataset, **(data or {})}, train=train,
                       eval={"interval": 0, "num_overlays": 0, "num_predictions": 0}, run={"tensorboard": tensorboard})


def loss_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "images_per_s"} for row in rows]  # wall-clock dependent


def launch(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(process: subprocess.Popen, expected_rc: int = 0) -> str:
    output = process.communicate(timeout=600)[0]
    assert process.returncode == expected_rc, output[-4000:]
    return output


def wait_for_rows(run_dir: Path, count: int, process: subprocess.Popen) -> None:
    """Until the run has logged ``count`` steps (the run must still be going)."""
    deadline = time.monotonic() + 300
    log = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended (rc {process.poll()}) before logging {count} steps")


def eseg_command(command: str) -> list[str]:
    """The printed resume command, run with this interpreter."""
    words = shlex.split(command)
    if words[0] == "eseg":
        return [sys.executable, "-m", "eseg.cli", *words[1:]]
    assert words[0] == "torchrun", command
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", *words[1:]]


# -- the signal handlers ---------------------------------------------------------------------------

def test_first_signal_requests_a_stop_a_second_aborts_and_the_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
        with StopSignals() as stop:
            signal.raise_signal(signal.SIGTERM)
            assert stop.received == signal.SIGTERM  # recorded; nothing raised
            signal.raise_signal(signal.SIGINT)
            pytest.fail("the second signal did not abort")
    assert {sig: signal.getsignal(sig) for sig in before} == before


class SignalAt(HookBase):
    """Sends ``count`` signals to this process during step ``step`` (after its update)."""

    def __init__(self, step: int, count: int = 1, signum=signal.SIGINT) -> None:
        self.step, self.count, self.signum = step, count, signum

    def after_step(self) -> None:
        if self.trainer.step == self.step:
            for _ in range(self.count):
                signal.raise_signal(self.signum)


def test_a_signal_stops_after_the_step_in_progress_with_its_checkpoint(tmp_path, capsys):
    from eseg.engine.hooks import default_hooks

    cfg = load_config(write_config(tmp_path, steps=8, train={"ema_decay": 0.8}))
    run_dir = tmp_path / "run"
    trainer = Trainer(cfg, run_dir, config_path="my config.yaml", hooks=[])
    trainer.hooks = [*default_hooks(trainer), SignalAt(3, signum=signal.SIGTERM)]
    for hook in trainer.hooks:
        hook.trainer = trainer
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit()
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert stopped.value.step == trainer.step == 3
    command = f"eseg train 'my config.yaml' --out {run_dir} --resume"
    assert stopped.value.resume_command == command
    assert f"SIGTERM at step 3: saved {run_dir / 'checkpoints' / 'last'}; resume with:\n  {command}" in capsys.readouterr().out
    state = ckpt.load_train_state(run_dir / "checkpoints" / "last")
    assert state["step"] == 3 and "optimizer" in state and state["ema"] is not None
    saved = eseg.load_model(run_dir / "checkpoints" / "last").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())  # the whole 3rd step
    assert [row["step"] for row in loss_rows(run_dir)] == [1, 2, 3]
    assert not (run_dir / "final_metrics.json").exists()  # stopped, not finished


def test_a_signal_flushes_the_partial_log_window(tmp_path):
    cfg = load_config(write_config(tmp_path, steps=8, train={"log_interval": 4}))
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.hooks.append(SignalAt(6))
    trainer.hooks[-1].trainer = trainer
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert [row["step"] for row in loss_rows(tmp_path / "run")] == [4, 6]  # steps 5-6 are not lost
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[-1].startswith("6,")


def test_a_second_signal_aborts_at_once_without_a_checkpoint(tmp_path):
    cfg = load_config(write_config(tmp_path, steps=8))
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.hooks.insert(0, SignalAt(2, count=2))  # before the hooks of step 2 run
    trainer.hooks[0].trainer = trainer
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="second SIGINT") as aborted:
        trainer.fit()
    assert not isinstance(aborted.value, TrainingInterrupted)
    assert ckpt.find_checkpoint(tmp_path / "run" / "checkpoints" / "last") is None
    assert signal.getsignal(signal.SIGINT) is before


# -- eseg train, as a user runs it -----------------------------------------------------------------

def test_ctrl_c_saves_prints_the_resume_command_and_the_resumed_run_is_bit_exact(tmp_path):
    """Ctrl-C reaches the terminal's whole process group (the DataLoader worker too)."""
    config = write_config(tmp_path, steps=30, data={"num_workers": 1}, train={"ema_decay": 0.8}, tensorboard=True)
    train = [sys.executable, "-m", "eseg.cli", "train", str(config), "--out"]
    full = launch([*train, str(tmp_path / "full")])
    finish(full)

    run_dir = tmp_path / "stopped"
    stopped = launch([*train, str(run_dir)], start_new_session=True)
    wait_for_rows(run_dir, 3, stopped)
    os.killpg(stopped.pid, signal.SIGINT)
    output = finish(stopped, EXIT_INTERRUPTED)
    step = ckpt.load_train_state(run_dir / "checkpoints" / "last")["step"]
    assert 3 <= step < 30
    command = f"eseg train {config} --out {run_dir} --resume"
    assert f"eseg train: SIGINT at step {step}: saved {run_dir / 'checkpoints' / 'last'}; resume with:\n  {command}\n" \
        in output
    assert "Traceback" not in output
    assert [row["step"] for row in loss_rows(run_dir)] == list(range(1, step + 1))

    output = finish(launch(eseg_command(command)))
    assert f"resumed from {run_dir / 'checkpoints' / 'last'} at step {step}" in output
    assert loss_rows(run_dir) == loss_rows(tmp_path / "full")  # every loss, lr and the val metrics, bit for bit
    full_w = eseg.load_model(tmp_path / "full" / "checkpoints" / "last").state_dict()
    resumed_w = eseg.load_model(run_dir / "checkpoints" / "last").state_dict()
    assert all(torch.equal(full_w[k], resumed_w[k]) for k in full_w)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb")).Reload().Scalars("train/loss")
    assert [e.step for e in events] == list(range(1, 31))  # the stop step's event is kept, none twice


# -- torchrun ----------------------------------------------------------------------------------------

def torchrun(config: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "eseg.cli", "train", str(config), "--out", str(run_dir)]


def rank_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the launcher's worker processes (Linux /proc)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = {}
        children = [c for task in Path(f"/proc/{launcher.pid}/task").iterdir() for c in (task / "children").read_text().split()]
        for child in children:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            ranks = [e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0])] = int(child)
        if len(found) == 2:
            return found
        time.sleep(0.1)
    raise AssertionError("torchrun started no 2 ranks")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_torchrun_ranks_stop_at_one_step_and_rank_0_writes(tmp_path):
    """SIGTERM to the launcher (forwarded to every rank), then to rank 1 alone: the ranks agree
    on the stop step, one checkpoint holds both ranks' state, and resuming is bit exact
    (BN frozen: the checkpoint's BN averaging changes nothing)."""
    config = write_config(tmp_path, steps=24, train_images=12, train={"batch_size": 4, "freeze_bn": True})
    finish(launch(torchrun(config, tmp_path / "full")))

    run_dir = tmp_path / "stopped"
    stopped = launch(torchrun(config, run_dir))
    wait_for_rows(run_dir, 3, stopped)
    stopped.send_signal(signal.SIGTERM)
    output = stopped.communicate(timeout=600)[0]
    assert stopped.returncode != 0
    step = ckpt.load_train_state(run_dir / "checkpoints" / "last")["step"]
    command = f"torchrun --nproc_per_node 2 -m eseg.cli train {config} --out {run_dir} --resume"
    message = f"at step {step}: saved {run_dir / 'checkpoints' / 'last'}; resume with:\n  {command}\n"
    assert output.count(message) == 1, f"the launcher's output (last 4000 characters):\n{output[-4000:]}"

    resumed = launch(eseg_command(command))
    rank_1 = rank_pids(resumed)[1]
    wait_for_rows(run_dir, step + 3, resumed)
    os.kill(rank_1, signal.SIGTERM)  # rank 0 gets no signal, and stops with rank 1
    output = resumed.communicate(timeout=600)[0]
    again = ckpt.load_train_state(run_dir / "checkpoints" / "last")
    assert again["step"] > step + 2 and again["world_size"] == 2 and len(again["rng"]) == 2
    assert f"a signal to another process at step {again['step']}: saved" in output
    assert [row["step"] for row in loss_rows(run_dir)] == list(range(1, again["step"] + 1))

    finish(launch(eseg_command(command)))
    assert loss_rows(run_dir) == loss_rows(tmp_path / "full")
