"""The train.loss spec and its losses against hand-written oracles: weighted, label-smoothed CE
(and OHEM), smp's Dice, Focal and Lovasz, ignore labels, empty batches, combination and errors."""
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from eseg.engine.losses import CombinedLoss, build_loss
from eseg.errors import ConfigError
from eseg.loss_spec import validate_loss_spec

IGNORE = 255
ALL_TYPES = ["cross_entropy", "dice", "focal", "lovasz"]


def sample(c=4, shape=(2, 5, 6), ignored=True):
    logits = torch.randn(shape[0], c, *shape[1:]) * 2
    target = torch.randint(0, c, shape)
    if ignored:
        target[0, :2] = IGNORE
        target[1, :, :1] = IGNORE
    return logits, target


def log_probs(logits):
    """log softmax over dim 1 (classes) written out: x - max - log(sum(exp(x - max)))."""
    top = logits.max(dim=1, keepdim=True).values
    return logits - top - torch.log(torch.exp(logits - top).sum(dim=1, keepdim=True))


def pixels(logits, target):
    """Labelled pixels as (P, C) logits and (P,) labels."""
    valid = target != IGNORE
    return logits.movedim(1, -1)[valid], target[valid]


def loss(spec, c=4):
    return build_loss(spec, num_classes=c, ignore_index=IGNORE)


# --------------------------------------------------------------------------- cross-entropy


def weighted_smoothed_ce(logits, target, weights, eps):
    """torch's rule: sum over pixels of (1-e) w[y] nll + e/C sum_c w[c] (-log p_c), over sum of w[y]."""
    x, y = pixels(logits, target)
    logp = log_probs(x)  # (P, C)
    c = x.shape[1]
    per_pixel = [(1 - eps) * weights[y[i]] * -logp[i, y[i]] + eps / c * sum(weights[k] * -logp[i, k] for k in range(c))
                 for i in range(len(y))]
    return sum(per_pixel) / sum(weights[y[i]] for i in range(len(y)))


def test_cross_entropy_with_class_weights_and_label_smoothing_matches_the_formula():
    logits, target = sample()
    weights = [0.5, 1.0, 2.0, 0.25]
    got = loss({"type": "cross_entropy", "class_weights": weights, "label_smoothing": 0.1})(logits, target)
    assert got.item() == pytest.approx(weighted_smoothed_ce(logits, target, weights, 0.1).item(), rel=1e-5)
    plain = loss({"type": "cross_entropy"})(logits, target)
    assert plain.item() == pytest.approx(weighted_smoothed_ce(logits, target, [1.0] * 4, 0.0).item(), rel=1e-5)


def test_ohem_judges_hardness_on_the_plain_probability_and_keeps_the_weighted_mean():
    logits, target = sample(c=3, shape=(1, 8, 8), ignored=False)
    weights = [1.0, 3.0, 0.5]
    x, y = pixels(logits, target)
    logp = log_probs(x)
    prob = torch.exp(logp).gather(1, y[:, None])[:, 0]
    w = torch.tensor(weights)
    per_pixel = (1 - 0.1) * w[y] * -logp.gather(1, y[:, None])[:, 0] + 0.1 / 3 * (w * -logp).sum(1)

    hard = prob < 0.7
    spec = {"type": "cross_entropy", "class_weights": weights, "label_smoothing": 0.1, "ohem": True,
            "ohem_thresh": 0.7, "ohem_min_kept": 1}
    expected = per_pixel[hard].sum() / w[y][hard].sum()
    assert loss(spec, 3)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)

    least_probable = prob.argsort()[:20]  # too few pixels are hard: the 20 least probable count
    spec.update(ohem_thresh=1e-6, ohem_min_kept=20)
    expected = per_pixel[least_probable].sum() / w[y][least_probable].sum()
    assert loss(spec, 3)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


# --------------------------------------------------------------------------- smp terms


