"""Engine parts against hand-computed oracles: data order, lr schedules, weight-decay groups,
OHEM, EMA."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from eseg.config import TrainSection
from eseg.engine.ema import ModelEMA
from eseg.engine.losses import SegmentationLoss
from eseg.engine.optim import build_optimizer, build_scheduler, lr_factor
from eseg.engine.sampling import ResumableBatchSampler, SeededSamples
from eseg.models.eseg.bifpn import WeightedFusion

from .conftest import tiny_model


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_sampler_resumes_mid_epoch_and_across_epochs():
    full = take(ResumableBatchSampler(10, 3, seed=4), 9)  # 3 steps per epoch, 3 epochs
    assert take(ResumableBatchSampler(10, 3, seed=4, start_step=4), 5) == full[4:]
    epoch0 = [i for batch in full[:3] for i, _ in batch]
    assert len(set(epoch0)) == 9  # no repeats within an epoch (one image dropped)
    assert [i for i, _ in full[3]] != [i for i, _ in full[0]]  # reshuffled per epoch


def test_ddp_shards_together_form_the_single_process_batches():
    single = take(ResumableBatchSampler(12, 4, seed=1), 6)
    rank0 = take(ResumableBatchSampler(12, 2, num_replicas=2, rank=0, seed=1), 6)
    rank1 = take(ResumableBatchSampler(12, 2, num_replicas=2, rank=1, seed=1), 6)
    for whole, a, b in zip(single, rank0, rank1):
        assert sorted(whole) == sorted(a + b)  # same images with the same augmentation seeds


def test_seeded_samples_repeat_augmentation_and_leave_global_rng_alone():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.rand(3) + i

    data = SeededSamples(Noisy())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = data[(2, 77)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(data[(2, 77)], first)
    assert not torch.equal(data[(2, 78)], first)


def test_too_small_dataset_for_one_batch_is_explained():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableBatchSampler(3, 2, num_replicas=2)


@pytest.mark.parametrize("schedule", ["poly", "cosine"])
def test_lr_schedules_with_warmup_match_their_formulas(schedule):
    settings = dict(total_steps=110, schedule=schedule, power=0.9, warmup_steps=10, warmup_ratio=0.1, min_factor=0.0)
    assert lr_factor(0, **settings) == pytest.approx(0.1)
    assert lr_factor(5, **settings) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(10, **settings) == pytest.approx(1.0)
    halfway = 0.5**0.9 if schedule == "poly" else 0.5
    assert lr_factor(60, **settings) == pytest.approx(halfway)
    assert lr_factor(110, **settings) == pytest.approx(0.0, abs=1e-12)


def test_scheduler_drives_the_optimizer_lr():
    model = torch.nn.Linear(2, 2)
    cfg = TrainSection(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, steps=20, schedule="cosine",
                       poly_power=0.9, warmup_steps=0, warmup_ratio=0.1, min_lr=0.01)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # min_lr at the end


def test_no_weight_decay_on_norms_biases_and_fusion_weights():
    model = tiny_model(num_classes=3)
    cfg = TrainSection(optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05)
    decay, no_decay = build_optimizer(model, cfg).param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    decay_ids = {id(p) for p in decay["params"]}
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert {id(module.weight), id(module.bias)} <= no_decay_ids
        if isinstance(module, torch.nn.Conv2d):
            assert id(module.weight) in decay_ids
            if module.bias is not None:
                assert id(module.bias) in no_decay_ids
        if isinstance(module, WeightedFusion) and module.weight is not None:
            assert id(module.weight) in no_decay_ids
    assert len(decay_ids) + len(no_decay_ids) == len(list(model.parameters()))


def test_loss_is_cross_entropy_over_labelled_pixels():
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, :2] = 255
    loss = SegmentationLoss(255)(logits, target)
    valid = target != 255
    expected = -F.log_softmax(logits, 1).gather(1, target.clamp(max=3)[:, None])[:, 0][valid].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert SegmentationLoss(255)(logits, torch.full_like(target, 255)).item() == 0.0


def test_ohem_keeps_hard_pixels_or_the_min_kept_hardest():
    logits = torch.randn(1, 3, 8, 8) * 3
    target = torch.randint(0, 3, (1, 8, 8))
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    prob = torch.exp(-per_pixel)
    hard = per_pixel[prob < 0.7]
    assert SegmentationLoss(ohem=True, ohem_thresh=0.7, ohem_min_kept=1)(logits, target).item() == pytest.approx(
        hard.mean().item(), rel=1e-6)
    top = per_pixel.sort(descending=True).values[:60]
    assert SegmentationLoss(ohem=True, ohem_thresh=1e-6, ohem_min_kept=60)(logits, target).item() == pytest.approx(
        top.mean().item(), rel=1e-6)


def test_ema_follows_the_formula_and_copies_integer_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    ema.update(model)  # first update: decay = min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.module[0].weight, d * start + (1 - d) * (start + 1.0))
    assert ema.module[1].num_batches_tracked.item() == 5
    restored = ModelEMA(model, decay=0.9)
    restored.load_checkpoint_state(ema.checkpoint_state())
    assert restored.updates == 1
    torch.testing.assert_close(restored.module[0].weight, ema.module[0].weight)
