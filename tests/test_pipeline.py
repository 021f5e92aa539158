"""The overlapped predict pipeline: order, bounded memory, failures, and ``eseg predict --save``."""
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import eseg
from eseg.cli import main
from eseg.errors import DataError
from eseg.inference.pipeline import OrderedJobs, read_ahead, stream, stream_masks
from eseg.inference.predict import parse_save
from eseg.inference.segmenter import Segmenter
from eseg.viz import overlay


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=4, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (20 + 3 * (i % 4), 30 + 5 * (i % 3), 3), dtype=np.uint8) for i in range(count)]


def test_stream_keeps_the_order_and_reports_a_bad_input_where_it_stands(model_dir):
    seg = Segmenter.from_pretrained(model_dir, batch_size=3)
    inputs = images(7)
    inputs[4] = np.zeros((0, 5, 3), np.uint8)  # an empty image: a DataError for this input only
    results = list(stream(seg, inputs, workers=2))
    assert [r.index for r in results] == list(range(7))
    assert isinstance(results[4].error, DataError) and results[4].mask is None
    for i, result in enumerate(results):
        if i != 4:
            assert result.error is None
            np.testing.assert_array_equal(result.mask, seg.predict(inputs[i]))  # batched and threaded = one by one
            np.testing.assert_array_equal(result.image, inputs[i])


def test_stream_with_logits_takes_the_mask_from_them(model_dir):
    seg = Segmenter.from_pretrained(model_dir, batch_size=2)
    inputs = images(3, seed=1)
    for result, image in zip(stream(seg, inputs, logits=True), inputs):
        np.testing.assert_array_equal(result.logits.cpu(), seg.predict_logits(image))
        np.testing.assert_array_equal(result.mask, seg.to_mask(result.logits))


def test_decoding_runs_a_bounded_way_ahead_of_the_consumer(model_dir):
    """A lazy source of 500 inputs: never more than depth + two batches decoded and not yet consumed."""
    seg = Segmenter.from_pretrained(model_dir, batch_size=2)
    picture = images(1)[0]
    lock, state = threading.Lock(), {"outstanding": 0, "most": 0, "decoded": 0}

    def decode(source):
        with lock:
            state["outstanding"] += 1
            state["decoded"] += 1
            state["most"] = max(state["most"], state["outstanding"])
        return picture

    count = 0
    for _ in stream(seg, (i for i in range(500)), decode=decode, workers=2, depth=4):
        with lock:
            state["outstanding"] -= 1
        count += 1
        if count == 100:
            break
    assert count == 100
    assert state["most"] <= 4 + 2 * 2
    assert state["decoded"] <= 100 + 4 + 2 * 2  # stopping early leaves no decoding queued


def test_segmenter_stream_yields_every_mask_in_order(model_dir):
    seg = Segmenter.from_pretrained(model_dir, batch_size=2)
    inputs = images(5, seed=2)
    streamed = list(stream_masks(seg, iter(inputs)))
    assert len(streamed) == 5
    for mask, image in zip(streamed, inputs):
        np.testing.assert_array_equal(mask, seg.predict(image))
    with pytest.raises(DataError, match="empty"):
        list(stream_masks(seg, [inputs[0], np.zeros((3, 0, 3), np.uint8)]))


def test_jobs_report_in_submission_order_whatever_finishes_first():
    second_done = threading.Event()
    reported = []

    def first():
        assert second_done.wait(30)  # finishes only after the second job
        raise OSError("disk full")

    def second():
        second_done.set()

    with OrderedJobs(lambda key, error: reported.append((key, type(error).__name__ if error else None)),
                     workers=2) as jobs:
        jobs.submit("first", first)
        jobs.submit("second", second)
    assert reported == [("first", "OSError"), ("second", None)]


def test_a_job_that_fails_for_another_reason_stops_the_queue():
    def broken():
        raise ValueError("a bug, not a bad input")

    with pytest.raises(ValueError, match="a bug"):
        with OrderedJobs(lambda key, error: None, workers=1) as jobs:
            jobs.submit("x", broken)


