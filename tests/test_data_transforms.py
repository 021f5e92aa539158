"""Joint transforms keep image and mask aligned: the image's colours encode the label, so after
scale/crop/flip the label decoded from the image must equal the transformed mask."""
import numpy as np
import pytest
import torch

from eseg.data.transforms import build_eval_transform, build_train_transform

# well separated, non-black colours: class k is COLORS[k]
COLORS = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30], [30, 230, 230], [230, 30, 230]], np.uint8)
IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def _blocky_scene(seed, height=48, width=72, block=12):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(COLORS), (height // block, width // block))
    label = np.kron(coarse, np.ones((block, block), dtype=np.int64))
    return COLORS[label], label


def _decode(image_t):
    """Nearest palette colour of each pixel of a (3, H, W) image in [0, 1]."""
    pixels = image_t.permute(1, 2, 0).numpy() * 255.0
    dist = ((pixels[:, :, None, :] - COLORS[None, None].astype(np.float32)) ** 2).sum(-1)
    return dist.argmin(-1)


def _interior(mask, radius=2):
    """Pixels whose (2r+1)^2 neighbourhood holds a single label (resampling blurs only edges)."""
    padded = np.pad(mask, radius, mode="edge")
    height, width = mask.shape
    same = np.ones_like(mask, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy:dy + height, dx:dx + width] == mask
    return same


@pytest.mark.parametrize("seed", range(6))
def test_scale_crop_flip_keep_image_and_mask_aligned(seed):
    torch.manual_seed(seed)
    image, label = _blocky_scene(seed)
    transform = build_train_transform(crop_size=(40, 56), scale_range=(0.5, 2.0), **IDENTITY)
    image_t, mask_t = transform(image, label)
    assert image_t.dtype == torch.float32 and image_t.shape == (3, 40, 56)
    assert mask_t.dtype == torch.int64 and mask_t.shape == (40, 56)
    mask = mask_t.numpy()
    labelled = (mask != 255) & _interior(mask)
    assert labelled.sum() > 60
    np.testing.assert_array_equal(_decode(image_t)[labelled], mask[labelled])
    assert set(np.unique(mask)) <= set(range(len(COLORS))) | {255}  # nearest-neighbour: no new ids


def test_crop_pads_image_with_zero_and_mask_with_ignore():
    torch.manual_seed(0)
    image, label = _blocky_scene(1)
    transform = build_train_transform(crop_size=(64, 96), scale_range=(0.5, 0.5), hflip=False,
                                      ignore_index=200, **IDENTITY)
    image_t, mask_t = transform(image, label)
    padded = mask_t.numpy() == 200
    assert padded.sum() == 64 * 96 - 24 * 36  # everything outside the half-size image
    assert (image_t[:, torch.from_numpy(padded)] == 0).all()
    assert (image_t[:, ~torch.from_numpy(padded)] > 0).all()


def test_hflip_flips_both_and_happens_about_half_the_time():
    image, label = _blocky_scene(2)
    transform = build_train_transform(crop_size=(48, 72), scale_range=(1.0, 1.0), **IDENTITY)
    flipped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        image_t, mask_t = transform(image, label)
        if torch.equal(mask_t, torch.from_numpy(label)):
            expected = image
        else:
            np.testing.assert_array_equal(mask_t.numpy(), label[:, ::-1])
            expected, flipped = image[:, ::-1], flipped + 1
        np.testing.assert_allclose(image_t.permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    assert 3 <= flipped <= 17


def test_color_jitter_changes_only_the_image():
    torch.manual_seed(0)
    image, label = _blocky_scene(3)
    transform = build_train_transform(crop_size=(48, 72), scale_range=(1.0, 1.0), hflip=False,
                                      color_jitter=0.4, **IDENTITY)
    image_t, mask_t = transform(image, label)
    np.testing.assert_array_equal(mask_t.numpy(), label)
    assert not np.allclose(image_t.permute(1, 2, 0).numpy() * 255, image, atol=1)


def test_eval_transform_normalizes_exactly():
    image, label = _blocky_scene(4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image_t, mask_t = build_eval_transform(mean=mean, std=std)(image, label)
    expected = (image.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(image_t.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(mask_t.numpy(), label)


def test_normalize_is_bit_for_bit_the_tensor_formula_and_names_a_bad_shape():
    from eseg.data.transforms import normalize, normalize_tensor
    from eseg.errors import DataError

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    oracle = normalize_tensor(torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0), mean, std)
    out = normalize(image, mean, std)
    assert out.dtype == torch.float32 and out.shape == (3, 37, 53) and out.is_contiguous()
    assert torch.equal(out, oracle)
    assert torch.equal(normalize(image[:, ::-1], (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)),  # a strided view, other stats
                       normalize_tensor(torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1).float() / 255,
                                        (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)))
    with pytest.raises(DataError, match=r"shape \(37, 53\)"):
        normalize(image[..., 0], mean, std)
