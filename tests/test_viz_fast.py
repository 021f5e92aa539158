"""Colouring and overlays by table lookup on uint8 data give exactly the float formulas' pixels;
colour masks are palette PNGs."""
import numpy as np
import pytest
from PIL import Image

from eseg import fileio
from eseg.viz import IGNORE_COLOR, blend_tables, color_table, colorize, overlay, save_color_mask


def float_colorize(mask, palette):
    """The formula the lookups replace: ids outside the palette are IGNORE_COLOR."""
    ids = np.asarray(mask).astype(np.int64)
    lut = np.concatenate([palette, np.array([IGNORE_COLOR], np.uint8)])
    return lut[np.where((ids >= 0) & (ids < len(palette)), ids, len(palette))]


def float_overlay(image, mask, palette, alpha):
    colors = float_colorize(mask, palette).astype(np.float32)
    labelled = ((np.asarray(mask) >= 0) & (np.asarray(mask) < len(palette)))[..., None]
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    return np.where(labelled, np.clip(np.rint(blended), 0, 255), image).astype(np.uint8)


def sample(num_colors, dtype, seed=0, shape=(37, 53)):
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (num_colors, 3)).astype(np.uint8)
    low = -3 if np.issubdtype(dtype, np.signedinteger) else 0
    high = min(np.iinfo(dtype).max, num_colors + 40) + 1
    mask = rng.integers(low, high, shape).astype(dtype)
    mask[0, :3] = [0, min(num_colors - 1, np.iinfo(dtype).max), min(255, np.iinfo(dtype).max)]
    image = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    return image, mask, palette


CASES = [(1, np.uint8), (19, np.uint8), (255, np.uint8), (256, np.uint8), (300, np.uint8), (19, np.int64),
         (19, np.int32), (19, np.uint16), (300, np.int32), (256, np.int64)]


@pytest.mark.parametrize("num_colors,dtype", CASES)
def test_colorize_is_the_palette_lookup(num_colors, dtype):
    _, mask, palette = sample(num_colors, dtype)
    out = colorize(mask, palette)
    assert out.dtype == np.uint8 and out.shape == (*mask.shape, 3)
    assert np.array_equal(out, float_colorize(mask, palette))


@pytest.mark.parametrize("num_colors,dtype", CASES)
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_overlay_equals_the_float_blend_exactly(num_colors, dtype, alpha):
    image, mask, palette = sample(num_colors, dtype, seed=int(alpha * 100))
    assert np.array_equal(overlay(image, mask, palette, alpha=alpha), float_overlay(image, mask, palette, alpha))


def test_tables_cover_every_byte():
    palette = np.array([[10, 20, 30], [250, 0, 5]], np.uint8)
    table = color_table(palette)
    assert table.shape == (256, 3) and table[1].tolist() == [250, 0, 5]
    assert table[2:].tolist() == [list(IGNORE_COLOR)] * 254
    blend = blend_tables(palette, 0.25)
    assert blend.shape == (3, 256, 256)
    assert blend[0, 0, 200] == round(0.75 * 200 + 0.25 * 10) and blend[2, 1, 100] == round(0.75 * 100 + 0.25 * 5)
    assert np.array_equal(blend[:, 2:], np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 254, 256)))  # uncoloured


def test_non_contiguous_inputs():
    image, mask, palette = sample(19, np.uint8, shape=(40, 60))
    image_view, mask_view = image[::2, 1::2], mask[::2, 1::2]
    assert np.array_equal(overlay(image_view, mask_view, palette), float_overlay(image_view, mask_view, palette, 0.5))
    assert np.array_equal(colorize(mask.T, palette), float_colorize(mask.T, palette))


@pytest.mark.parametrize("num_colors,dtype", [(19, np.uint8), (19, np.int64), (256, np.uint8)])
def test_a_colour_mask_is_a_palette_png(tmp_path, num_colors, dtype):
    _, mask, palette = sample(num_colors, dtype)
    path = save_color_mask(mask, palette, tmp_path / "sub" / "color.png")
    with Image.open(path) as decoded:
        assert decoded.mode == "P"
        ids = np.asarray(decoded)
        rgb = np.asarray(decoded.convert("RGB"))
    assert np.array_equal(rgb, colorize(mask, palette))
    if dtype == np.uint8:
        assert np.array_equal(ids, mask)  # the ids come back too
    assert [p.name for p in path.parent.iterdir()] == ["color.png"]  # written atomically, no leftovers


def test_a_colour_mask_of_more_ids_than_a_byte_is_rgb(tmp_path):
    _, mask, palette = sample(300, np.int32)
    path = save_color_mask(mask, palette, tmp_path / "color.png")
    with Image.open(path) as decoded:
        assert decoded.mode == "RGB"
        assert np.array_equal(np.asarray(decoded), colorize(mask, palette))


def test_png_levels_trade_size(tmp_path):
    _, mask, palette = sample(19, np.uint8, shape=(256, 256))
    mask = np.repeat(np.repeat(mask[:32, :32], 8, axis=0), 8, axis=1)
    sizes = {}
    for level in (0, 1, 9):
        fileio.write_png(tmp_path / f"{level}.png", mask, palette=color_table(palette), compress_level=level)
        sizes[level] = (tmp_path / f"{level}.png").stat().st_size
        with Image.open(tmp_path / f"{level}.png") as decoded:
            assert np.array_equal(np.asarray(decoded), mask)
    assert sizes[0] > sizes[1] >= sizes[9]


def test_palette_png_needs_byte_ids_and_an_rgb_table(tmp_path):
    with pytest.raises(ValueError, match="palette PNG"):
        fileio.write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint16), palette=np.zeros((4, 3), np.uint8))
    with pytest.raises(ValueError, match="palette PNG"):
        fileio.write_png(tmp_path / "b.png", np.zeros((4, 4), np.uint8), palette=np.zeros((300, 3), np.uint8))
    assert not list(tmp_path.iterdir())
