"""evaluate_dataset and ``eseg val``, with cityscapesscripts' official evaluator as the oracle.

Run with ``-s`` to see both mIoU numbers of each Cityscapes cross-check.
"""
import json
import math

import numpy as np
import pytest
import torch
import yaml
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

import eseg
from eseg.cli import main
from eseg.data import build_dataset, build_eval_transform
from eseg.evaluation import (
    CityscapesExporter,
    SemSegEvaluator,
    evaluate_model,
    inference_on_dataset,
)
from eseg.errors import ConfigError
from eseg.inference.segmenter import Segmenter
from eseg.metrics import ConfusionMatrix
from eseg.models.eseg.config import ESegConfig
from eseg.palette import CITYSCAPES_LABELS
from eseg.runtimes.info import ModelInfo

CITIES = ("aachen", "bochum")
SIZE = (64, 128)  # the official evaluator takes any size; real Cityscapes is 1024x2048
# Every labelId 0..33 except bicycle (33): ignored ids (0-6, 9, 10, 14-16, 18, 29, 30) included.
GT_LABEL_IDS = np.arange(33)
NUM_PREDICTED = 18  # the oracle runner predicts trainIds 0..17: bicycle is absent from both sides
TRAIN_ID_OF_LABEL_ID = np.full(256, 255)  # from cityscapesscripts itself, not from eseg
for _label_id, _label in id2label.items():
    if _label_id >= 0:
        TRAIN_ID_OF_LABEL_ID[_label_id] = _label.trainId


