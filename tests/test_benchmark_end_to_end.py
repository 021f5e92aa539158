"""`eseg benchmark --end-to-end`: one file pipeline for every entry, peers' low-resolution forms
exact, the fit, the results document, the errors (no timing asserts)."""
import json
import re

import numpy as np
import pytest
import torch

from eseg.benchmark.fit import FitPlan, fit_model, synthetic_batches
from eseg.benchmark.graphs import normalisation
from eseg.benchmark.models import build_model, peer_lowres
from eseg.cli import main
from eseg.inference import lowres
from eseg.models.config import IMAGENET_MEAN, IMAGENET_STD
from eseg.inference.lowres import Upsample, disagreeing_cells, lowres_argmax

TINY_ESEG = ["--set", "backbone=test_efficientnet", "--set", "fpn_width=16", "--set", "head_width=16",
             "--set", "fpn_repeats=1", "--set", "max_level=6"]
TINY_OPTIONS = {"backbone": "test_efficientnet", "fpn_width": 16, "head_width": 16, "fpn_repeats": 1, "max_level": 6}


def peers_to_check():
    names = ["lraspp_mobilenet_v3_large"]
    try:
        import segmentation_models_pytorch  # noqa: F401

        names.append("smp_deeplabv3plus")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", peers_to_check())
