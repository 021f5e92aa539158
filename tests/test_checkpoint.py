"""Checkpoint folders: loadable by eseg.load_model, weights_only train state, RNG round trip,
and atomic replacement that never leaves a half-written checkpoint."""
import random

import numpy as np
import pytest
import torch

import eseg
from eseg.engine import checkpoint as ckpt

from .conftest import tiny_model


def draw_numbers():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_checkpoint_folder_is_a_model_folder_plus_a_weights_only_train_state(tmp_path):
    model = tiny_model(num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    optimizer.step()
    state = {"step": 7, "best_metric": 0.5, "optimizer": optimizer.state_dict(), "rng": [ckpt.capture_rng_state()]}
    folder = ckpt.save_checkpoint(tmp_path / "checkpoints" / "last", model, state)

    loaded = eseg.load_model(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    train_state = torch.load(folder / ckpt.STATE_FILE, weights_only=True)  # no pickled code needed
    assert train_state["step"] == 7
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(train_state["optimizer"])
    buffers = [s["momentum_buffer"] for s in fresh.state.values()]
    expected = [s["momentum_buffer"] for s in optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, expected))


def test_rng_state_round_trip_restores_python_numpy_and_torch(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    torch.save({"rng": ckpt.capture_rng_state()}, tmp_path / "s.pt")
    expected = draw_numbers()
    draw_numbers()
    ckpt.restore_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert draw_numbers() == expected


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "last"
    first = tiny_model(num_classes=3)
    ckpt.save_checkpoint(target, first, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(target, tiny_model(num_classes=3), {"step": 2})
    monkeypatch.undo()
    assert ckpt.find_checkpoint(target) == target
    assert ckpt.load_train_state(target)["step"] == 1
    assert torch.equal(eseg.load_model(target).head.classifier.weight, first.head.classifier.weight)

    # The next save clears the leftover temporary folder and replaces the checkpoint.
    ckpt.save_checkpoint(target, tiny_model(num_classes=3), {"step": 3})
    assert ckpt.load_train_state(target)["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_crash_between_the_two_renames_falls_back_to_the_old_folder(tmp_path):
    target = tmp_path / "last"
    ckpt.save_checkpoint(target, tiny_model(num_classes=3), {"step": 4})
    old = tmp_path / ".last.old"
    target.rename(old)  # the state right after "rename the old one aside"
    assert ckpt.find_checkpoint(target) == old
    assert ckpt.load_train_state(ckpt.find_checkpoint(target))["step"] == 4
    ckpt.save_checkpoint(target, tiny_model(num_classes=3), {"step": 5})
    assert ckpt.find_checkpoint(target) == target and not old.exists()


def test_corrupt_train_state_is_a_checkpoint_error(tmp_path):
    target = ckpt.save_checkpoint(tmp_path / "last", tiny_model(num_classes=3), {"step": 1})
    (target / ckpt.STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(eseg.errors.CheckpointError, match="train_state.pt"):
        ckpt.load_train_state(target)
