"""The low-resolution argmax rule equals argmax(F.interpolate(...)) in fp32, pixel for pixel."""
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eseg.inference import lowres
from eseg.inference.lowres import Upsample, fma32, kernel_arithmetic, lowres_argmax, reference_mask
from eseg.models.padding import pad_to_multiple

from .conftest import tiny_model

LOGIT_STRIDE = 4  # ESeg's logits: stride 4 of the padded input
SIZES = [(97, 203), (1, 1), (333, 777), (64, 128), (31, 5)]


@pytest.fixture(autouse=True)
def _always_the_rule(monkeypatch):
    """Noise-like test logits have most cells disagreeing, where the rule would hand over to
    torch: make it compute them itself (test_dense_logits_are_left_to_torch covers the hand-over)."""
    monkeypatch.setattr(lowres, "DENSE", 1.1)


def torch_mask(logits: np.ndarray, size, crop=None, align_corners=False) -> np.ndarray:
    """The oracle, written out here rather than taken from the module under test."""
    up = F.interpolate(torch.from_numpy(logits)[None], size=size, mode="bilinear", align_corners=align_corners)[0]
    if crop is not None:
        up = up[:, : crop[0], : crop[1]]
    return up.argmax(dim=0).numpy()


def model_geometry(image_size, input_stride=32):
    upsample = Upsample.model_forward(image_size, input_stride)
    low = (upsample.size[0] // LOGIT_STRIDE, upsample.size[1] // LOGIT_STRIDE)
    return upsample, low


def random_logits(shape, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def smooth_logits(num_classes, low, seed=0):
    """Large regions with noisy borders, like a segmentation network's."""
    coarse = torch.from_numpy(random_logits((1, num_classes, 3, 5), seed, 4.0))
    smooth = F.interpolate(coarse, size=low, mode="bicubic", align_corners=False)[0]
    return (smooth + 0.2 * torch.from_numpy(random_logits(smooth.shape, seed + 1, 1.0))).numpy()


def tie_prone(num_classes, low, seed=0):
    """Few distinct values (multiples of 0.1): many exact ties, and many sums that rounding makes
    equal or unequal, so the kernel's exact arithmetic decides the argmax."""
    values = np.random.default_rng(seed).integers(-3, 4, (num_classes, *low))
    return (values * np.float32(0.1)).astype(np.float32)


def test_this_torch_is_reproduced_bit_for_bit():
    # otherwise every test below would only check the fallback (torch itself)
    assert kernel_arithmetic() in ("fused", "plain")


@pytest.mark.parametrize("image_size", SIZES)
@pytest.mark.parametrize("num_classes", [8, 19])
def test_random_logits_with_padding_and_crop(image_size, num_classes, monkeypatch):
    upsample, low = model_geometry(image_size)
    x = random_logits((num_classes, *low), seed=sum(image_size))
    if sum(upsample.size) > lowres.SMALL_OUTPUT:  # torch's generic kernel: the rule computes it itself
        monkeypatch.setattr(lowres, "reference_mask", None)
    mask = lowres_argmax(x, upsample)
    assert mask.shape == image_size and mask.dtype == np.uint8
    assert np.array_equal(mask, torch_mask(x, upsample.size, image_size))


@pytest.mark.parametrize("image_size", SIZES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_smooth_logits(image_size, align_corners):
    upsample, low = model_geometry(image_size)
    upsample = Upsample(upsample.size, upsample.crop, align_corners)
    x = smooth_logits(8, low)
    assert np.array_equal(lowres_argmax(x, upsample), torch_mask(x, upsample.size, image_size, align_corners))


@pytest.mark.parametrize("image_size", [(97, 203), (333, 777), (1, 1), (40, 33)])
def test_a_tiny_eseg_models_own_forward(image_size):
    """The reference here is the model itself: forward() pads, upsamples and crops."""
    model = tiny_model(num_classes=6).eval()
    image = torch.randn(2, 3, *image_size)
    with torch.inference_mode():
        low = model.forward_logits(pad_to_multiple(image, model.input_stride))
        expected = model(image).argmax(dim=1).numpy()
    masks = lowres_argmax(low, Upsample.model_forward(image_size, model.input_stride))
    assert masks.shape == (2, *image_size)
    assert np.array_equal(masks, expected)


@pytest.mark.parametrize("upsample,low", [
    (Upsample.model_forward((97, 203), 32), (32, 56)),  # stride 4: dyadic weights, exact ties
    (Upsample((97, 203), None, True), (25, 51)),  # align_corners: rounded weights
    (Upsample.resize_to((333, 777)), (25, 51)),  # an odd ratio
    (Upsample((300, 160), (299, 150), False, (12.5, 6.4)), (24, 25)),  # F.interpolate(scale_factor=...)
])
@pytest.mark.parametrize("seed", [0, 1])
def test_ties_follow_torchs_first_index_rule(upsample, low, seed):
    for x in (tie_prone(19, low, seed), np.random.default_rng(seed).integers(0, 2, (8, *low)).astype(np.float32)):
        expected = reference_mask(x, upsample)
        if upsample.scale_factor is None:
            assert np.array_equal(expected, torch_mask(x, upsample.size, upsample.crop, upsample.align_corners))
        assert np.array_equal(lowres_argmax(x, upsample), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_tie_cases_do_catch_wrong_arithmetic_or_a_missing_margin(monkeypatch, seed):
    """Guard for the tests above: on these logits, reproducing the wrong kernel arithmetic, or
    trusting corners without the rounding margin, does change pixels."""
    upsample, x = Upsample((97, 203), None, True), tie_prone(19, (25, 51), seed)
    expected = torch_mask(x, (97, 203), None, True)
    assert np.array_equal(lowres_argmax(x, upsample), expected)
    wrong = {"fused": "plain", "plain": "fused"}[kernel_arithmetic()]
    with monkeypatch.context() as patched:
        patched.setattr(lowres, "kernel_arithmetic", lambda: wrong)
        assert (lowres_argmax(x, upsample) != expected).sum() > 0
    with monkeypatch.context() as patched:
        patched.setattr(lowres, "MARGIN", 0.0)
        assert (lowres_argmax(x, upsample) != expected).sum() > 0


def test_a_segmenter_resize_is_one_resize_to_the_images_size():
    """A fixed 64x128 graph on a 97x203 image: the low-res logits go straight to 97x203."""
    low = smooth_logits(19, (16, 32), seed=3)
    mask = lowres_argmax(low, Upsample.resize_to((97, 203)))
    assert np.array_equal(mask, torch_mask(low, (97, 203)))


def test_batches_tensors_and_dtypes():
    x = torch.from_numpy(random_logits((3, 8, 16, 32), seed=5))
    upsample = Upsample.model_forward((61, 128), 32)
    expected = torch.stack([torch.from_numpy(torch_mask(v.numpy(), upsample.size, (61, 128))) for v in x]).numpy()
    assert np.array_equal(lowres_argmax(x, upsample), expected)
    assert np.array_equal(lowres_argmax(x[1], upsample), expected[1])  # (C, h, w) -> (H, W)
    assert lowres_argmax(x[:1], upsample).shape == (1, 61, 128)
    half = x.half()  # reduced precision is upcast: the reference is fp32 of the same values
    assert np.array_equal(lowres_argmax(half, upsample), reference_mask(half.float(), upsample))
    many = torch.from_numpy(random_logits((300, 4, 8), seed=6))
    assert lowres_argmax(many, Upsample((16, 128))).dtype == np.int32  # over 256 classes


def test_other_torch_kernels_fall_back_to_torch(monkeypatch):
    """Channels-last logits, 3 classes on one thread, tiny outputs and non-finite values take
    torch's other code paths: the rule then asks torch itself."""
    calls = []
    real = lowres.reference_mask
    monkeypatch.setattr(lowres, "reference_mask", lambda *a: calls.append(1) or real(*a))
    x = torch.from_numpy(random_logits((1, 8, 16, 32), seed=7))
    upsample = Upsample((64, 128))
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert np.array_equal(lowres_argmax(channels_last, upsample)[0], F.interpolate(
        channels_last, size=(64, 128), mode="bilinear").argmax(1)[0].numpy())
    assert len(calls) == 1
    lowres_argmax(x, Upsample((40, 80)))  # 40 + 80 <= 128
    three = x[:, :3]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert np.array_equal(lowres_argmax(three, upsample)[0], torch_mask(three[0].numpy(), (64, 128)))
    finally:
        torch.set_num_threads(threads)
    infinite = x.clone()
    infinite[0, 2, 3, 4] = float("inf")
    assert np.array_equal(lowres_argmax(infinite, upsample)[0], torch_mask(infinite[0].numpy(), (64, 128)))
    assert len(calls) == 4
    calls.clear()
    lowres_argmax(x, upsample)
    assert calls == []


def test_dense_logits_are_left_to_torch(monkeypatch):
    monkeypatch.setattr(lowres, "DENSE", 0.5)
    calls = []
    real = lowres.reference_mask
    monkeypatch.setattr(lowres, "reference_mask", lambda *a: calls.append(1) or real(*a))
    upsample = Upsample((128, 256))
    noise, smooth = random_logits((8, 32, 64)), smooth_logits(8, (32, 64))
    assert np.array_equal(lowres_argmax(noise, upsample), torch_mask(noise, (128, 256)))
    assert len(calls) == 1
    assert np.array_equal(lowres_argmax(smooth, upsample), torch_mask(smooth, (128, 256)))
    assert len(calls) == 1


def test_fma32_rounds_once():
    """Against exact rational arithmetic, including a product on a float32 midpoint plus a tiny
    addend, which a plain float64 sum would round twice (to the midpoint, then to even)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 2000)).astype(np.float32)
    c = (rng.standard_normal(2000) * 10.0 ** rng.integers(-12, 3, 2000)).astype(np.float32)
    a[:2], b[:2], c[:2] = np.float32(1 + 2**-12), np.float32(1 + 2**-12), np.float32(2**-60)  # a*b = 1 + 2^-11 + 2^-24
    c[1] = -c[1]
    got = fma32(a, b, c)
    for x, y, z, r in zip(a, b, c, got):
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        below, above = np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf))
        error = abs(Fraction(float(r)) - exact)
        assert error <= abs(Fraction(float(below)) - exact) and error <= abs(Fraction(float(above)) - exact)
    assert got[0] == np.float32(1 + 2**-11 + 2**-23)  # just above the midpoint: up, not to the even 1 + 2^-11
    assert got[1] == np.float32(1 + 2**-11)


def test_a_crop_larger_than_the_upsample_is_refused():
    with pytest.raises(ValueError, match="cannot be cropped"):
        Upsample((64, 64), (65, 64))
    with pytest.raises(ValueError, match="logits must be"):
        lowres_argmax(np.zeros((4, 4)), Upsample((8, 8)))
