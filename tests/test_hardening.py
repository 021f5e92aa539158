"""Hardening: a fuzz corpus of broken images made here (bit flips, byte flips in the header,
truncations at many offsets, huge header sizes, wrong extensions, empty files, folders named like
images) through ``eseg predict``, ``Segmenter``, the image readers and the folder dataset read by
DataLoader workers; then a short training run that skips bad files, and one that refuses them.

The oracle of a good file is ``eseg.data.io.read_image``: whatever it decodes must be predicted,
whatever it refuses must be named, and nothing may end in a traceback.
"""
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from eseg.cli import main
from eseg.data import BadDataWarning, build_dataset
from eseg.data.io import header_size, read_image
from eseg.errors import DataError
from eseg.inference.predict import collect_sources
from eseg.inference.segmenter import Segmenter

from .conftest import tiny_model
from .test_train import tiny_config

H, W = 24, 32
NUM_CLASSES = 4
WORKER_TEXT = ("Traceback", "DataLoader worker", "Original")
OUTPUT_SUFFIXES = {"masks": ".png", "color": ".png", "overlay": ".jpg"}  # what eseg predict writes by default


# --- making broken files ------------------------------------------------------------------------
def png_with_size(data: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR size replaced and the chunk's CRC fixed: only the size is wrong."""
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """The baseline JPEG with its SOF0 frame size replaced (marker, length, precision, H, W)."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def write_good_images(folder: Path, rng) -> dict[str, tuple[int, int]]:
    """RGB, gray and palette PNGs, RGB and gray JPEGs, EXIF-rotated JPEG and PNG: {name: (H, W) shown}."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "pal.png")
    Image.fromarray(rgb).save(folder / "rgb.jpg", quality=90)
    Image.fromarray(rgb[..., 1]).save(folder / "gray.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display: width and height swap
    Image.fromarray(rgb[:20]).save(folder / "rot.jpg", exif=exif)
    Image.fromarray(rgb[:, :20]).save(folder / "rot.png", exif=exif)
    return {"rgb.png": (H, W), "gray.png": (H, W), "pal.png": (H, W), "rgb.jpg": (H, W), "gray.jpg": (H, W),
            "rot.jpg": (W, 20), "rot.png": (20, H)}


def broken_variants(folder: Path, names, rng) -> dict[str, bytes]:
    """{file name: bytes}: flips and truncations of the good files, and files broken by design."""
    out = {}
    for name in names:
        data = (folder / name).read_bytes()
        stem, ext = name.rsplit(".", 1)
        for _ in range(5):  # single-bit flips anywhere
            offset = int(rng.integers(0, len(data)))
            flipped = bytearray(data)
            flipped[offset] ^= 1 << int(rng.integers(0, 8))
            out[f"bit_{stem}_{offset}.{ext}"] = bytes(flipped)
        for _ in range(2):  # whole-byte flips in the header
            offset = int(rng.integers(0, 32))
            flipped = bytearray(data)
            flipped[offset] ^= 0xFF
            out[f"byte_{stem}_{offset}.{ext}"] = bytes(flipped)
    for name in ("rgb.png", "rgb.jpg"):  # 20 truncations from 0 bytes to 1 byte short
        data = (folder / name).read_bytes()
        stem, ext = name.rsplit(".", 1)
        for size in np.linspace(0, len(data) - 1, 20).astype(int):
            out[f"cut_{stem}_{size}.{ext}"] = data[:size]
    out["bomb.png"] = png_with_size((folder / "rgb.png").read_bytes(), 100_000, 100_000)
    out["bomb.jpg"] = jpeg_with_size((folder / "rgb.jpg").read_bytes(), 65_500, 65_500)
    out["text.png"] = b"this is a text file, not an image\n"
    out["empty.png"] = b""
    out["empty.jpg"] = b""
    out["text.mp4"] = b"not a video either\n"  # predict takes it for a video: still named, not fatal
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(folder, {file: (H, W) or None}): every file of the corpus with read_image's verdict."""
    rng = np.random.default_rng(2024)
    folder = tmp_path_factory.mktemp("fuzz") / "in"
    good = write_good_images(folder, rng)
    for name, data in broken_variants(folder, sorted(good), rng).items():
        (folder / name).write_bytes(data)
    (folder / "png_as.jpg").write_bytes((folder / "rgb.png").read_bytes())  # wrong extension, valid image
    (folder / "dir.png").mkdir()  # a folder named like an image, holding a good image
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / "dir.png" / "inner.png")
    verdicts = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            verdicts[path] = read_image(path).shape[:2]
        except DataError:
            verdicts[path] = None
    return folder, verdicts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return tiny_model(NUM_CLASSES, max_level=6).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


# --- the readers ----------------------------------------------------------------------------------
def test_corpus_is_broad_and_read_image_only_raises_data_error(corpus):
    folder, verdicts = corpus
    assert 90 <= len(verdicts) <= 120
    good = {p.relative_to(folder).as_posix() for p, size in verdicts.items() if size}
    bad = {p.relative_to(folder).as_posix() for p, size in verdicts.items() if size is None}
    assert {"rgb.png", "gray.png", "pal.png", "rgb.jpg", "gray.jpg", "rot.jpg", "rot.png", "png_as.jpg",
            "dir.png/inner.png"} <= good
    assert {"bomb.png", "bomb.jpg", "text.png", "empty.png", "empty.jpg", "cut_rgb_0.png"} <= bad
    assert len(bad) >= 50 and len(good) >= 12
    for path in [*verdicts, folder / "dir.png", folder / "missing.png"]:
        try:
            image = read_image(path)
        except DataError as exc:  # any other exception type fails the test with its traceback
            assert str(path) in str(exc), str(exc)
            assert "Traceback" not in str(exc)
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, path
            assert image.shape[:2] == verdicts[path]


def test_huge_header_sizes_are_decompression_bombs(corpus):
    folder, _ = corpus
    for name in ("bomb.png", "bomb.jpg"):
        with pytest.raises(DataError, match="claims more pixels") as info:
            read_image(folder / name)
        assert isinstance(info.value.__cause__, Image.DecompressionBombError)
        with pytest.raises(DataError, match=f"{name}.*claims more pixels"):
            header_size(folder / name)
    assert Image.open(folder / "rgb.png").size == (W, H)  # the bomb is rgb.png with only the size changed
    assert (folder / "bomb.png").read_bytes()[33:] == (folder / "rgb.png").read_bytes()[33:]


def test_header_size_agrees_with_read_image(corpus):
    """Exactly on every good file (EXIF rotation included); on a fuzzed file the header check may
    be stricter (a CRC it checks and decoding does not), never looser about the size."""
    folder, verdicts = corpus
    for name in ("rgb.png", "gray.png", "pal.png", "rgb.jpg", "gray.jpg", "rot.jpg", "rot.png", "png_as.jpg"):
        assert header_size(folder / name) == verdicts[folder / name], name
    assert verdicts[folder / "rot.jpg"] == (W, 20) and verdicts[folder / "rot.png"] == (20, H)
    for path, size in verdicts.items():
        try:
            header = header_size(path)
        except DataError as exc:
            assert str(path) in str(exc)
            continue
        if size is not None:
            assert header == size, path
    with pytest.raises(DataError, match="is a folder"):
        header_size(folder / "dir.png")


# --- predict and Segmenter ------------------------------------------------------------------------
def failure_lines(err: str) -> list[str]:
    lines = err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.endswith("input(s) failed:")]
    assert len(starts) == 1, err
    return [line.strip() for line in lines[starts[0] + 1 :] if line.startswith("  ")]