def test_a_peers_low_resolution_masks_equal_the_argmax_of_its_full_resolution_logits(name, monkeypatch):
    """The exact rule with the peer's own align_corners (torchvision False, smp True) gives the
    native output's masks pixel for pixel; the rule's cell-by-cell path too (DENSE lifted)."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, encoder="test_efficientnet")
    for layer in model.modules():  # random weights with running statistics give one class everywhere:
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):  # batch statistics make classes vary
            layer.train()
    low = peer_lowres(name, model)
    assert low.align_corners is (name == "smp_deeplabv3plus")
    for size in ((64, 128), (96, 160)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            native = model(x).numpy().argmax(1)
            logits = low.module(x)
        assert len(np.unique(native)) > 2  # masks with borders, where the rule has work to do
        assert logits.shape[-2:] == tuple(s // (8 if name.startswith("lraspp") else 4) for s in size)
        for dense in (0.5, 1.01):  # the fallback for noisy logits, then the rule cell by cell
            monkeypatch.setattr(lowres, "DENSE", dense)
            assert np.array_equal(lowres_argmax(logits, Upsample(size, None, low.align_corners)), native)
        if low.align_corners:  # the test can fail: the other align_corners gives other masks
            assert (lowres_argmax(logits, Upsample(size, None, False)) != native).any()


def test_disagreeing_cells_counts_the_cells_whose_corners_disagree():
    logits = np.zeros((2, 4, 4), np.float32)
    logits[1, :, :2] = 1.0  # class 1 in columns 0-1, class 0 in columns 2-3
    # cells (r, c) have corners in columns {c, c + 1} (clamped): only column 1's cells mix classes
    assert disagreeing_cells(logits) == pytest.approx(0.25)
    assert disagreeing_cells(torch.from_numpy(np.stack([logits, np.zeros_like(logits)]))) == pytest.approx(0.125)


def test_one_fit_loop_lowers_every_models_loss():
    plan = FitPlan(steps=8, batch=2, size=(64, 128))
    batches = synthetic_batches(plan)
    assert len(batches) == 8 and all(len(images) == 2 and labels.shape == (2, 64, 128) for images, labels in batches)
    peer = peers_to_check()[-1]  # smp's DeepLabV3+ on the tiny encoder when smp is here: the fastest to fit
    for name, options in (("eseg_lite_s", TINY_OPTIONS), (peer, None)):
        torch.manual_seed(0)
        model = build_model(name, num_classes=8, encoder="test_efficientnet", model_options=options)
        record = fit_model(model, *normalisation(model), batches, plan, log=lambda _: None)
        assert record.steps == 8 and record.loss_last < record.loss_first - 0.03
        assert not model.training
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        # precise BN after the fit: statistics averaged over the fit's batches, momentum as it was
        assert {int(m.num_batches_tracked) for m in norms} == {8} and None not in {m.momentum for m in norms}


def recording(monkeypatch):
    """Every mask write and every pipeline normalisation, as (path, written) and (mean, std)."""
    from eseg.inference import pipeline, predict

    writes, normalised = [], []
    write_mask, normalize = predict.write_mask, pipeline.normalize

    def write(path, mask):
        write_mask(path, mask)
        writes.append((path, path.is_file()))

    def norm(image, mean, std):
        normalised.append((tuple(mean), tuple(std)))
        return normalize(image, mean, std)

    monkeypatch.setattr(predict, "write_mask", write)
    monkeypatch.setattr(pipeline, "normalize", norm)
    return writes, normalised


def test_every_entry_goes_through_the_same_file_pipeline(tmp_path, monkeypatch, capsys):
    writes, normalised = recording(monkeypatch)
    code = main(["benchmark", "--end-to-end", "--models", "eseg_lite_s,lraspp_mobilenet_v3_large", "--size", "64x128",
                 "--images", "2", "--runs", "1", "--warmup", "1", "--threads", "1", "--out", str(tmp_path / "bench"),
                 "--format", "json", *TINY_ESEG])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {(r["model"], r["output"]): r for r in doc["end_to_end"]}
    assert set(rows) == {("eseg_lite_s", "lowres"), ("lraspp_mobilenet_v3_large", "lowres"),
                         ("lraspp_mobilenet_v3_large", "full")}
    for r in rows.values():
        assert r["error"] is None and r["precision"] == "fp32" and r["backend"] == "openvino" and r["size"] == [64, 128]
        assert r["masks_written"] == r["images"] == 2 and r["weights"] == "random init"
        assert r["network_ms_median"] > 0 and r["end_to_end_ms_per_image"] > 0 and r["startup_s"] > 0
        assert 0 <= r["disagreeing_cells"] <= 1
    lraspp_full = rows[("lraspp_mobilenet_v3_large", "full")]
    assert lraspp_full["end_to_end_vs"]["lraspp_mobilenet_v3_large (full)"] == pytest.approx(1.0)
    eseg = rows[("eseg_lite_s", "lowres")]
    assert eseg["end_to_end_vs"]["lraspp_mobilenet_v3_large (full)"] == pytest.approx(
        eseg["end_to_end_ms_per_image"] / lraspp_full["end_to_end_ms_per_image"])
    assert rows[("lraspp_mobilenet_v3_large", "lowres")]["pixels_differing_from_native"] <= 0.01
    assert any("random weights" in note for note in doc["notes"])
    # each entry: its first image at start-up, then both images in the timed round, all by eseg predict's writer
    by_entry = {}
    for path, written in writes:
        assert written and path.parent.name == "masks"
        by_entry.setdefault(path.parent.parent.parent.name, []).append(path.stem)
    assert len(by_entry) == 3  # the write threads finish in any order
    assert all(sorted(stems) == ["scene_0000", "scene_0000", "scene_0001"] for stems in by_entry.values())
    assert len(normalised) == 9 and set(normalised) == {(IMAGENET_MEAN, IMAGENET_STD)}  # the tiny eseg's is ImageNet's
    table = (tmp_path / "bench" / "results.md").read_text()
    native_row = r"\| lraspp_mobilenet_v3_large \| full-res logits \(native\), argmax \| 64x128 \| openvino \| fp32 \|"
    assert re.search(native_row, table)
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["end_to_end"] == doc["end_to_end"]


def test_a_source_folder_sets_the_size_and_fit_steps_fit_first(tmp_path, capsys):
    from eseg import fileio

    source = tmp_path / "images"
    for index in range(2):
        fileio.write_png(source / f"street_{index}.png", np.full((64, 96, 3), 40 * index, np.uint8))
    code = main(["benchmark", "--end-to-end", "--models", "eseg_lite_s", "--source", str(source), "--runs", "1",
                 "--warmup", "1", "--threads", "1", "--fit-steps", "2", "--fit-batch", "1", "--fit-size", "64x128",
                 "--num-classes", "8", "--out", str(tmp_path / "bench"), *TINY_ESEG])
    assert code == 0
    doc = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert doc["settings"]["sizes"] == [[64, 96]] and doc["settings"]["source"] == str(source)
    assert doc["fit"]["eseg_lite_s"]["steps"] == 2
    assert {r["weights"] for r in doc["end_to_end"]} == {"fit 2 steps"}
    assert {r["masks_written"] for r in doc["end_to_end"]} == {2} and not doc["notes"]
    assert "the size of" in capsys.readouterr().out


def test_clear_errors(tmp_path, capsys):
    common = ["benchmark", "--end-to-end", "--models", "lraspp_mobilenet_v3_large", "--out", str(tmp_path / "b")]
    assert main([*common, "--source", str(tmp_path / "nowhere")]) == 2
    assert "--source" in (err := capsys.readouterr().err) and "nowhere" in err and "not a folder" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert main([*common, "--source", str(tmp_path / "empty")]) == 2
    assert "holds no images" in (err := capsys.readouterr().err) and "empty" in err
    assert main([*common, "--backends", "eager"]) == 2
    assert "openvino, onnxruntime" in capsys.readouterr().err
    assert main(["benchmark", "--models", "eseg_lite_s", "--source", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "--source belong to --end-to-end" in capsys.readouterr().err
