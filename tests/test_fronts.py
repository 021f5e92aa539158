"""The claims' fronts (mIoU against deployed latency per decoder family), the manifest's families
and parts, and the LR-ASPP decoder that is one of the families."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import eseg
from eseg.errors import ConfigError
from eseg.reproduce import ClaimsOptions, claim_verdicts, load_manifest, plan_claims
from eseg.reproduce.experiments import part_jobs
from eseg.reproduce.front_report import fronts_section
from eseg.reproduce.fronts import Point, front_comparison, matched, pareto_names, read_front

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "configs" / "claims"


def _point(family, latency, mean, std=0.01, roles=()):
    summary = {f"{k}_{s}": v for k in ("mIoU", "context_mIoU") for s, v in (("mean", mean), ("std", std))}
    return {"family": family, "roles": list(roles), "label": family, "model": {"name": "x"}, "summary": summary,
            "runs": [{}], "costs": {"latency_ms": latency, "GMACs": 1.0}}


def test_read_front_interpolates_and_matches_ends_within_ten_percent():
    front = [Point("a", 10.0, 0.50, 0.01), Point("b", 20.0, 0.60, 0.03)]
    assert read_front(front, 15.0) == pytest.approx((0.55, 0.02))
    assert read_front(front, 10.0) == pytest.approx((0.50, 0.01))
    assert read_front(front, 9.1) == (0.50, 0.01) and read_front(front, 21.9) == (0.60, 0.03)  # within 10 %
    assert read_front(front, 8.9) is None and read_front(front, 22.1) is None
    assert read_front([], 10.0) is None


def test_matched_latency_differences_by_hand():
    ours = [Point("a1", 10.0, 0.50, 0.01), Point("a2", 20.0, 0.60, 0.01)]
    theirs = [Point("b1", 12.0, 0.40, 0.02), Point("b2", 30.0, 0.70, 0.02)]
    rows = matched(ours, theirs)
    # 10 ms: theirs starts at 12 (10 < 12 * 0.9): no match; 30 ms: ours ends at 20 (30 > 22): none
    assert [r["latency_ms"] for r in rows] == [12.0, 20.0]
    assert rows[0]["a"] == pytest.approx(0.52) and rows[0]["b"] == pytest.approx(0.40)
    assert rows[1]["b"] == pytest.approx(0.40 + 8 / 18 * 0.30)
    assert rows[0]["noise"] == pytest.approx((0.01**2 + 0.02**2) ** 0.5)
    assert [r["verdict"] for r in rows] == ["higher", "higher"]
    close = [Point("b1", 12.1, 0.40, 0.02), Point("b2", 19.9, 0.70, 0.02)]  # a2 at 20.0 is within 2 % of b2
    assert [r["latency_ms"] for r in matched(ours, close)] == [12.1, 19.9]  # 19.9 and 20.0: one latency


def test_front_verdicts_ahead_behind_and_the_pareto_points():
    doc = {"experiments": {
        "e16": _point("eseg", 10.0, 0.50, roles=["bifpn", "eseg"]), "e48": _point("eseg", 20.0, 0.60),
        "f16": _point("fpn", 11.0, 0.45, roles=["fpn"]), "f48": _point("fpn", 19.0, 0.55),
        "d16": _point("deeplab", 10.5, 0.60, roles=["deeplab"]), "d48": _point("deeplab", 21.0, 0.70),
    }}
    assert front_comparison(doc, "eseg", "fpn")["verdict"] == "ahead"
    assert front_comparison(doc, "eseg", "deeplab")["verdict"] == "behind"
    assert front_comparison(doc, "eseg", "eseg")["verdict"] == "within noise"
    assert pareto_names(doc) == ["e16", "d16", "d48"]  # e48 ties d16's mIoU but is slower
    claims = {c["claim"]: c for c in claim_verdicts(doc)}
    assert claims[2]["front"]["mIoU"]["verdict"] == "ahead" and claims[2]["reproduced"]
    assert claims[3]["front"]["mIoU"]["verdict"] == "behind" and not claims[3]["reproduced"]
    section = "\n".join(fronts_section({**doc, "settings": {
        "seeds": [0], "image_size": [64, 128], "latency": {"runtime": "openvino", "precision": "fp32", "threads": 2},
        "families": {"eseg": "ESeg", "fpn": "FPN", "deeplab": "DeepLab"}}}))
    assert "**ESeg** minus **FPN**: ahead" in section and "**ESeg** minus **DeepLab**: behind" in section
    far = {"experiments": {**doc["experiments"], "d16": _point("deeplab", 100.0, 0.6, roles=["deeplab"]),
                           "d48": _point("deeplab", 200.0, 0.7)}}
    assert front_comparison(far, "eseg", "deeplab")["verdict"] == "no matched latency"


def test_manifest_families_parts_and_their_errors(tmp_path):
    manifest = load_manifest(CLAIMS)
    families = {manifest.experiments.get(n).family for n in manifest.names()} - {None}
    assert families == set(manifest.families) and len(families) >= 5
    for family in families:  # three or more widths per front
        assert sum(manifest.experiments.get(n).family == family for n in manifest.names()) >= 3, family
    plan = plan_claims(ClaimsOptions(config_dir=CLAIMS, work_dir=tmp_path))
    assert {job.seed for job in part_jobs(plan, "seed1")} == {1}
    assert len(part_jobs(plan, "seed1")) == len(manifest.claims_names())
    widths = {job.name: job.cfg.model_options().get("fpn_width") for job in plan.jobs if job.seed == 0}
    assert len({widths[n] for n in widths if manifest.experiments.get(n).family == "eseg"}) >= 3
    with pytest.raises(ConfigError, match="--part.*seed9"):
        part_jobs(plan, "seed9")

    config_dir = tmp_path / "claims"
    shutil.copytree(CLAIMS, config_dir)
    data = yaml.safe_load((config_dir / "experiments.yaml").read_text())
    data["experiments"]["eseg_p5"]["family"] = "unet"
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="family 'unet' is not listed under 'families'"):
        load_manifest(config_dir)
    del data["experiments"]["eseg_p5"]["family"]
    data["parts"]["seed0"]["experiments"] = ["eseg_p55"]
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="parts.seed0 names experiment 'eseg_p55'"):
        load_manifest(config_dir)


def test_lraspp_head_equals_torchvisions_with_the_same_weights():
    from torchvision.models.segmentation.lraspp import LRASPPHead as TorchvisionHead

    model = eseg.create_model("lraspp", num_classes=5, backbone="test_efficientnet", inter_width=16).eval()
    low_channels, deep_channels = model.backbone.channels
    reference = TorchvisionHead(low_channels, deep_channels, 5, 16).eval()
    ours = model.head
    with torch.no_grad():
        for module in ours.modules():  # non-trivial BN statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2), module.weight.uniform_(0.5, 2)
        reference.cbr[0].weight.copy_(ours.deep[0].weight)
        reference.cbr[1].load_state_dict(ours.deep[1].state_dict())
        reference.scale[1].weight.copy_(ours.gate[0].weight)
        reference.low_classifier.load_state_dict(ours.low_classifier.state_dict())
        reference.high_classifier.load_state_dict(ours.deep_classifier.state_dict())
        low, deep = torch.randn(2, low_channels, 12, 20), torch.randn(2, deep_channels, 6, 10)
        torch.testing.assert_close(ours([low, deep]), reference({"low": low, "high": deep}))
        x = torch.randn(1, 3, 97, 203)
        assert model(x).shape == (1, 5, 97, 203)
        assert model.forward_lowres(x).shape == (1, 5, 14, 26)  # 112x208 canvas (stride 16) at stride 8
    assert model.input_stride == 16 and model.backbone.model.feature_info.reduction()[-1] == 16
    with pytest.raises(ConfigError, match="low_stride"):
        eseg.create_model("lraspp", num_classes=5, backbone="test_efficientnet", low_stride=2)


def test_study_presets_sweep_the_rate_and_show_beside_the_main_run(tmp_path):
    from eseg.reproduce.studies import pair_gaps, studies_section

    plan = plan_claims(ClaimsOptions(config_dir=CLAIMS, preset="lr", work_dir=tmp_path))
    manifest = load_manifest(CLAIMS)
    lrs, pair = manifest.presets.get("lr").lrs, manifest.presets.get("lr").experiments
    assert len(lrs) >= 3 and len(plan.jobs) == len(lrs) * len(pair) * len(manifest.presets.get("lr").seeds)
    job = next(j for j in plan.jobs if j.name == f"{pair[0]}@lr{lrs[0]:g}" and j.seed == 0)
    assert job.cfg.train.lr == lrs[0] and job.run_dir == tmp_path / pair[0] / f"lr{lrs[0]:g}" / "seed0"
    budget = plan_claims(ClaimsOptions(config_dir=CLAIMS, preset="budget", work_dir=tmp_path))
    full = plan_claims(ClaimsOptions(config_dir=CLAIMS, work_dir=tmp_path))
    assert budget.names == pair and budget.jobs[0].cfg.train.steps == 4 * full.jobs[0].cfg.train.steps
    gpu = plan_claims(ClaimsOptions(config_dir=CLAIMS, preset="gpu", work_dir=tmp_path))
    assert gpu.names == full.names and gpu.jobs[0].cfg.train.steps == 10 * full.jobs[0].cfg.train.steps
    assert gpu.jobs[0].cfg.train.device == "auto"  # the GPU where there is one
    with pytest.raises(ConfigError, match="--preset: unknown claims preset 'bugdet'; did you mean 'budget'"):
        plan_claims(ClaimsOptions(config_dir=CLAIMS, preset="bugdet"))

    def entry(role, lr, mean, experiment):
        return {**_point(role, 10.0, mean, roles=[role]), "lr": lr, "experiment": experiment}

    study = {"command": "eseg reproduce --preset lr", "total_minutes": 1.0,
             "environment": {"cpu": "AMD EPYC", "threads": 2, "gpu": "NVIDIA H200"},
             "settings": {"preset": "lr", "about": "rates", "seeds": [0, 1], "steps": 250},
             "experiments": {"e@lr0.001": entry("eseg", 0.001, 0.70, "e"), "d@lr0.001": entry("deeplab", 0.001, 0.60, "d"),
                             "e@lr0.003": entry("eseg", 0.003, 0.70, "e"), "d@lr0.003": entry("deeplab", 0.003, 0.80, "d")}}
    gaps = pair_gaps(study)
    assert [(g["lr"], g["verdict"]) for g in gaps] == [(0.001, "higher"), (0.003, "lower")]
    assert gaps[0]["delta"] == pytest.approx(0.10)
    (tmp_path / "claims_lr.json").write_text(json.dumps(study))
    base = {"settings": {"steps": 250}, "experiments": {"e": entry("eseg", 0.003, 0.65, "e"),
                                                        "d": entry("deeplab", 0.003, 0.70, "d")}}
    section = "\n".join(studies_section(tmp_path, base))
    assert "1 min on NVIDIA H200 (training; timing on AMD EPYC (2 threads))" in section
    assert "## Study `lr`: rates" in section and "| 0.001 | 70.0 ± 1.0 | 60.0 ± 1.0 | +10.0 ± 1.4 (higher) |" in section
    assert "-5.0 ± 1.4 (lower, 250 steps)" in section
    assert "matched latencies" not in section  # a rate sweep's points are no front


def test_hypotheses_train_only_where_listed_and_are_read_against_both_fronts(tmp_path):
    from eseg.reproduce.hypotheses import hypotheses_table, hypothesis_rows

    manifest = load_manifest(CLAIMS)
    hypotheses = [n for n in manifest.names() if manifest.experiments.get(n).hypothesis]
    assert len(hypotheses) >= 3 and not set(hypotheses) & set(manifest.claims_names())
    full = plan_claims(ClaimsOptions(config_dir=CLAIMS, work_dir=tmp_path))
    causes = plan_claims(ClaimsOptions(config_dir=CLAIMS, preset="causes", work_dir=tmp_path))
    assert not set(hypotheses) & set(full.names) and set(hypotheses) <= set(causes.names)
    assert causes.config("eseg_p9_conv").model_options()["extra_kind"] == "conv"

    doc = {"experiments": {
        "e16": _point("eseg", 10.0, 0.60, roles=["x"]), "e24": {**_point("eseg", 20.0, 0.70), "roles": ["eseg"]},
        "d16": _point("deeplab", 12.0, 0.66, roles=["x"]), "d24": _point("deeplab", 20.0, 0.74, roles=["deeplab"]),
        "h": {**_point(None, 15.0, 0.70, std=0.02), "hypothesis": "a learned P6"},
        "far": {**_point(None, 40.0, 0.90), "hypothesis": "too slow to match"}}}
    rows = {row["name"]: row for row in hypothesis_rows(doc)}
    assert rows["h"]["mIoU_vs_eseg"]["delta"] == pytest.approx(0.05)  # ESeg's front at 15 ms: 0.65
    assert rows["h"]["mIoU_vs_eseg"]["verdict"] == "higher"
    assert rows["h"]["mIoU_vs_deeplab"]["delta"] == pytest.approx(0.70 - 0.69)  # DeepLab's at 15 ms: 0.69
    assert rows["h"]["mIoU_vs_deeplab"]["verdict"] == "within noise"
    assert rows["far"]["mIoU_vs_eseg"] is None
    table = "\n".join(hypotheses_table(doc))
    assert "| a learned P6 | `h` | 15.0 | 70.0 ± 2.0 | +5.0 ± 2.2 (higher) | +1.0 ± 2.2 (within noise) |" in table
    assert "no matched latency" in table