def test_predict_names_every_bad_file_and_predicts_every_good_one(corpus, model_dir, tmp_path, capsys):
    folder, verdicts = corpus
    out = tmp_path / "out"
    code = main(["predict", str(model_dir), "--source", str(folder), "--out", str(out), "--device", "cpu",
                 "--no-progress", "--batch-size", "4"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    bad = {str(p) for p, size in verdicts.items() if size is None}
    failed = failure_lines(captured.err)
    assert sorted(line.split(": ", 1)[0] for line in failed) == sorted(bad)  # each bad file once, no good one
    assert f"{len(bad)} input(s) failed" in captured.err
    assert f"predicted {len(verdicts) - len(bad)} of {len(verdicts)} input(s)" in captured.out
    stems = dict(collect_sources(folder))
    assert set(stems) == set(verdicts)  # the folder named dir.png is searched, not taken for an image
    for path, size in verdicts.items():
        outputs = [out / kind / f"{stems[path]}{suffix}" for kind, suffix in OUTPUT_SUFFIXES.items()]
        if size is None:
            assert not any(p.exists() for p in outputs), path
            continue
        mask = np.array(Image.open(outputs[0]))
        assert mask.shape == size and mask.max() < NUM_CLASSES, path
        for color in outputs[1:]:
            assert np.array(Image.open(color).convert("RGB")).shape == (*size, 3), color
    assert (out / "masks" / "png_as.png").is_file() and (out / "masks" / "dir.png" / "inner.png").is_file()
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {f"{kind}/{stems[path].as_posix()}{suffix}" for path, size in verdicts.items() if size
                for kind, suffix in OUTPUT_SUFFIXES.items()}
    assert written == expected | {"legend.png"}  # nothing for a bad file, no temporary file left behind


def open_lazily(path: Path):
    """PIL's Image.open (header only), or None where even that fails."""
    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def test_segmenter_returns_a_mask_or_names_the_file(corpus, model_dir):
    """Given the path, or the PIL image Image.open made of it (decoded only by the Segmenter)."""
    folder, verdicts = corpus
    seg = Segmenter.from_pretrained(model_dir, device="cpu")
    for path, size in [*verdicts.items(), (folder / "dir.png", None)]:
        inputs = [path] + [image for image in [open_lazily(path)] if image is not None]
        if size is None:
            for image in inputs:
                with pytest.raises(DataError) as info:
                    seg(image)
                assert str(path) in str(info.value) and "Traceback" not in str(info.value)
            if path.name.startswith("cut_") and len(inputs) == 2:  # decoding a cut file is no "EXIF" problem
                assert "corrupt or truncated" in str(info.value), info.value
        else:
            masks = [seg(image) for image in inputs]
            assert masks[0].shape == size and masks[0].dtype == np.uint8 and masks[0].max() < NUM_CLASSES, path
            np.testing.assert_array_equal(masks[-1], masks[0])


# --- the folder dataset, read in DataLoader workers -----------------------------------------------
def jpeg_bytes(rng, size=(H, W)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_sample(root: Path, split: str, name: str, rng, size=(H, W), ext="png") -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, size, dtype=np.uint8)
    for folder in ("images", "masks"):
        (root / folder / split).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / split / f"{name}.{ext}")
    Image.fromarray(mask, mode="L").save(root / "masks" / split / f"{name}.png")
    (root / "classes.yaml").write_text("names: [road, car, sky]\n")
    return image, mask


def write_broken_dataset(root: Path) -> tuple[dict, dict]:
    """Good samples a..d; broken e..j: ({name: (image, mask)}, {name: broken file}). e..i are
    caught by a header check, j only by decoding (a JPEG cut after its header)."""
    rng = np.random.default_rng(7)
    good = {name: write_sample(root, "train", name, rng) for name in "abcd"}
    for name in "efghi":
        write_sample(root, "train", name, rng)
    images, masks = root / "images" / "train", root / "masks" / "train"
    png = (images / "a.png").read_bytes()
    (images / "e.png").write_bytes(png[: len(png) // 2])  # truncated
    (images / "f.png").write_bytes(png_with_size(png, 100_000, 100_000))  # decompression bomb
    (images / "g.png").write_bytes(b"not an image at all")  # text named .png
    (masks / "h.png").write_bytes(b"")  # empty mask
    (images / "i.png").unlink()
    (images / "i.jpg").write_bytes(jpeg_with_size(jpeg_bytes(rng), 65_500, 65_500))  # huge SOF
    write_sample(root, "train", "j", rng, ext="jpg")
    data = (images / "j.jpg").read_bytes()
    (images / "j.jpg").write_bytes(data[: len(data) * 2 // 3])
    (root / "masks" / "train" / "k.png").mkdir()  # a folder named like a mask, next to no image: ignored
    broken = {"e": images / "e.png", "f": images / "f.png", "g": images / "g.png", "h": masks / "h.png",
              "i": images / "i.jpg", "j": images / "j.jpg"}
    return good, broken


def named_files(text: str, broken: dict) -> set[str]:
    return {name for name, path in broken.items() if str(path) in text}


def test_check_files_names_every_header_broken_file_in_one_error(tmp_path):
    good, broken = write_broken_dataset(tmp_path / "ds")
    dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "train")
    assert [dataset.sample_name(i) for i in range(len(dataset))] == list("abcdefghij")
    assert header_size(broken["j"]) == (H, W)  # j's header is fine: only decoding finds it
    with pytest.raises(DataError) as info:
        dataset.check_files()
    message = str(info.value)
    assert message.startswith("5 bad file(s) in FolderDataset[train]")
    assert named_files(message, broken) == set("efghi")
    assert not any(f"{name}.png" in message for name in good)  # nothing else is named
    assert "claims more pixels" in message and "on_bad_data: skip" in message
    assert not any(text in message for text in WORKER_TEXT)
    with pytest.raises(DataError, match=r"j\.jpg.*corrupt or truncated"):
        dataset.load(9)


def read_all(dataset, workers: int = 2) -> list[dict]:
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            items = list(loader)
        except DataError as exc:
            # drop the frames holding the loader's iterator, so its workers are shut down now rather
            # than by a later garbage collection (which waits seconds for each worker)
            raise exc.with_traceback(None)
    assert [w for w in record if issubclass(w.category, BadDataWarning)] == []  # workers never warn
    return items


def assert_only_good_samples(items: list[dict], good: dict) -> None:
    names = "abcdefghij"
    for item in items:
        name = names[int(item["index"])]
        assert name in good, item["index"]
        image, mask = good[name]
        np.testing.assert_array_equal((item["image"].permute(1, 2, 0).numpy() * 255).round(), image)
        np.testing.assert_array_equal(item["mask"].numpy(), mask)
    assert {names[int(item["index"])] for item in items} == set(good)


def test_skip_through_dataloader_workers_yields_only_good_samples(tmp_path):
    good, broken = write_broken_dataset(tmp_path / "ds")
    dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "on_bad_data": "skip"}, "train")
    items = read_all(dataset)
    assert len(items) == 10
    assert_only_good_samples(items, good)
    reasons = {reason for item in items for reason in item["skipped"]}
    assert named_files("\n".join(reasons), broken) == set(broken)
    for reason in reasons:  # one file per reason, no worker traceback
        assert len(named_files(reason, broken)) == 1 and not any(t in reason for t in WORKER_TEXT), reason
    # a bad sample gives the next good one in index order (wrapping round to a); good ones skip nothing
    assert [int(item["index"]) for item in items] == [0, 1, 2, 3, 0, 0, 0, 0, 0, 0]
    assert [item["skipped"] for item in items[:4]] == [[]] * 4
    # as the trainer does it: the header check first (warned once each, in this process), then workers
    fresh = build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "on_bad_data": "skip"}, "train")
    with pytest.warns(BadDataWarning) as record:
        problems = fresh.check_files()
    assert sorted(problems) == [4, 5, 6, 7, 8]
    warned = [named_files(str(w.message), broken) for w in record if issubclass(w.category, BadDataWarning)]
    assert sorted(name for names in warned for name in names) == list("efghi")  # one warning each
    items = read_all(fresh)
    assert_only_good_samples(items, good)
    assert named_files("\n".join(reason for item in items for reason in item["skipped"]), broken) == {"j"}


