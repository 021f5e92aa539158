"""`eseg reproduce` (the claims harness) and the DeepLabV3+ baseline it trains."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eseg
from eseg.cli import main
from eseg.errors import ConfigError
from eseg.config import load_config
from eseg.models.padding import padded_size
from eseg.reproduce import EXPERIMENTS, compare, context_scores, level_ladder, padding_text

TINY_DEEPLAB = dict(backbone="tinynet_e", fpn_kind="deeplabv3plus", max_level=4, fpn_width=16, head_width=16)


def test_deeplab_is_atrous_at_output_stride_16_and_round_trips(tmp_path):
    model = eseg.create_model("eseg_lite_s", num_classes=5, **TINY_DEEPLAB).eval()
    seen = {}
    model.backbone.register_forward_hook(lambda m, i, o: seen.setdefault("feats", o))
    x = torch.randn(2, 3, 75, 130)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5, 75, 130)
    low, deep = seen["feats"]
    assert model.pad_multiple == 16  # max_level 4 = output stride 16: 75x130 -> 80x144 canvas
    assert low.shape[-2:] == (20, 36) and deep.shape[-2:] == (5, 9)
    dilations = {m.dilation for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)}
    assert any(d[0] > 1 for d in dilations), "the last stage must be dilated instead of strided"
    assert [b[0].dilation for b in model.pyramid.aspp.branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    model.save_pretrained(tmp_path)
    again = eseg.load_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_deeplab_output_stride_8_doubles_the_rates_and_bad_levels_are_rejected():
    model = eseg.create_model("eseg_lite_s", num_classes=3, **{**TINY_DEEPLAB, "max_level": 3})
    assert [b[0].dilation[0] for b in model.pyramid.aspp.branches[1:]] == [12, 24, 36]
    with pytest.raises(ConfigError, match="max_level"):
        eseg.create_model("eseg_lite_s", num_classes=3, **{**TINY_DEEPLAB, "max_level": 5})


def test_context_scores_and_noise_rule_against_hand_computed_values():
    # classes: road, sidewalk, sky; rows = ground truth, columns = prediction
    cm = [[8, 2, 0], [4, 6, 0], [0, 0, 10]]
    metrics = {"confusion_matrix": cm,
               "per_class": {"road": {"IoU": 8 / 14}, "sidewalk": {"IoU": 6 / 12}, "sky": {"IoU": 1.0}}}
    scores = context_scores(metrics)
    assert scores["context_swap_rate"] == pytest.approx(6 / 20)
    assert scores["context_mIoU"] == pytest.approx((8 / 14 + 6 / 12) / 2)
    doc = {"experiments": {
        "a": {"summary": {"mIoU_mean": 0.50, "mIoU_std": 0.03}},
        "b": {"summary": {"mIoU_mean": 0.56, "mIoU_std": 0.04}},
        "c": {"summary": {"mIoU_mean": 0.53, "mIoU_std": 0.04}},
    }}
    a_to_b = compare(doc, "a", "b")
    assert a_to_b["delta"] == pytest.approx(0.06) and a_to_b["noise"] == pytest.approx(0.05)
    assert a_to_b["verdict"] == "higher"  # 0.06 > hypot(0.03, 0.04)
    assert compare(doc, "b", "a")["verdict"] == "lower"
    assert compare(doc, "a", "c")["verdict"] == "within noise"  # 0.03 < 0.05


def test_claims_geometry_mirrors_the_papers_ladder_without_padding():
    assert level_ladder((1024, 2048)) == "32x64 / 8x16 / 2x4"  # Cityscapes at its native size
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "claims" / "base.yaml")
    size = tuple(cfg["data"]["dataset"]["size"])
    assert tuple(cfg["data"]["crop_size"]) == size  # train on whole images: the cue is never cropped away
    assert padded_size(*size, 2**9) == size, "a P9 model would pad the claims images: costs would differ"
    assert level_ladder(size) == "16x32 / 4x8 / 1x2"
    assert "no model pads" in padding_text(size)
    assert "512x512 canvas (2.0x the pixels)" in padding_text((256, 512))


def test_reproduce_smoke_writes_json_markdown_and_plots(tmp_path):
    out, work = tmp_path / "out", tmp_path / "runs"
    args = ["reproduce", "--quick", "--steps", "2", "--val-images", "2", "--latency-runs", "1", "--threads", "1", "--bn-batches", "2",
            "--set", "data.dataset.size=[64,128]", "--set", "data.crop_size=[64,128]",
            "--set", "train.batch_size=2", "--set", "eval.num_predictions=0",
            "--out", str(out), "--work-dir", str(work)]
    assert main(args) == 0

    doc = json.loads((out / "claims.json").read_text())
    assert list(doc["experiments"]) == list(EXPERIMENTS)
    assert doc["settings"]["seeds"] == [0] and doc["settings"]["steps"] == 2
    assert doc["settings"]["image_size"] == [64, 128]
    for name, exp in doc["experiments"].items():
        (run,) = exp["runs"]
        assert 0.0 <= run["mIoU"] <= 1.0 and 0.0 <= run["context_mIoU"] <= 1.0
        assert set(run["per_class_IoU"]) >= {"road", "sidewalk"}
        assert exp["summary"]["mIoU_mean"] == pytest.approx(run["mIoU"]) and exp["summary"]["mIoU_std"] == 0.0
        assert exp["costs"]["params_M"] > 0 and exp["costs"]["latency_ms"] > 0
        assert (work / name / "seed0" / "final_metrics.json").is_file()
    costs = {n: e["costs"]["GMACs"] for n, e in doc["experiments"].items()}
    # P9 pads a 64x128 image to a 512x512 canvas: 32x the pixels of the P5/P7 (64x128) input
    assert costs["eseg_p9"] > 10 * costs["eseg_p7"]
    assert [c["claim"] for c in doc["claims"]] == [1, 2, 3]

    markdown = (out / "claims.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ") and "`" in line and "±" in line]
    assert len(table) == len(EXPERIMENTS)
    assert "eseg reproduce --quick --steps 2" in markdown
    assert "With one seed there is no run-to-run noise" in markdown  # a smoke run is not evidence
    for rel in ("img/claims_miou_vs_max_level.png", "img/claims_miou_vs_latency.png"):
        assert f"]({rel})" in markdown
        with Image.open(out / rel) as image:
            assert image.format == "PNG" and min(image.size) > 100
            assert np.asarray(image.convert("L")).std() > 0  # not a blank canvas

    # --report-only re-renders the same page from the JSON alone
    (out / "claims.md").unlink()
    assert main(["reproduce", "--report-only", "--out", str(out)]) == 0
    assert (out / "claims.md").read_text() == markdown
