"""Segmenter: whole / slide / TTA against direct model calls, batching, input types, runners."""
import numpy as np
import pytest
import torch
from PIL import Image

import eseg
from eseg.data.transforms import normalize
from eseg.errors import ConfigError, DataError
from eseg.inference.geometry import slide_windows
from eseg.inference.segmenter import Segmenter
from eseg.runtimes import load_runner
from eseg.runtimes.info import ModelInfo
from eseg.runtimes.torch import TorchRunner

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = eseg.create_model("eseg_lite_s", num_classes=NUM_CLASSES, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    return net.eval()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (97, 203, 3), dtype=np.uint8)  # odd size, no multiple of 64


def _direct(model, x):
    with torch.no_grad():
        return model(x[None])[0]


def _input(model, image):
    return normalize(image, model.config.mean, model.config.std)


def test_whole_equals_model_and_keeps_odd_size(model, image):
    seg = Segmenter(model)
    logits = seg.predict_logits(image)
    assert logits.shape == (NUM_CLASSES, 97, 203)
    torch.testing.assert_close(logits, _direct(model, _input(model, image)), rtol=0, atol=0)
    mask = seg(image)
    assert mask.shape == (97, 203) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, logits.argmax(0).numpy())


def test_whole_resized_to_a_size_resizes_logits_back(model, image):
    logits = Segmenter(model, size=(64, 128)).predict_logits(image)
    x = torch.nn.functional.interpolate(_input(model, image)[None], size=(64, 128), mode="bilinear", align_corners=False)[0]
    expected = torch.nn.functional.interpolate(_direct(model, x)[None], size=(97, 203), mode="bilinear", align_corners=False)[0]
    assert logits.shape == (NUM_CLASSES, 97, 203)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)


def test_slide_with_crop_equal_to_image_is_whole(model, image):
    whole = Segmenter(model).predict_logits(image)
    slide = Segmenter(model, mode="slide", crop=(97, 203), stride=(50, 50)).predict_logits(image)
    torch.testing.assert_close(slide, whole, rtol=0, atol=0)
    larger = Segmenter(model, mode="slide", crop=(128, 256)).predict_logits(image)  # crop past the image
    torch.testing.assert_close(larger, whole, rtol=0, atol=0)


def test_slide_averages_overlapping_windows(model, image):
    seg = Segmenter(model, mode="slide", crop=(97, 128), stride=(97, 75), batch_size=2)
    assert slide_windows(97, 203, (97, 128), (97, 75)) == [(0, 97, 0, 128), (0, 97, 75, 203)]
    x = _input(model, image)
    left, right = _direct(model, x[:, :, :128]), _direct(model, x[:, :, 75:])
    expected = torch.zeros(NUM_CLASSES, 97, 203)
    expected[:, :, :75] = left[:, :, :75]
    expected[:, :, 75:128] = (left[:, :, 75:] + right[:, :, :53]) / 2
    expected[:, :, 128:] = right[:, :, 53:]
    torch.testing.assert_close(seg.predict_logits(image), expected, rtol=0, atol=1e-5)


def test_slide_windows_cover_the_image_and_stay_inside():
    windows = slide_windows(100, 250, (64, 96), (40, 60))
    covered = np.zeros((100, 250), dtype=int)
    for y1, y2, x1, x2 in windows:
        assert 0 <= y1 < y2 <= 100 and 0 <= x1 < x2 <= 250 and (y2 - y1, x2 - x1) == (64, 96)
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1


def test_flip_tta_averages_flipped_logits(model, image):
    seg = Segmenter(model, scales=(1.0,), flip=True)
    x = _input(model, image)
    expected = (_direct(model, x) + _direct(model, x.flip(-1)).flip(-1)) / 2
    torch.testing.assert_close(seg.predict_logits(image), expected, rtol=0, atol=1e-6)


def test_tta_default_scales_shape_and_sanity(model, image):
    seg = Segmenter(model, mode="tta")
    assert seg.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and seg.flip
    logits = seg.predict_logits(image)
    assert logits.shape == (NUM_CLASSES, 97, 203) and torch.isfinite(logits).all()
    # A single scale-1 pass without flip is plain whole-image inference.
    one = Segmenter(model, mode="tta", scales=(1.0,), flip=False).predict_logits(image)
    torch.testing.assert_close(one, Segmenter(model).predict_logits(image), rtol=0, atol=0)
    # Averaging logits over passes: a scale the average is made of moves the result towards it.
    half = Segmenter(model, scales=(0.5,)).predict_logits(image)
    pair = Segmenter(model, scales=(0.5, 1.0)).predict_logits(image)
    torch.testing.assert_close(pair, (half + one) / 2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["whole", "tta"])
def test_batch_equals_single(model, mode):
    rng = np.random.default_rng(1)
    sizes = [(97, 203), (128, 250), (100, 190), (64, 64), (97, 203)]  # 1st and 3rd share a 128x256 canvas
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]
    options = {"scales": (0.75, 1.0)} if mode == "tta" else {}
    batched = Segmenter(model, mode=mode, batch_size=3, **options).predict_logits(images)
    single = Segmenter(model, mode=mode, batch_size=1, **options)
    for img, out in zip(images, batched):
        assert out.shape == (NUM_CLASSES, *img.shape[:2])
        torch.testing.assert_close(out, single.predict_logits(img), rtol=0, atol=1e-5)
    masks = Segmenter(model, mode=mode, batch_size=3, **options).predict_batch(images)
    assert [m.shape for m in masks] == sizes


