"""The evaluation package's contracts: one evaluation context that leaves the model as it was
(every module's mode, frozen BN, device, memory format), runners and Segmenters that change
nothing of the caller's, precise BN as torch's update_bn computes it, hooks handed their
collaborators, bad-file reasons carried as lists, and the old import paths still working."""
import copy
import csv
import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from eseg.config import load_config
from eseg.engine.bad_data import collate_batch
from eseg.engine.bn import precise_bn, recompute_bn_statistics
from eseg.engine.hooks import BestCheckpoint, EvalResult, Evaluation, MetricsFile, PreciseBN
from eseg.engine.trainer import Trainer
from eseg.evaluation import evaluate_model, inference_context, preserved_modes
from eseg.inference.segmenter import Segmenter
from eseg.models.norm import batchnorm_layers
from eseg.runtimes.torch import TorchRunner

from .conftest import tiny_model


def modes(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_the_context_restores_every_modules_own_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout()).train()
    model[1].eval()  # a mode of its own inside a training model: train(was_training) would lose it
    before = modes(model)
    with inference_context(model):
        assert not any(modes(model).values())
    assert modes(model) == before
    with preserved_modes(model):
        model.train()
    assert modes(model) == before


def test_frozen_batchnorm_stays_frozen_through_train_and_evaluation():
    model = tiny_model().freeze_batchnorm()
    model.eval()
    model.train()  # e.g. what a runner or update_bn restores
    assert model.training and model.head.training
    assert all(not layer.training for _, layer in batchnorm_layers(model))
    before = bn_state(model)
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in bn_state(model).items())  # running statistics untouched
    model.freeze_batchnorm(False)
    assert all(layer.training for _, layer in batchnorm_layers(model))


def test_the_torch_runner_leaves_the_callers_model_as_it_was():
    model = tiny_model().train()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(x)
    before = modes(model)
    runner = TorchRunner(model, device="cpu")
    assert runner.model is model  # already where it should be: no copy
    torch.testing.assert_close(runner(x), expected)
    assert modes(model) == before
    fast = TorchRunner(model, channels_last=True)  # its own copy in channels_last
    torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-5)
    assert fast.model is not model and model.head.classifier.weight.is_contiguous()
    moved = TorchRunner(model, device="meta")  # another device: a copy moves, the caller's stays
    assert next(moved.model.parameters()).device.type == "meta"
    assert all(p.device.type == "cpu" for p in model.parameters()) and modes(model) == before


def test_the_segmenter_sets_nothing_on_the_callers_runner():
    runner = TorchRunner(tiny_model())
    segmenter = Segmenter(runner, amp=True)
    assert runner.amp is False
    assert segmenter.runner.amp is True and segmenter.runner.model is runner.model


def test_evaluate_model_keeps_a_frozen_models_modes():
    from eseg.data import build_dataset, build_eval_transform

    model = tiny_model(num_classes=8).freeze_batchnorm().train()
    dataset = build_dataset({"type": "synthetic", "num_images": {"val": 2}, "size": [64, 64]}, "val",
                            transform=build_eval_transform(mean=model.config.mean, std=model.config.std))
    before = modes(model)
    assert evaluate_model(model, dataset)["num_images"] == 2
    assert modes(model) == before


def test_precise_bn_is_torchs_update_bn_and_also_recomputes_frozen_layers():
    model = tiny_model().train()
    batches = [{"image": torch.randn(2, 3, 64, 64)} for _ in range(3)]
    oracle = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn([b["image"] for b in batches], oracle)
    ours = copy.deepcopy(model)
    assert recompute_bn_statistics(ours, iter(batches), torch.device("cpu")) == 3
    expected = bn_state(oracle)
    assert all(torch.equal(expected[k], v) for k, v in bn_state(ours).items())
    frozen = copy.deepcopy(model).freeze_batchnorm()
    before = modes(frozen)
    recompute_bn_statistics(frozen, iter(batches), torch.device("cpu"))
    assert all(torch.equal(expected[k], v) for k, v in bn_state(frozen).items())
    assert modes(frozen) == before  # still frozen, still training


