"""``eseg predict``: folders with odd files, overwrite protection, probabilities, video, a real photo."""
import numpy as np
import pytest
import torch
from PIL import Image

import eseg
from eseg.cli import main
from eseg.inference.segmenter import Segmenter
from eseg.inference.video import read_video
from eseg.viz import colorize


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=4, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def _write_inputs(folder):
    """Every kind of image read_image handles, plus one corrupt file. Returns {stem: (H, W)}."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (45, 77, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(folder / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 256, (33, 65, 4), dtype=np.uint8)).save(folder / "sub" / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (30, 41), dtype=np.uint16)).save(folder / "sub" / "deep16.png")
    Image.fromarray(rng.integers(0, 256, (36, 52, 3), dtype=np.uint8)).convert("P").save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a 40 wide x 60 high file shows as 60 wide x 40 high
    Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(folder / "rotated.jpg", exif=exif)
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return {"rgb": (45, 77), "sub/gray": (40, 50), "sub/rgba": (33, 65), "sub/deep16": (30, 41),
            "palette": (36, 52), "rotated": (40, 60)}


def _predict(model_dir, source, out, *extra):
    return main(["predict", str(model_dir), "--source", str(source), "--out", str(out), "--device", "cpu",
                 "--no-progress", *extra])


def test_folder_with_a_corrupt_file(model_dir, tmp_path, capsys):
    expected = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert _predict(model_dir, tmp_path / "in", out, "--batch-size", "3") == 1  # one failure: non-zero exit
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "1 input(s) failed" in captured.err
    assert "predicted 6 of 7" in captured.out
    for stem, size in expected.items():
        mask = np.array(Image.open(out / "masks" / f"{stem}.png"))
        assert mask.shape == size and mask.max() < 4, stem
        color = Image.open(out / "color" / f"{stem}.png")
        assert color.mode == "P" and np.array(color.convert("RGB")).shape == (*size, 3)  # a palette PNG
        np.testing.assert_array_equal(np.array(color), mask)  # its ids are the mask
        assert np.array(Image.open(out / "overlay" / f"{stem}.jpg")).shape == (*size, 3)
    assert not (out / "masks" / "sub" / "broken.png").exists()
    assert Image.open(out / "legend.png").size[0] > 50
    # The saved masks are what the Python API predicts, and the color mask is their colorized form.
    seg = Segmenter.from_pretrained(model_dir)
    mask = np.array(Image.open(out / "masks" / "rotated.png"))
    np.testing.assert_array_equal(mask, seg(tmp_path / "in" / "rotated.jpg"))
    color = np.array(Image.open(out / "color" / "rotated.png").convert("RGB"))
    np.testing.assert_array_equal(color, colorize(mask, eseg.palette.get_palette(None, 4)))


def test_existing_outputs_are_not_overwritten(model_dir, tmp_path, capsys):
    src = tmp_path / "one.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(src)
    out = tmp_path / "out"
    assert _predict(model_dir, src, out, "--save-probs") == 0
    before = (out / "masks" / "one.png").stat().st_mtime_ns
    capsys.readouterr()
    assert _predict(model_dir, src, out) == 2
    err = capsys.readouterr().err
    assert "one.png" in err and "--overwrite" in err
    assert (out / "masks" / "one.png").stat().st_mtime_ns == before
    assert _predict(model_dir, src, out, "--overwrite") == 0
    probs = np.load(out / "probs" / "one.npy")
    assert probs.shape == (4, 20, 30) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), np.array(Image.open(out / "masks" / "one.png")))


def test_glob_source_and_custom_palette(model_dir, tmp_path):
    _write_inputs(tmp_path / "in")
    colors = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]]
    (tmp_path / "classes.yaml").write_text(f"names: [a, b, c, d]\ncolors: {colors}\n")
    out = tmp_path / "out"
    code = _predict(model_dir, f"{tmp_path}/in/**/*.png", out, "--palette", str(tmp_path / "classes.yaml"))
    assert code == 1  # broken.png matches the glob too
    assert sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")) == [
        "palette.png", "rgb.png", "sub/deep16.png", "sub/gray.png", "sub/rgba.png"]
    mask = np.array(Image.open(out / "masks" / "rgb.png"))
    color = np.array(Image.open(out / "color" / "rgb.png").convert("RGB"))
    np.testing.assert_array_equal(color, np.array(colors, np.uint8)[mask])


def test_video_round_trip(model_dir, tmp_path, capsys):
    import imageio_ffmpeg

    rng = np.random.default_rng(0)
    frames = [np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(5)]
    writer = imageio_ffmpeg.write_frames(str(tmp_path / "clip.mp4"), (64, 48), fps=5, macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    out = tmp_path / "out"
    assert _predict(model_dir, tmp_path / "clip.mp4", out, "--batch-size", "2", "--save-frames", "--progress") == 0
    assert "5/5" in capsys.readouterr().err  # the progress bar counts frames, not videos
    seg = Segmenter.from_pretrained(model_dir)
    fps, count, decoded_input = read_video(tmp_path / "clip.mp4")
    assert (fps, count) == (5.0, 5)
    masks = [seg(f) for f in decoded_input]
    expected = [colorize(m, eseg.palette.get_palette(None, 4)) for m in masks]
    for kind in ("color", "overlay"):
        fps, _, decoded = read_video(out / kind / "clip.mp4")
        decoded = list(decoded)
        assert fps == 5 and len(decoded) == 5 and decoded[0].shape == (48, 64, 3)
    # H.264 is lossy: the color video stays close to the colorized masks, frame by frame.
    _, _, color_frames = read_video(out / "color" / "clip.mp4")
    for got, want in zip(color_frames, expected):
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 12
    # per-frame masks are lossless: exactly the Segmenter's masks of the decoded frames
    saved = sorted((out / "masks" / "clip").glob("*.png"))
    assert [p.name for p in saved] == [f"{i:06d}.png" for i in range(5)]
    for path, mask in zip(saved, masks):
        np.testing.assert_array_equal(np.array(Image.open(path)), mask)


def test_real_photo(tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=19, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    model_dir = model.save_pretrained(tmp_path / "city")
    photo = skimage_data.coffee()  # 400 x 600 RGB photograph
    Image.fromarray(photo).save(tmp_path / "coffee.jpg", quality=95)
    out = tmp_path / "out"
    assert _predict(model_dir, tmp_path / "coffee.jpg", out, "--palette", "cityscapes", "--save-probs") == 0
    mask = np.array(Image.open(out / "masks" / "coffee.png"))
    expected = eseg.Segmenter.from_pretrained(model_dir)(tmp_path / "coffee.jpg")  # the library call
    np.testing.assert_array_equal(mask, expected)
    colors = eseg.palette.get_palette("cityscapes", 19)
    np.testing.assert_array_equal(np.array(Image.open(out / "color" / "coffee.png").convert("RGB")), colors[mask])
    assert np.array(Image.open(out / "overlay" / "coffee.jpg")).shape == (400, 600, 3)
    probs = np.load(out / "probs" / "coffee.npy")
    assert probs.shape == (19, 400, 600)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    # the mask's class is a most probable one (logits 1 ulp apart can round to equal probabilities)
    np.testing.assert_array_equal(np.take_along_axis(probs, mask[None].astype(np.int64), 0)[0], probs.max(axis=0))
    legend = Image.open(out / "legend.png")
    assert legend.size[1] > 19 * 15  # one row per Cityscapes class
    with capsys.disabled():
        print(f"\n[predict on skimage.data.coffee()] outputs: {sorted(p.relative_to(out).as_posix() for p in out.rglob('*.*'))}")


def test_inputs_sharing_a_stem_never_overwrite_each_other(model_dir, tmp_path, capsys):
    """photo.png and photo.jpg in one folder, and photo.png in two folders: four outputs."""
    rng = np.random.default_rng(3)
    sizes = {"a/photo.png": (20, 30), "a/photo.jpg": (22, 33), "b/photo.png": (24, 36), "a/other.png": (10, 12)}
    for rel, size in sizes.items():
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / "in" / rel)
    out = tmp_path / "out"
    assert _predict(model_dir, tmp_path / "in", out) == 0
    assert "predicted 4 of 4" in capsys.readouterr().out
    written = sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png"))
    assert written == ["a/other.png", "a/photo.jpg.png", "a/photo.png.png", "b/photo.png"]
    assert np.array(Image.open(out / "masks" / "a" / "photo.jpg.png")).shape == (22, 33)
    assert np.array(Image.open(out / "masks" / "a" / "photo.png.png")).shape == (20, 30)
