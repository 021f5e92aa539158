"""eseg.data.io: every image flavour comes back as uint8 RGB, masks as raw int64 labels, and
broken files raise DataError naming the file."""
import numpy as np
import pytest
from PIL import Image

from eseg.data.io import array_to_rgb, read_image, read_mask
from eseg.errors import DataError


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_rgb_png_and_jpeg_roundtrip(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 20, 3) and out.flags.writeable
    np.testing.assert_array_equal(out, rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert read_image(tmp_path / "a.jpg").shape == (12, 20, 3)


def test_grayscale_is_replicated(tmp_path):
    gray = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (12, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_is_composited_on_black(tmp_path, rgb):
    alpha = np.zeros((12, 20), np.uint8)
    alpha[:, 10:] = 255
    alpha[0, 0] = 128
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[:, 10:], rgb[:, 10:])
    assert (out[1:, :10] == 0).all()
    np.testing.assert_allclose(out[0, 0], rgb[0, 0].astype(float) * 128 / 255, atol=1)


def test_16bit_grayscale_is_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


def test_palette_image_gives_its_colors(tmp_path):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = Image.fromarray(indices, mode="P")
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[1, 0], [0, 255, 0])
    np.testing.assert_array_equal(out[0, 1], [200, 100, 50])


def test_exif_orientation_is_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "o.png", exif=exif)
    out = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(out, np.rot90(rgb, k=-1))


@pytest.mark.parametrize("reader", [read_image, read_mask])
def test_broken_files_raise_data_error_naming_the_file(tmp_path, rgb, reader):
    Image.fromarray(rgb[..., 0]).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    for name in ("cut.png", "junk.png", "missing.png"):
        with pytest.raises(DataError, match=name):
            reader(tmp_path / name)


def test_read_mask_values_by_mode(tmp_path):
    labels = np.array([[0, 3, 255], [7, 1, 2]], dtype=np.uint8)
    Image.fromarray(labels, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png"), labels)
    assert read_mask(tmp_path / "l.png").dtype == np.int64

    pmode = Image.fromarray(labels, mode="P")
    pmode.putpalette(list(np.random.default_rng(1).integers(0, 256, 768)))
    pmode.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), labels)  # indices, not colours

    wide = np.array([[0, 300], [1000, 65535]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "w.png"), wide)


def test_rgb_mask_is_refused_with_explanation(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "color_mask.png")
    with pytest.raises(DataError, match=r"color_mask\.png.*single-channel"):
        read_mask(tmp_path / "color_mask.png")


def test_arrays_convert_like_the_files_holding_them(tmp_path, rgb):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    np.testing.assert_array_equal(array_to_rgb(values), read_image(tmp_path / "d.png"))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(array_to_rgb(rgba), read_image(tmp_path / "a.png"))
    np.testing.assert_array_equal(array_to_rgb(rgb / 255.0), rgb)  # float in 0..1
    np.testing.assert_array_equal(array_to_rgb(rgb.astype(np.int64)), rgb)  # wide ints holding 0..255
    with pytest.raises(DataError, match=r"frame\.npy: expected an \(H, W\).*shape \(4, 5, 2\)"):
        array_to_rgb(np.zeros((4, 5, 2)), source="frame.npy")
    with pytest.raises(DataError, match="unsupported image dtype"):
        array_to_rgb(np.zeros((4, 5), dtype=object))