def make_cityscapes_fixture(root, seed=0):
    """Two val images per city in the official layout, with blocky random labelIds."""
    rng = np.random.default_rng(seed)
    gt_files = []
    for city in CITIES:
        for frame in range(2):
            stem = f"{city}_{frame:06d}_{19 + frame:06d}"
            image_dir = root / "leftImg8bit" / "val" / city
            label_dir = root / "gtFine" / "val" / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            blocks = rng.choice(GT_LABEL_IDS, size=(SIZE[0] // 8, SIZE[1] // 8))
            labels = np.kron(blocks, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
            noise = rng.random(SIZE) < 0.2
            labels[noise] = rng.choice(GT_LABEL_IDS, size=int(noise.sum()))
            Image.fromarray(labels).save(label_dir / f"{stem}_gtFine_labelIds.png")
            image = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
            # The red channel encodes a prediction for PixelOracleRunner: right on ~60% of pixels.
            train_ids = TRAIN_ID_OF_LABEL_ID[labels]
            right = (rng.random(SIZE) < 0.6) & (train_ids < NUM_PREDICTED)
            image[..., 0][right] = train_ids[right] + NUM_PREDICTED * rng.integers(0, 256 // NUM_PREDICTED, int(right.sum()))
            Image.fromarray(image).save(image_dir / f"{stem}_leftImg8bit.png")
            gt_files.append(label_dir / f"{stem}_gtFine_labelIds.png")
    return gt_files


def official_miou(monkeypatch, root, pred_dir, gt_files):
    """19-class mIoU of cityscapesscripts' evalPixelLevelSemanticLabeling on the exported PNGs."""
    monkeypatch.setenv("CITYSCAPES_DATASET", str(root))  # read when the module is first imported
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    args = cs_eval.args
    monkeypatch.setattr(args, "evalInstLevelScore", False)  # no *_instanceIds.png in the fixture
    monkeypatch.setattr(args, "evalPixelAccuracy", False)
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "quiet", True)
    preds = []
    for gt in gt_files:
        stem = "_".join(gt.name.split("_")[:3])
        matches = list(pred_dir.glob(f"{stem}*.png"))
        assert len(matches) == 1, f"expected one prediction for {stem}, found {matches}"
        preds.append(str(matches[0]))
    result = cs_eval.evaluateImgLists(preds, [str(g) for g in gt_files], args)
    return result["averageScoreClasses"], result["classScores"]


class PixelOracleRunner:
    """Predicts trainId = red value % 18 per pixel: diverse, known predictions without a network."""

    info = ModelInfo(ESegConfig(num_classes=19, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), input_stride=32)
    device = torch.device("cpu")

    def __call__(self, batch):
        classes = (batch[:, 0] * 255).round().long() % NUM_PREDICTED
        return torch.nn.functional.one_hot(classes, self.info.num_classes).permute(0, 3, 1, 2).float()


def _cityscapes(root, runner):
    transform = build_eval_transform(mean=runner.info.mean, std=runner.info.std)
    return build_dataset({"type": "cityscapes", "root": str(root)}, "val", transform=transform)


def test_cityscapes_export_matches_official_evaluator(tmp_path, monkeypatch):
    root = tmp_path / "cityscapes"
    gt_files = make_cityscapes_fixture(root)
    runner = PixelOracleRunner()
    dataset = _cityscapes(root, runner)
    exporter = CityscapesExporter(dataset, tmp_path / "export")
    ours = inference_on_dataset(Segmenter(runner, batch_size=3), dataset, [SemSegEvaluator.for_dataset(dataset), exporter],
                                batch_size=3)
    assert sorted(p.name for p in exporter.written) == sorted(
        f"{'_'.join(g.name.split('_')[:3])}_pred.png" for g in gt_files)
    exported = np.array(Image.open(exporter.written[0]))
    assert exported.shape == SIZE and set(np.unique(exported)) <= {label_id for _, label_id, _ in CITYSCAPES_LABELS}
    theirs, class_scores = official_miou(monkeypatch, root, tmp_path / "export", gt_files)
    print(f"\n[cityscapes cross-check, oracle predictions] eseg mIoU = {ours['mIoU']:.10f}   "
          f"cityscapesscripts averageScoreClasses = {theirs:.10f}")
    assert ours["mIoU"] == pytest.approx(theirs, abs=1e-6)
    for name, _, _ in CITYSCAPES_LABELS:  # per class too, absent bicycle NaN on both sides
        mine, official = ours["per_class"][name]["IoU"], class_scores[name]
        assert (math.isnan(mine) and math.isnan(official)) or mine == pytest.approx(official, abs=1e-6), name
    assert math.isnan(ours["per_class"]["bicycle"]["IoU"])
    assert 0.2 < ours["mIoU"] < 0.9


def test_eseg_val_cli_cityscapes_export_and_report(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cityscapes"
    gt_files = make_cityscapes_fixture(root, seed=1)
    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=19, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    model.save_pretrained(tmp_path / "model")
    argv = ["val", str(tmp_path / "model"), "--data-type", "cityscapes", "--data-root", str(root),
            "--out", str(tmp_path / "run"), "--cityscapes-export", str(tmp_path / "export"),
            "--device", "cpu", "--num-workers", "0", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "traffic light" in out and "mIoU" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for name in ("per_class_iou.png", "confusion_matrix.png"):
        assert Image.open(tmp_path / "run" / name).size[0] > 100
    assert results["num_images"] == 4 and len(results["per_class"]) == 19
    theirs, _ = official_miou(monkeypatch, root, tmp_path / "export", gt_files)
    with capsys.disabled():
        print(f"\n[cityscapes cross-check, eseg val on a tiny random model] eseg mIoU = {results['mIoU']:.10f}   "
              f"cityscapesscripts averageScoreClasses = {theirs:.10f}")
    assert results["mIoU"] == pytest.approx(theirs, abs=1e-6)
    # A second run refuses to replace the results and names the way out.
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_evaluate_dataset_matches_direct_model_calls_and_restores_train_mode():
    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=8, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    dataset = build_dataset({"type": "synthetic", "num_images": {"val": 3}, "size": [45, 70]}, "val",
                            transform=build_eval_transform(mean=model.config.mean, std=model.config.std))
    model.train()
    result = evaluate_model(model, dataset, batch_size=2)
    assert model.training  # the trainer's model goes back to training mode
    model.eval()
    evaluator = ConfusionMatrix(8, class_names=list(dataset.class_names))
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            evaluator.update(model(item["image"][None]), item["mask"][None])
    expected = evaluator.compute()
    assert result["confusion_matrix"] == expected["confusion_matrix"]
    assert result["num_images"] == 3 and result["mode"] == "whole"


def test_eseg_val_from_experiment_config(tmp_path, capsys):
    from eseg.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=8, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    save_checkpoint(tmp_path / "exp" / "checkpoints" / "best", model, {"step": 1})
    config = {"data": {"dataset": {"type": "synthetic", "num_images": {"val": 2}, "size": [40, 60]}},
              "run": {"out": str(tmp_path / "exp")}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    argv = ["val", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "val"), "--device", "cpu",
            "--num-workers", "0", "--mode", "slide", "--crop", "32", "48", "--no-progress"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "val" / "results.json").read_text())
    assert results["num_images"] == 2 and results["mode"] == "slide"
    assert results["model"].endswith("best")
    # the same confusion matrix from the library's Segmenter and a plain numpy count
    segmenter = eseg.Segmenter.from_pretrained(tmp_path / "exp" / "checkpoints" / "best", mode="slide", crop=(32, 48))
    dataset = build_dataset(config["data"]["dataset"], "val")
    confusion = np.zeros((8, 8), dtype=np.int64)
    for i in range(2):
        image, mask = dataset.load(i)
        confusion += np.bincount(8 * mask.ravel() + segmenter(image).ravel(), minlength=64).reshape(8, 8)
    np.testing.assert_array_equal(np.array(results["confusion_matrix"]), confusion)


def test_cityscapes_export_refuses_other_datasets(tmp_path):
    dataset = build_dataset({"type": "synthetic", "num_images": 2, "size": [64, 64]}, "val")
    with pytest.raises(ConfigError, match="needs a Cityscapes dataset.*SyntheticStreets"):
        CityscapesExporter(dataset, tmp_path / "export")