def soft_dice_oracle(logits, target, smooth=0.0):
    """smp's multiclass Dice: per class over the whole batch's labelled pixels,
    dice = (I + s) / ((|P| + |T|) / 2 + s); loss 1 - dice for classes present in the target,
    0 for absent ones, averaged over ALL classes."""
    x, y = pixels(logits, target)
    prob = torch.exp(log_probs(x))
    c = x.shape[1]
    total = 0.0
    for k in range(c):
        inter = sum(prob[i, k].item() for i in range(len(y)) if y[i] == k)
        pred_sum = sum(prob[i, k].item() for i in range(len(y)))
        true_sum = sum(1 for i in range(len(y)) if y[i] == k)
        if true_sum:
            total += 1 - (inter + smooth) / ((pred_sum + true_sum) / 2 + smooth)
    return total / c


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_matches_a_hand_computed_soft_dice(smooth):
    logits, target = sample(c=3, shape=(2, 3, 3))
    target[target == 2] = 0  # class 2 absent: contributes 0 but still counts in the mean
    got = loss({"type": "dice", "smooth": smooth}, 3)(logits, target)
    assert got.item() == pytest.approx(soft_dice_oracle(logits, target, smooth), rel=1e-5)


def sigmoid_focal_oracle(logits, target, gamma, alpha=None):
    """smp's multiclass Focal is one-vs-rest sigmoid focal: for each class c and labelled pixel,
    (1 - p_t)^gamma * BCE(x_c, y == c) [* alpha_t], averaged over pixels and classes."""
    x, y = pixels(logits, target)
    t = F.one_hot(y, x.shape[1]).float()
    p = 1 / (1 + torch.exp(-x))
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    p_t = t * p + (1 - t) * (1 - p)
    per = (1 - p_t) ** gamma * bce
    if alpha is not None:
        per = per * (alpha * t + (1 - alpha) * (1 - t))
    return per.mean()


def test_focal_with_gamma_0_is_the_one_vs_rest_binary_cross_entropy():
    logits, target = sample()
    got = loss({"type": "focal", "gamma": 0.0})(logits, target)
    assert got.item() == pytest.approx(sigmoid_focal_oracle(logits, target, 0.0).item(), rel=1e-5)
    x, y = pixels(logits, target)
    bce = F.binary_cross_entropy_with_logits(x, F.one_hot(y, 4).float())  # the same, via torch
    assert got.item() == pytest.approx(bce.item(), rel=1e-5)


def test_focal_with_gamma_and_alpha_matches_the_formula():
    logits, target = sample()
    got = loss({"type": "focal", "gamma": 2.0, "alpha": 0.25})(logits, target)
    assert got.item() == pytest.approx(sigmoid_focal_oracle(logits, target, 2.0, 0.25).item(), rel=1e-5)