def test_inputs_numpy_pil_path_gray_rgba(model, image, tmp_path):
    seg = Segmenter(model)
    expected = seg(image)
    Image.fromarray(image).save(tmp_path / "x.png")
    np.testing.assert_array_equal(seg(Image.fromarray(image)), expected)
    np.testing.assert_array_equal(seg(tmp_path / "x.png"), expected)
    np.testing.assert_array_equal(seg(str(tmp_path / "x.png")), expected)
    gray = image[..., 0]
    np.testing.assert_array_equal(seg(gray), seg(np.repeat(gray[..., None], 3, axis=2)))
    rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(seg(rgba), expected)
    probs = seg.predict_proba(image)
    assert probs.shape == (NUM_CLASSES, 97, 203)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    with pytest.raises(DataError):
        seg(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(DataError, match="the image is empty"):
        seg(np.zeros((0, 0, 3), np.uint8))


def test_from_pretrained_and_runner_table(model, image, tmp_path):
    model.save_pretrained(tmp_path / "m")
    seg = eseg.Segmenter.from_pretrained(tmp_path / "m", mode="slide", crop=64)
    assert seg.crop == (64, 64) and seg.stride == (43, 43)
    np.testing.assert_array_equal(eseg.Segmenter.from_pretrained(tmp_path / "m")(image), Segmenter(model)(image))
    with pytest.raises(ConfigError, match="unknown inference backend"):
        load_runner(tmp_path / "m", "tensorrt-nope")
    with pytest.raises(eseg.errors.CheckpointError, match="is not a model"):
        eseg.Segmenter.from_pretrained(tmp_path)
    with pytest.raises(eseg.errors.CheckpointError, match="does not exist"):
        eseg.Segmenter.from_pretrained(tmp_path / "missing")
    # any file of a saved model names its folder, train_state.pt included
    (tmp_path / "m" / "train_state.pt").write_bytes(b"")
    for name in ("config.json", "model.safetensors", "train_state.pt"):
        np.testing.assert_array_equal(eseg.Segmenter.from_pretrained(tmp_path / "m" / name)(image), Segmenter(model)(image))


class _FixedSizeRunner:
    """A runner that, like a static-shape ONNX graph, accepts one input size only."""

    def __init__(self, inner, size):
        self.inner = inner
        self.info = ModelInfo(inner.info.config, inner.info.input_stride, fixed_size=size)
        self.device = inner.device
        self.shapes = []

    def __call__(self, batch):
        self.shapes.append(tuple(batch.shape[-2:]))
        assert tuple(batch.shape[-2:]) == self.info.fixed_size
        return self.inner(batch)


def test_fixed_size_runner_gets_its_size(model, image):
    runner = _FixedSizeRunner(TorchRunner(model), (64, 128))
    out = Segmenter(runner).predict_logits(image)  # whole: resized to the fixed size and back
    torch.testing.assert_close(out, Segmenter(model, size=(64, 128)).predict_logits(image), rtol=0, atol=1e-6)
    slide = Segmenter(runner, mode="slide").predict_logits(image)  # slide: crop = fixed size, padded
    assert slide.shape == (NUM_CLASSES, 97, 203) and set(runner.shapes) == {(64, 128)}


def test_bad_options_raise_config_errors(model):
    with pytest.raises(ConfigError, match="mode"):
        Segmenter(model, mode="sliding")
    with pytest.raises(ConfigError, match="scales"):
        Segmenter(model, mode="tta", scales=(0.0,))
    with pytest.raises(ConfigError, match="crop"):
        Segmenter(model, mode="slide", crop=(0, 5))


def test_resolve_palette_reads_classes_files_and_dataset_specs(tmp_path):
    from eseg.inference.palettes import resolve_palette
    from eseg.palette import get_palette

    root = tmp_path / "ds"
    root.mkdir()
    (root / "classes.yaml").write_text("names: [bg, cat]\ncolors: [[0, 0, 0], [250, 10, 20]]\n")
    (tmp_path / "synthetic.yaml").write_text("type: synthetic\n")
    (tmp_path / "folder.yaml").write_text(f"dataset: {{type: folder, root: {root}}}\n")
    (tmp_path / "no_classes.yaml").write_text("type: folder\n")

    colors, names = resolve_palette(root / "classes.yaml", 2, None)
    assert names == ["bg", "cat"] and colors[1].tolist() == [250, 10, 20]
    assert resolve_palette(root, 2, None)[1] == ["bg", "cat"]  # the dataset root finds its classes file
    assert resolve_palette(tmp_path / "folder.yaml", 2, None)[1] == ["bg", "cat"]  # {dataset: {...}} unwrapped
    colors, names = resolve_palette(tmp_path / "synthetic.yaml", 8, None)
    assert names[:2] == ["road", "sidewalk"] and np.array_equal(colors, get_palette("synthetic", 8))
    with pytest.raises(ConfigError, match="needs 'root'"):
        resolve_palette(tmp_path / "no_classes.yaml", 2, None)
    with pytest.raises(ConfigError, match="lists 2 classes but the model predicts 3"):
        resolve_palette(root / "classes.yaml", 3, None)
