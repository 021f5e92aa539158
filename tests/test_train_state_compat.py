"""A training checkpoint written by an earlier eseg still resumes, and continues as that version
did (tests/data/train_state_v1: a run of eseg 0.2.0 stopped after its step-2 checkpoint)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from eseg.config import load_config
from eseg.engine.trainer import Trainer

FIXTURE = Path(__file__).parent / "data" / "train_state_v1"


def rows(path: Path) -> list[dict]:
    found = [json.loads(line) for line in path.read_text().splitlines()]
    for row in found:
        row.pop("images_per_s", None)  # wall-clock dependent
    return found


@pytest.fixture
def deterministic_restored():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)  # the config's train.deterministic is process-wide


def test_a_train_state_of_eseg_0_2_0_resumes_and_continues_as_it_did(tmp_path, deterministic_restored):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run_dir)
    saved = torch.load(run_dir / "checkpoints" / "last" / "train_state.pt", weights_only=True)
    assert set(saved["ema"]) == {"updates", "decay", "module"}  # the layout being read

    trainer = Trainer(load_config(FIXTURE / "config.yaml"), run_dir, resume=True)
    assert trainer.step == 2 and trainer.best_step == 2 and trainer.ema.updates == 2
    ema = trainer.ema.module.state_dict()
    assert ema.keys() == saved["ema"]["module"].keys()
    assert all(torch.equal(ema[k], saved["ema"]["module"][k].to(ema[k].device)) for k in ema)

    trainer.fit()
    got, expected = rows(run_dir / "metrics.jsonl"), rows(FIXTURE / "expected_metrics.jsonl")
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]
    # the losses of steps 3-4 and the val metrics of the EMA weights at step 4; bit for bit on
    # the machine that wrote the fixture, within float rounding on another CPU's kernels
    assert got == [pytest.approx(r, rel=1e-5) for r in expected]
