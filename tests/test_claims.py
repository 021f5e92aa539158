"""`eseg reproduce` (the claims harness), its manifest and configs, and the DeepLabV3+ baseline it trains."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import eseg
from eseg.cli import main
from eseg.config import load_config
from eseg.errors import ConfigError
from eseg.models.padding import padded_size
from eseg.reproduce import (
    ClaimsOptions,
    claim_verdicts,
    compare,
    load_manifest,
    plan_claims,
)
from eseg.reproduce.experiments import experiment_config
from eseg.reproduce.report import level_ladder, padding_text
from eseg.reproduce.runs import context_scores

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "configs" / "claims"
# tinynet_e has several blocks per stage, so timm dilates the later blocks of a stride-less stage
# (test_efficientnet, one block per stage, would lose the stride without any dilation)
TINY_DEEPLAB = dict(backbone="tinynet_e", aspp_width=16, decoder_width=16, decoder_layers=1)


def test_deeplab_is_atrous_at_output_stride_16_and_round_trips(tmp_path):
    model = eseg.create_model("deeplabv3plus", num_classes=5, output_stride=16, **TINY_DEEPLAB).eval()
    seen = {}
    model.backbone.register_forward_hook(lambda m, i, o: seen.setdefault("feats", o))
    x = torch.randn(2, 3, 75, 130)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5, 75, 130)
    low, deep = seen["feats"]
    assert model.input_stride == 16  # 75x130 -> 80x144 canvas
    assert low.shape[-2:] == (20, 36) and deep.shape[-2:] == (5, 9)
    dilations = {m.dilation for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)}
    assert any(d[0] > 1 for d in dilations), "the last stage must be dilated instead of strided"
    assert [b[0].dilation for b in model.decoder.aspp.branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    model.save_pretrained(tmp_path)
    again = eseg.load_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_deeplab_output_stride_8_doubles_the_rates_and_bad_strides_are_rejected():
    model = eseg.create_model("deeplabv3plus", num_classes=3, output_stride=8, **TINY_DEEPLAB).eval()
    assert [b[0].dilation[0] for b in model.decoder.aspp.branches[1:]] == [12, 24, 36]
    seen = {}
    model.backbone.register_forward_hook(lambda m, i, o: seen.setdefault("feats", o))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
    assert seen["feats"][1].shape[-2:] == (8, 12)  # stride 8
    with pytest.raises(ConfigError, match="output_stride"):
        eseg.create_model("deeplabv3plus", num_classes=3, output_stride=32, **TINY_DEEPLAB)


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


def _experiment(roles, mean, std=0.01, max_level=None, gmacs=1.0, latency=10.0):
    summary = {f"{k}_{s}": v for k in ("mIoU", "context_mIoU") for s, v in (("mean", mean), ("std", std))}
    model = {"name": "x", **({"max_level": max_level} if max_level else {})}
    return {"roles": roles, "model": model, "summary": summary, "costs": {"GMACs": gmacs, "latency_ms": latency}}


def test_verdicts_follow_the_roles_not_the_names():
    doc = {"experiments": {
        "deep": _experiment(["max_level", "bifpn", "eseg"], 0.60, max_level=9, gmacs=1.0, latency=20.0),
        "shallow": _experiment(["max_level"], 0.50, max_level=5),
        "flat": _experiment(["fpn"], 0.55, max_level=9),
        "atrous": _experiment(["deeplab"], 0.58, gmacs=2.0, latency=10.0),
    }}
    claims = {c["claim"]: c for c in claim_verdicts(doc)}
    assert claims[1]["text"].startswith("P5 -> P9")  # ordered by max_level, not by table order
    assert [c["what"] for c in claims[1]["comparisons"]] == ["`shallow` -> `deep`"]
    assert claims[1]["reproduced"] and claims[2]["reproduced"]
    assert claims[2]["comparisons"][0]["mIoU"]["delta"] == pytest.approx(0.05)
    assert claims[3]["cost_ratio"]["GMACs"] == pytest.approx(0.5) and claims[3]["cost_ratio"]["latency"] == 2.0
    assert not claims[3]["reproduced"]  # as accurate but slower: not "at far lower cost"
    del doc["experiments"]["flat"]
    assert [c["claim"] for c in claim_verdicts(doc)] == [1, 3]  # no fpn role, no claim 2


def test_claims_configs_share_one_budget_and_no_model_pads_the_images():
    assert level_ladder((1024, 2048)) == "32x64 / 8x16 / 2x4"  # Cityscapes at its native size
    manifest = load_manifest(CLAIMS)
    configs = {name: load_config(manifest.config_path(name)) for name in manifest.names()}
    budgets = [{k: v for k, v in cfg.to_dict().items() if k != "model"} for cfg in configs.values()]
    assert all(b == budgets[0] for b in budgets), "every experiment must get the same budget and data"
    assert len({cfg.model_options()["backbone"] for cfg in configs.values()}) == 1  # claim 3: same backbone
    size = tuple(budgets[0]["data"]["dataset"]["size"])
    assert tuple(budgets[0]["data"]["crop_size"]) == size  # whole images: the cue is never cropped away
    assert level_ladder(size) == "16x32 / 4x8 / 1x2"
    canvases = {}
    for name, cfg in configs.items():
        model = eseg.create_model(cfg.model.name, num_classes=8, **cfg.model_options())
        canvases[name] = list(padded_size(*size, model.input_stride))
        assert tuple(canvases[name]) == size, f"{name} pads the claims images: its costs would differ"
    assert padding_text(size, canvases).startswith("No model pads")
    canvas = padded_size(64, 128, 512)
    assert f"`p9` pads 64x128 to a {canvas[0]}x{canvas[1]} canvas" in padding_text((64, 128), {"p9": canvas})


def test_the_manifest_is_the_only_experiment_table(tmp_path):
    config_dir = tmp_path / "claims"
    shutil.copytree(CLAIMS, config_dir)
    (config_dir / "eseg_p6.yaml").write_text("_base_: _eseg.yaml\nmodel: {fpn_kind: bifpn, max_level: 6}\n")
    manifest = yaml.safe_load((config_dir / "experiments.yaml").read_text())
    manifest["experiments"]["eseg_p6"] = {"label": "ESeg BiFPN P2-P6", "roles": ["max_level"]}
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert load_manifest(config_dir).names()[-1] == "eseg_p6"
    plan = plan_claims(ClaimsOptions(config_dir=config_dir, preset="quick", experiments=["eseg_p6"],
                                     work_dir=tmp_path / "runs"))
    job = next(j for j in plan.jobs if j.name == "eseg_p6")
    assert job.cfg.model_options()["max_level"] == 6 and job.run_dir == tmp_path / "runs" / "eseg_p6" / "seed0"
    assert job.cfg.train.steps == manifest["presets"]["quick"]["steps"]
    assert job.cfg.eval.max_images == manifest["presets"]["quick"]["val_images"]
    sources = [p.read_text() for p in (ROOT / "src" / "eseg" / "reproduce").glob("*.py")]
    sources.append((ROOT / "src" / "eseg" / "cli" / "reproduce.py").read_text())
    for name in load_manifest(CLAIMS).names():  # no experiment is named in code
        assert not any(name in source for source in sources), name
    manifest["experiments"]["fpn_p6"] = {"label": "x", "roles": ["fpn"], "config": "eseg_p6.yaml"}
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    with pytest.raises(ConfigError, match="role 'fpn' names one experiment"):
        load_manifest(config_dir)
    manifest["experiments"]["fpn_p6"] = {"label": "x", "roles": ["fnp"], "config": "eseg_p6.yaml"}
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    with pytest.raises(ConfigError, match="unknown role 'fnp'"):
        load_manifest(config_dir)


def test_a_short_budget_shrinks_only_an_unset_warmup():
    path = CLAIMS / "eseg_p7.yaml"
    assert load_config(path).train.warmup_steps == 10
    cfg = experiment_config(path, ["train.steps=10"], seed=3)
    assert (cfg.train.steps, cfg.train.warmup_steps, cfg.train.seed) == (10, 2, 3)
    assert experiment_config(path, ["train.steps=10", "train.warmup_steps=1"], seed=0).train.warmup_steps == 1
    assert experiment_config(path, ["train.steps=20"], seed=0).train.warmup_steps == 10
    assert experiment_config(path, [], seed=0).train.warmup_steps == load_config(path).train.warmup_steps


TINY_RUN = ["--steps", "2", "--val-images", "2", "--latency-runs", "1", "--threads", "1", "--bn-batches", "2",
            "--set", "data.dataset.size=[64,128]", "--set", "data.crop_size=[64,128]"]


# every claim's roles and two points of two families' fronts (the whole manifest is 17 runs)
SMOKE = ["eseg_p5", "eseg_p9", "fpn_p9", "deeplabv3plus_os16", "eseg_p9_w16", "deeplabv3plus_os16_w16", "lraspp_w32"]


def test_reproduce_smoke_writes_json_markdown_and_plots(tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "runs"
    assert main(["reproduce", "--quick", *TINY_RUN, "--experiments", ",".join(SMOKE), "--out", str(out),
                 "--work-dir", str(work)]) == 0

    names = [name for name in load_manifest(CLAIMS).names() if name in SMOKE]
    doc = json.loads((out / "claims.json").read_text())
    assert list(doc["experiments"]) == names
    assert doc["settings"]["seeds"] == [0] and doc["settings"]["steps"] == 2 and doc["settings"]["bn_batches"] == 2
    assert doc["settings"]["image_size"] == [64, 128] and doc["settings"]["val_images"] == 2
    for name, exp in doc["experiments"].items():
        (run,) = exp["runs"]
        for key in ("mIoU", "running_bn_mIoU", "context_mIoU", "running_bn_context_mIoU"):
            assert 0.0 <= run[key] <= 1.0, (name, key)  # both BN scores of every run
        assert run["precise_bn_batches"] == 2 and run["val_images"] == 2
        assert set(run["per_class_IoU"]) >= {"road", "sidewalk"}
        assert exp["summary"]["mIoU_mean"] == pytest.approx(run["mIoU"]) and exp["summary"]["mIoU_std"] == 0.0
        assert exp["summary"]["running_bn_mIoU_mean"] == pytest.approx(run["running_bn_mIoU"])
        assert exp["costs"]["params_M"] > 0 and exp["costs"]["latency_ms"] > 0 and exp["costs"]["GMACs"] > 0
        assert exp["costs"]["latency_precision"] == "f32"  # OpenVINO told fp32, not its bf16 default
        model = eseg.create_model(exp["model"]["name"], num_classes=8,
                                  **{k: v for k, v in exp["model"].items() if k != "name"})
        assert exp["costs"]["canvas"] == list(padded_size(64, 128, model.input_stride))
        assert (work / name / "seed0" / "claims_result.json").is_file()
        assert (work / name / "seed0" / "model" / "model.safetensors").is_file()
    assert [c["claim"] for c in doc["claims"]] == [1, 2, 3]
    gaps = [100 * abs(r["mIoU"] - r["running_bn_mIoU"]) for e in doc["experiments"].values() for r in e["runs"]]
    assert doc["bn_check"]["max_gap_points"] == pytest.approx(max(gaps))

    markdown = (out / "claims.md").read_text()
    results = markdown[markdown.index("## Results"):]
    table = [line for line in results.splitlines() if line.startswith("| ") and "`" in line and "±" in line]
    assert len(table) == len(names)
    assert "mIoU, precise BN (%) | mIoU, running BN (%)" in markdown
    assert "Every verdict compares precise-BN scores" in markdown
    assert "eseg reproduce --quick --steps 2" in markdown
    assert "## Fronts: mIoU against deployed latency" in markdown and "at matched latency" in markdown
    assert doc["settings"]["latency"] == {"runtime": "openvino", "precision": "fp32", "threads": 1}
    assert "With one seed there is no run-to-run noise" in markdown  # a smoke run is not evidence
    for rel in ("img/claims_miou_vs_max_level.png", "img/claims_fronts.png"):
        assert f"]({rel})" in markdown
        with Image.open(out / rel) as image:
            assert image.format == "PNG" and min(image.size) > 100
            assert np.asarray(image.convert("L")).std() > 0  # not a blank canvas

    # --report-only re-renders the same page from the JSON alone; --notes adds a section
    (out / "claims.md").unlink()
    assert main(["reproduce", "--report-only", "--out", str(out)]) == 0
    assert (out / "claims.md").read_text() == markdown
    (tmp_path / "notes.md").write_text("Observed by hand.\n")
    assert main(["reproduce", "--report-only", "--out", str(out), "--notes", str(tmp_path / "notes.md")]) == 0
    assert (out / "claims.md").read_text().endswith("## Notes\n\nObserved by hand.\n")

    # --reuse takes a finished run with the same config instead of training it again
    first = names[0]
    again = tmp_path / "again"
    assert main(["reproduce", "--quick", *TINY_RUN, "--experiments", first, "--reuse", "--out", str(again),
                 "--work-dir", str(work)]) == 0
    reused = json.loads((again / "claims.json").read_text())["experiments"][first]["runs"]
    assert reused == doc["experiments"][first]["runs"]

    # --part trains only its own slice and renders every finished run: the smoke's, reused, plus its new one
    config_dir = tmp_path / "claims"
    shutil.copytree(CLAIMS, config_dir)
    manifest = yaml.safe_load((config_dir / "experiments.yaml").read_text())
    manifest["parts"] = {"one": {"seeds": [0], "experiments": [first, "fpn_p9_w16"]}}
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    part_out = tmp_path / "part"
    assert main(["reproduce", "--quick", *TINY_RUN, "--part", "one", "--config-dir", str(config_dir),
                 "--out", str(part_out), "--work-dir", str(work)]) == 0
    parted = json.loads((part_out / "claims.json").read_text())["experiments"]
    assert set(parted) == set(SMOKE) | {"fpn_p9_w16"} and len(parted["fpn_p9_w16"]["runs"]) == 1
    assert all(parted[name]["runs"] == doc["experiments"][name]["runs"] for name in SMOKE)
    assert "--part one" in (part_out / "claims.md").read_text()
    manifest["parts"]["one"]["experiments"] = ["eseg_p7"]  # not in the quick preset: said, not skipped
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    capsys.readouterr()
    assert main(["reproduce", "--quick", *TINY_RUN, "--part", "one", "--config-dir", str(config_dir), "--out",
                 str(part_out), "--work-dir", str(work)]) == 2
    assert "--part one: it names eseg_p7, which this preset" in capsys.readouterr().err