def test_worker_errors_carry_only_the_original_message(tmp_path):
    good, broken = write_broken_dataset(tmp_path / "ds")
    dataset = build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "train")
    with pytest.raises(DataError) as info:
        read_all(dataset)
    message = str(info.value)
    assert named_files(message, broken) == {"e"} and "corrupt or truncated" in message
    assert not any(text in message for text in WORKER_TEXT) and "\n" not in message
    root = tmp_path / "all_bad"  # skipping runs out of good samples in a worker: still one message
    rng = np.random.default_rng(1)
    for name in "xy":
        write_sample(root, "train", name, rng)
        (root / "masks" / "train" / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DataError) as info:
        read_all(build_dataset({"type": "folder", "root": str(root), "on_bad_data": "skip"}, "train"))
    message = str(info.value)
    assert message.startswith("FolderDataset[train]: every one of the 2 samples is bad")
    assert all(str(root / "masks" / "train" / f"{name}.png") in message for name in "xy")
    assert not any(text in message for text in WORKER_TEXT)


# --- training with bad files ----------------------------------------------------------------------
def write_training_data(root: Path) -> dict[str, Path]:
    """Train: 2 good, a text file named .png (found by the header check) and a JPEG cut after its
    header (found by a DataLoader worker); val: 2 good and a cut JPEG (found while evaluating)."""
    rng = np.random.default_rng(11)
    for split, names in (("train", "abcd"), ("val", "uvw")):
        for name in names:
            write_sample(root, split, name, rng, size=(64, 64), ext="jpg" if name in "dw" else "png")
    broken = {"c": root / "images" / "train" / "c.png", "d": root / "images" / "train" / "d.jpg",
              "w": root / "images" / "val" / "w.jpg"}
    broken["c"].write_text("a text file named like an image\n")
    for name in "dw":
        data = broken[name].read_bytes()
        broken[name].write_bytes(data[: len(data) * 2 // 3])
        assert header_size(broken[name]) == (64, 64)  # only decoding finds these two
    return broken


def train_config(tmp_path: Path, root: Path, policy: str) -> Path:
    dataset = {"type": "folder", "root": str(root), "on_bad_data": policy}
    return tiny_config(tmp_path, train={"steps": 2, "checkpoint_interval": 2},
                       data={"dataset": dataset, "num_workers": 2}, eval={"num_predictions": 0})


@pytest.fixture(scope="module")
def skip_run(tmp_path_factory):
    """One 2-step run under on_bad_data: skip with 2 DataLoader workers: (broken files, run folder,
    exit code, console output, BadDataWarning messages)."""
    tmp_path = tmp_path_factory.mktemp("skip_run")
    broken = write_training_data(tmp_path / "ds")
    run, stdout = tmp_path / "run", io.StringIO()
    with warnings.catch_warnings(record=True) as record, contextlib.redirect_stdout(stdout):
        warnings.simplefilter("always")
        code = main(["train", str(train_config(tmp_path, tmp_path / "ds", "skip")), "--out", str(run)])
    messages = [str(w.message) for w in record if issubclass(w.category, BadDataWarning)]
    return broken, run, code, stdout.getvalue(), messages


def test_training_skips_bad_files_and_counts_them_per_split(skip_run):
    broken, run, code, out, messages = skip_run
    assert code == 0
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["skipped_files"] == {"train": 2, "val": 1}
    assert "skipped bad files (on_bad_data: skip): train 2, val 1" in out
    for name in "cd":  # train: c found by the header check here, d by a worker: one warning each
        assert sum(str(broken[name]) in m for m in messages) == 1, (name, messages)
    assert all(named_files(m, broken) for m in messages)  # no warning about a good file
    assert not any(text in m for m in messages for text in WORKER_TEXT)


def test_training_warns_once_about_each_bad_file(skip_run):
    broken, _, _, _, messages = skip_run
    assert {name: sum(str(path) in m for m in messages) for name, path in broken.items()} == {"c": 1, "d": 1, "w": 1}


def test_training_refuses_bad_files_before_the_first_step(tmp_path, capsys):
    broken = write_training_data(tmp_path / "ds")
    config = train_config(tmp_path, tmp_path / "ds", "error")
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(broken["c"]) in err and "1 bad file(s) in FolderDataset[train]" in err
    assert not any(text in err for text in WORKER_TEXT)
    assert not run.exists() or list(run.iterdir()) == []  # refused before the model, loader or any file
    # with the header-broken file gone, a worker meets the cut JPEG mid-run: the command prints its
    # one message (a separate process: the real exit, and no loader left behind in this one)
    broken["c"].unlink()
    result = subprocess.run([sys.executable, "-m", "eseg.cli", "train", str(config), "--out", str(tmp_path / "run2")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"eseg train: error: {broken['d']}: cannot decode image" in result.stderr
    assert not any(text in result.stderr + result.stdout for text in WORKER_TEXT)


def test_folder_dataset_refuses_two_files_with_one_stem(tmp_path):
    rng = np.random.default_rng(3)
    write_sample(tmp_path / "ds", "train", "a", rng)
    write_sample(tmp_path / "ds", "train", "b", rng)
    assert len(build_dataset({"type": "folder", "root": str(tmp_path / "ds")}, "train")) == 2
    images = tmp_path / "ds" / "images" / "train"
    (images / "a.jpg").write_bytes(jpeg_bytes(rng))  # which of a.jpg and a.png goes with masks/a.png?
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=r"a\.jpg and .*a\.png: two files with the stem 'a'"):
            build_dataset({"type": "folder", "root": str(tmp_path / "ds"), "on_bad_data": policy}, "train")