def test_lovasz_of_a_hard_prediction_is_one_minus_iou_over_present_classes():
    _, target = sample(c=4)
    target[target == 3] = 0  # class 3 absent from the target: not averaged
    pred = target.clone()
    pred[pred == IGNORE] = 1
    pred[0, 3:, :3] = 2  # some mistakes
    pred[1, :2] = 0
    logits = F.one_hot(pred, 4).movedim(-1, 1).float() * 1e4  # softmax exactly one-hot
    valid = target != IGNORE
    ious = []
    for k in range(3):
        p, g = (pred == k) & valid, (target == k) & valid
        ious.append((p & g).sum().item() / (p | g).sum().item())
    expected = 1 - sum(ious) / 3
    assert loss({"type": "lovasz"})(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_lovasz_is_zero_for_a_perfect_prediction_and_falls_as_predictions_improve():
    logits, target = sample()
    onehot = F.one_hot(target.clamp(max=3), 4).movedim(-1, 1).float()
    lovasz = loss({"type": "lovasz"})
    values = [lovasz(logits + k * onehot, target).item() for k in (0, 1, 2, 4, 8, 40)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- ignore, empty, combination


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_logits_at_ignored_pixels_change_no_loss(kind):
    logits, target = sample()
    other = logits.clone()
    ignored = (target == IGNORE)[:, None].expand_as(logits)
    other[ignored] = torch.randn(int(ignored.sum())) * 50
    term = loss({"type": kind, **({"ohem": True, "ohem_min_kept": 5} if kind == "cross_entropy" else {})})
    other.requires_grad_(True)
    value = term(other, target)
    assert value.item() == pytest.approx(term(logits, target).item(), rel=1e-6, abs=1e-7)
    value.backward()
    assert torch.all(other.grad[ignored] == 0)


@pytest.mark.parametrize("kind", [*ALL_TYPES, "all"])
def test_an_all_ignored_batch_gives_zero_and_a_working_backward(kind):
    spec = [{"type": k} for k in ALL_TYPES] if kind == "all" else {"type": kind}
    if kind == "cross_entropy":
        spec["class_weights"] = [1.0, 2.0, 1.0, 1.0]
    net = torch.nn.Conv2d(3, 4, 3, padding=1)
    value = loss(spec)(net(torch.randn(2, 3, 5, 6)), torch.full((2, 5, 6), IGNORE))
    assert value.dim() == 0 and math.isfinite(value.item()) and value.item() == 0.0
    value.backward()
    assert all(p.grad is not None and torch.all(p.grad == 0) for p in net.parameters())  # DDP sees every grad


def test_combination_is_the_weighted_sum_of_the_terms():
    from segmentation_models_pytorch import losses as smp

    logits, target = sample()
    spec = [{"type": "cross_entropy", "weight": 1.0, "label_smoothing": 0.05}, {"type": "dice", "weight": 0.5},
            {"type": "focal", "weight": 2.0, "gamma": 1.0}, {"type": "lovasz", "weight": 0.25},
            {"type": "cross_entropy", "weight": 0.0}]
    combined = loss(spec)
    total = combined(logits, target)
    expected = {
        "ce": F.cross_entropy(logits, target, ignore_index=IGNORE, label_smoothing=0.05),
        "dice": smp.DiceLoss("multiclass", ignore_index=IGNORE)(logits, target),
        "focal": smp.FocalLoss("multiclass", ignore_index=IGNORE, gamma=1.0)(logits, target),
        "lovasz": smp.LovaszLoss("multiclass", ignore_index=IGNORE)(logits, target),
        "ce_2": F.cross_entropy(logits, target, ignore_index=IGNORE),
    }
    assert list(combined.last_terms) == list(expected)
    for name, value in expected.items():
        assert combined.last_terms[name].item() == pytest.approx(value.item(), rel=1e-5)
        assert not combined.last_terms[name].requires_grad
    weighted = sum(entry["weight"] * expected[name].item() for entry, name in zip(spec, expected))
    assert total.item() == pytest.approx(weighted, rel=1e-5)


def test_losses_run_in_float32_under_autocast():
    logits, target = sample()
    half = logits.bfloat16()
    combined = loss([{"type": k} for k in ALL_TYPES])
    reference = combined(half.float(), target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = combined(half, target)
    assert value.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in combined.last_terms.values())
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)


def test_a_few_steps_of_a_tiny_net_reduce_the_combined_loss():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    target = images.argmax(1)  # the class is the brightest channel: learnable by a 1x1 conv
    target[:, :2] = IGNORE
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
    criterion = loss([{"type": "cross_entropy", "class_weights": [1.0, 2.0, 1.0]}, {"type": "dice", "weight": 0.5},
                      {"type": "focal"}, {"type": "lovasz"}], c=3)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    values, terms = [], []
    for _ in range(40):
        value = criterion(net(images), target)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
        terms.append({name: term.item() for name, term in criterion.last_terms.items()})
    assert values[-1] < 0.5 * values[0]
    assert all(terms[-1][name] < terms[0][name] for name in terms[0])


# --------------------------------------------------------------------------- spec


def test_a_single_mapping_is_filled_with_the_defaults():
    spec = {"type": "focal", "gamma": 1.5}
    assert validate_loss_spec(spec) == [{"type": "focal", "weight": 1.0, "gamma": 1.5, "alpha": None}]
    assert spec == {"type": "focal", "gamma": 1.5}  # not modified
    assert isinstance(build_loss(spec, num_classes=3, ignore_index=IGNORE), CombinedLoss)


@pytest.mark.parametrize("spec, message", [
    ([{"type": "dice"}, {"type": "focal", "gama": 2}],
     "train.loss[1] (type 'focal'): unknown key 'gama'; did you mean 'gamma'? valid keys: alpha, gamma, type, weight"),
    ({"type": "dcie"}, "train.loss.type: unknown loss type 'dcie'; did you mean 'dice'? registered: cross_entropy,"),
    ([{"type": 3}], "train.loss[0].type: unknown loss type '3'"),
    ([{"weight": 1.0}], "train.loss[0]: missing 'type'"),
    (["dice"], "train.loss[0]: expected a mapping"),
    (5, "train.loss: expected a mapping or a list"),
    ([], "train.loss: empty list"),
    ([{"type": "dice", "weight": -1}], "'train.loss[0].weight' = -1.0 is out of range: each value must be >= 0"),
    ([{"type": "dice", "weight": "1"}], "'train.loss[0].weight' must be a finite number, got '1'"),
    ([{"type": "dice", "weight": True}], "'train.loss[0].weight' must be a finite number, got True"),
    ([{"type": "dice", "weight": float("nan")}], "'train.loss[0].weight' must be a finite number, got nan"),
    ([{"type": "dice", "weight": float("inf")}], "'train.loss[0].weight' must be a finite number, got inf"),
    ([{"type": "dice", "weight": 0}], "train.loss: every loss weight is 0"),
    ([{"type": "dice", "smooth": -1}], "'train.loss[0].smooth' = -1.0 is out of range: each value must be >= 0"),
    ({"type": "cross_entropy", "label_smoothing": 1.0},
     "'train.loss.label_smoothing' = 1.0 is out of range: each value must be < 1 (valid: >= 0 and < 1)"),
    ({"type": "cross_entropy", "label_smoothing": -0.1},
     "'train.loss.label_smoothing' = -0.1 is out of range: each value must be >= 0 (valid: >= 0 and < 1)"),
    ({"type": "cross_entropy", "class_weights": [1, -1]},
     "'train.loss.class_weights' = [1.0, -1.0] is out of range: each value must be >= 0"),
    ({"type": "cross_entropy", "class_weights": "1,2"},
     "'train.loss.class_weights' must be a list of a finite number or null, got '1,2'"),
    ({"type": "cross_entropy", "class_weights": [0, 0]}, "train.loss.class_weights are all 0, so no pixel would count"),
    ({"type": "cross_entropy", "class_weights": []}, "train.loss.class_weights is empty, so no pixel would count"),
    ({"type": "cross_entropy", "ohem": "yes"}, "'train.loss.ohem' must be true or false, got 'yes'"),
    ({"type": "cross_entropy", "ohem_thresh": 0},
     "'train.loss.ohem_thresh' = 0.0 is out of range: each value must be > 0 (valid: > 0 and <= 1)"),
    ({"type": "cross_entropy", "ohem_min_kept": 0}, "'train.loss.ohem_min_kept' = 0 is out of range: each value must be >= 1"),
    ({"type": "cross_entropy", "ohem_min_kept": 1.5}, "'train.loss.ohem_min_kept' must be an integer, got 1.5"),
    ({"type": "focal", "gamma": -1}, "'train.loss.gamma' = -1.0 is out of range: each value must be >= 0"),
    ({"type": "focal", "alpha": 2}, "'train.loss.alpha' = 2.0 is out of range: each value must be <= 1 (valid: >= 0 and <= 1)"),
    ({"type": "lovasz", "per_image": True}, "train.loss (type 'lovasz'): unknown key 'per_image'"),
])
def test_config_errors_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_loss_spec(spec)
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_loss(spec, num_classes=2, ignore_index=IGNORE)


def test_errors_use_the_given_location():
    message = r"^model\.aux_loss\[0\] \(type 'lovasz'\): unknown key 'wieght'; did you mean 'weight'"
    with pytest.raises(ConfigError, match=message):
        validate_loss_spec([{"type": "lovasz", "wieght": 1}], where="model.aux_loss")


def test_class_weights_must_have_one_value_per_class():
    spec = [{"type": "dice"}, {"type": "cross_entropy", "class_weights": [1.0, 2.0]}]
    validate_loss_spec(spec)  # no class count at config-load time
    with pytest.raises(ConfigError, match=r"train\.loss\[1\]\.class_weights: has 2 values .* 3 classes"):
        build_loss(spec, num_classes=3, ignore_index=IGNORE)


def test_without_smp_cross_entropy_builds_and_the_others_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch.losses", None)
    logits, target = sample()
    assert math.isfinite(loss({"type": "cross_entropy"})(logits, target).item())
    install = r"train\.loss\[1\]\.type: .*'focal'.*pip install segmentation-models-pytorch"
    with pytest.raises(ConfigError, match=install):
        loss([{"type": "cross_entropy"}, {"type": "focal"}])