def test_read_ahead_keeps_order_and_raises_where_the_source_failed():
    def frames():
        yield from range(5)
        raise DataError("clip.mp4: cannot decode video")

    got = []
    with pytest.raises(DataError, match="clip.mp4"):
        for item in read_ahead(frames(), depth=3):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert list(read_ahead(iter(range(10)), depth=2)) == list(range(10))


def test_parse_save():
    assert parse_save("overlay, masks") == ("masks", "overlay")
    assert parse_save("masks", probs=True) == ("masks", "probs")
    for bad in ("mask", "", "masks,jpeg"):
        with pytest.raises(eseg.errors.ConfigError, match="masks, color, overlay, probs"):
            parse_save(bad)


def _predict(model_dir, source, out, *extra):
    return main(["predict", str(model_dir), "--source", str(source), "--out", str(out), "--device", "cpu",
                 "--no-progress", *extra])


def _write_folder(folder, count=4):
    """Pictures of flat 8x8 blocks (JPEG keeps them nearly exact, unlike noise)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        blocks = rng.integers(0, 256, (4 + i % 2, 6, 3), dtype=np.uint8)
        Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), np.uint8))).save(folder / f"img{i}.png")
    return folder


def test_save_masks_alone_writes_only_masks(model_dir, tmp_path):
    source = _write_folder(tmp_path / "in")
    assert _predict(model_dir, source, tmp_path / "out", "--save", "masks", "--batch-size", "3") == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["legend.png"] + [f"masks/img{i}.png" for i in range(4)]
    seg = Segmenter.from_pretrained(model_dir)
    for i in range(4):
        saved = Image.open(tmp_path / "out" / "masks" / f"img{i}.png")
        assert saved.mode == "L"
        np.testing.assert_array_equal(np.array(saved), seg(source / f"img{i}.png"))


def test_every_output_kind_and_the_probs_alias(model_dir, tmp_path):
    source = _write_folder(tmp_path / "in", count=2)
    out = tmp_path / "out"
    assert _predict(model_dir, source, out, "--save", "color,overlay", "--save-probs", "--alpha", "0.4") == 0
    assert not (out / "masks").exists()
    palette = eseg.palette.get_palette(None, 4)
    seg = Segmenter.from_pretrained(model_dir)
    for i in range(2):
        image = np.array(Image.open(source / f"img{i}.png"))
        mask = seg(image)
        color = Image.open(out / "color" / f"img{i}.png")
        assert color.mode == "P"  # a palette PNG: the ids, shown in the palette's colours
        np.testing.assert_array_equal(np.array(color), mask)
        np.testing.assert_array_equal(np.array(color.convert("RGB")), palette[mask])
        shown = np.array(Image.open(out / "overlay" / f"img{i}.jpg")).astype(int)
        expected = overlay(image, mask, palette, alpha=0.4).astype(int)
        assert shown.shape == expected.shape and np.abs(shown - expected).mean() < 8  # JPEG: close, not exact
        probs = np.load(out / "probs" / f"img{i}.npy")
        np.testing.assert_allclose(probs, torch.softmax(seg.predict_logits(image), 0).numpy(), atol=1e-6)


def test_a_bad_save_list_is_named(model_dir, tmp_path, capsys):
    source = _write_folder(tmp_path / "in", count=1)
    assert _predict(model_dir, source, tmp_path / "out", "--save", "masks,heatmap") == 2
    assert "heatmap" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _write_clip(path, frames=4):
    import imageio_ffmpeg

    rng = np.random.default_rng(5)
    writer = imageio_ffmpeg.write_frames(str(path), (48, 32), fps=4, macro_block_size=1)
    writer.send(None)
    for _ in range(frames):
        writer.send(np.kron(rng.integers(0, 256, (4, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    writer.close()


def test_video_outputs_follow_save(model_dir, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    _write_clip(tmp_path / "clip.mp4")
    assert _predict(model_dir, tmp_path / "clip.mp4", tmp_path / "none", "--save", "masks") == 2
    assert "--save-frames" in capsys.readouterr().err  # nothing a video could be given: named, nothing written
    out = tmp_path / "out"
    assert _predict(model_dir, tmp_path / "clip.mp4", out, "--save", "color", "--save-frames", "--batch-size", "3") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["color/clip.mp4", "legend.png"] + [f"masks/clip/{i:06d}.png" for i in range(4)]