def tiny_trainer(tmp_path: Path, **train) -> Trainer:
    cfg = {"model": {"name": "eseg_lite_s", "backbone": "test_efficientnet", "fpn_width": 8, "fpn_repeats": 1,
                     "head_width": 8, "head_layers": 1, "max_level": 6},
           "data": {"dataset": {"type": "synthetic", "num_images": {"train": 8, "val": 2}, "size": [64, 64]},
                    "crop_size": [64, 64], "num_workers": 0},
           "train": {"steps": 2, "batch_size": 2, "log_interval": 1, **train},
           "eval": {"interval": 1, "batch_size": 2, "num_overlays": 0, "num_predictions": 0},
           "run": {"progress": False, "tensorboard": False}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Trainer(load_config(path), tmp_path / "run")


def test_precise_bn_of_the_hook_and_of_reproduce_is_one_function_of_the_weights(tmp_path):
    trainer = tiny_trainer(tmp_path, precise_bn_batches=2, steps=4)
    precise_bn(trainer, 2)
    at_start = bn_state(trainer.eval_model)
    trainer.step = 3  # the batches do not depend on the step (nor on a resume)
    hook = PreciseBN(2)
    hook.trainer = trainer
    for _, layer in batchnorm_layers(trainer.eval_model):
        layer.reset_running_stats()  # so that only a recomputation can give them back
    trainer.step = 4  # the last step: an evaluation is due, so the hook runs precise BN
    hook.after_step()
    assert all(torch.equal(at_start[k], v) for k, v in bn_state(trainer.eval_model).items())


def test_training_with_frozen_bn_and_evaluations_never_unfreezes_it(tmp_path):
    trainer = tiny_trainer(tmp_path, freeze_bn=True)
    before = bn_state(trainer.model)
    trainer.fit()  # two evaluations in between the steps
    assert trainer.model.training
    assert all(not layer.training for _, layer in batchnorm_layers(trainer.model))
    after = bn_state(trainer.model)
    assert all(torch.equal(before[k], v) for k, v in after.items())


def test_evaluation_hands_its_result_to_its_collaborators_in_order():
    calls, logged = [], []
    metrics = iter([{"mIoU": 0.5, "aAcc": 0.9, "mAcc": 0.6, "fwIoU": 0.7},
                    {"mIoU": 0.5, "aAcc": 0.9, "mAcc": 0.6, "fwIoU": 0.7}])
    trainer = SimpleNamespace(step=1, best_metric=float("-inf"), best_step=None, best_metrics=None, metrics=None,
                              run_dir=Path("run"), eval_due=lambda: True, sync_buffers=lambda: None,
                              evaluate=lambda panels: next(metrics), log=logged.append, print=lambda message: None,
                              save_best=lambda m: calls.append(("best", m["mIoU"])))
    hook = Evaluation(then=[BestCheckpoint(), lambda t, result: calls.append(("after", result))])
    hook.trainer = trainer
    hook.after_step()
    trainer.step = 2
    hook.after_step()  # not better: no best checkpoint
    first, second = EvalResult(1, {"mIoU": 0.5, "aAcc": 0.9, "mAcc": 0.6, "fwIoU": 0.7}, True), calls[-1][1]
    assert calls[:2] == [("best", 0.5), ("after", first)]
    assert len(calls) == 3 and second.step == 2 and not second.improved
    assert trainer.best_step == 1 and logged[-1]["val/best_mIoU"] == 0.5


def test_the_metrics_csv_is_written_by_the_csv_module(tmp_path):
    metrics_file = MetricsFile(tmp_path, interval=1)
    metrics_file.trainer = SimpleNamespace(info=SimpleNamespace(is_main=True))
    rows = [{"step": 1, "loss": 0.5, "note": "a, b", "per_class": {"x": 1}},
            {"step": 2, "val/mIoU": None, "lr": 1e-3}]
    metrics_file.jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics_file.write_csv()
    with open(metrics_file.csv, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["step", "loss", "note", "val/mIoU", "lr"]  # scalar keys, first-seen order
    assert table == [{"step": "1", "loss": "0.5", "note": "a, b", "val/mIoU": "", "lr": ""},
                     {"step": "2", "loss": "", "note": "", "val/mIoU": "", "lr": "0.001"}]


def test_skipped_reasons_travel_through_the_training_loader_as_a_list():
    items = [{"image": torch.zeros(3, 2, 2), "mask": torch.zeros(2, 2, dtype=torch.long), "index": i, "skipped": s}
             for i, s in enumerate([[], ["a.png: truncated"], ["b.png: empty", "c.png: 16-bit"]])]
    batch = collate_batch(items)
    assert batch["image"].shape == (3, 3, 2, 2) and batch["index"].tolist() == [0, 1, 2]
    assert batch["skipped"] == ["a.png: truncated", "b.png: empty", "c.png: 16-bit"]


@pytest.mark.parametrize("old, new", [("eseg.engine.evaluation", "eseg.evaluation"),
                                      ("eseg.engine.reports", "eseg.evaluation.reports")])
def test_the_old_import_paths_warn_and_still_work(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module.format_table if old.endswith("reports") else module.inference_on_dataset
    target = importlib.import_module(new)
    name = "write_report" if old.endswith("reports") else "evaluate_model"
    assert getattr(module, name) is getattr(target, name)


def test_the_ema_keeps_its_old_import_path_for_a_release():
    from eseg.engine import ema, optim

    with pytest.warns(DeprecationWarning, match="eseg.engine.ema"):
        assert optim.ModelEMA is ema.ModelEMA
