"""eseg.viz: the numbers behind the pictures, and that the pictures really carry what they claim."""
import json

import numpy as np
import pytest
from PIL import Image

from eseg import viz
from eseg.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ confusion matrix


def test_normalized_confusion_hand_values_and_class_without_ground_truth():
    cm = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])  # class 1 never occurs in the ground truth
    got = viz.normalized_confusion(cm)
    np.testing.assert_allclose(got[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(got[2], [0.25, 0.25, 0.5])
    assert np.isnan(got[1]).all()  # marked, not silently zeros
    np.testing.assert_allclose(np.nansum(got, axis=1)[[0, 2]], 1.0)


def test_normalized_confusion_predicted_but_absent_class_keeps_its_column():
    cm = np.array([[3, 1], [0, 0]])  # class 1 only predicted
    got = viz.normalized_confusion(cm)
    np.testing.assert_allclose(got[0], [0.75, 0.25])
    assert np.isnan(got[1]).all()


def test_normalized_confusion_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        viz.normalized_confusion(np.zeros((2, 3)))


@pytest.mark.parametrize("n", [2, 8, 19, 30, 31, 60, 150])
def test_confusion_sizes_stay_legible(n):
    label_pt, cell_in, value_pt = viz._confusion_sizes(n)
    assert label_pt >= 8
    assert cell_in * 72 >= label_pt * 1.4  # a row is at least one label line tall: names never overlap
    if n <= 30:
        assert value_pt is not None and value_pt >= 8
        assert cell_in * 72 >= 3 * 0.62 * value_pt  # "100" fits inside a cell
    else:
        assert value_pt is None


def test_plot_confusion_matrix_writes_png_that_grows_with_class_count(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 100, (8, 8))
    small[3] = 0
    out_small = viz.plot_confusion_matrix(small, [f"class {i}" for i in range(8)], tmp_path / "cm8.png")
    big = rng.integers(0, 100, (60, 60))
    out_big = viz.plot_confusion_matrix(big, [f"c{i}" for i in range(60)], str(tmp_path / "cm60.png"))
    assert out_small == tmp_path / "cm8.png" and out_big == tmp_path / "cm60.png"
    w8, h8 = _png_size(out_small)
    w60, h60 = _png_size(out_big)
    assert 400 < w8 < 2000 and 300 < h8 < 2000
    assert h60 > 1.5 * h8  # the figure grows so 60 names stay readable
    assert _no_temp_files(tmp_path)


def test_plot_confusion_matrix_tolerates_fewer_names_than_classes(tmp_path):
    out = viz.plot_confusion_matrix(np.eye(3), ["a"], tmp_path / "cm.png")
    assert _png_size(out)[0] > 100


# ------------------------------------------------------------------ captioned panels


def _tiles(h, w, count=3, seed=0):
    rng = np.random.default_rng(seed)
    names = ["image", "ground truth", "prediction"]
    return [(names[i % 3], rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(count)]


@pytest.mark.parametrize("size", [(64, 128), (256, 512), (1024, 2048)])
def test_panel_keeps_tiles_exact_and_draws_captions(size):
    h, w = size
    tiles = _tiles(h, w)
    out = viz.panel(tiles)
    layout = viz.panel_layout([t.shape[:2] for _, t in tiles], [c for c, _ in tiles])
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == (layout.height, layout.width)
    assert layout.width > 3 * w and layout.height > h
    for (caption, tile), (y, x) in zip(tiles, layout.origins):
        np.testing.assert_array_equal(out[y : y + h, x : x + w], tile)  # tile pixels untouched
        band = out[:y, x : x + w]
        dark = (band.max(axis=2) < 128).sum()
        glyphs = len(caption.replace(" ", ""))
        assert dark > 0.5 * layout.font_px * glyphs, f"caption {caption!r} not rendered"  # the band is not blank
    # captions fit their tiles and grow with them (readable when the panel is shown scaled down)
    for caption, _ in tiles:
        assert viz._text_width(caption, layout.font_px) <= w - 4
    assert layout.font_px >= 12


def test_panel_caption_font_scales_with_tile_size():
    captions = ["image", "ground truth", "prediction"]
    small = viz.panel_layout([(64, 128)] * 3, captions)
    large = viz.panel_layout([(1024, 2048)] * 3, captions)
    assert small.font_px >= 12
    assert large.font_px >= 4 * small.font_px
    assert large.caption_h > small.caption_h


def test_panel_mixed_heights_and_long_caption_is_cut():
    tiles = [("a very long caption that cannot fit in a small tile", np.zeros((40, 48, 3), np.uint8)),
             ("b", np.full((80, 64, 3), 200, np.uint8))]
    out = viz.panel(tiles)
    layout = viz.panel_layout([(40, 48), (80, 64)], [c for c, _ in tiles])
    assert out.shape[0] == layout.caption_h + 80 + layout.gap
    (y0, x0), (y1, x1) = layout.origins
    np.testing.assert_array_equal(out[y0 : y0 + 40, x0 : x0 + 48], 0)
    np.testing.assert_array_equal(out[y1 : y1 + 80, x1 : x1 + 64], 200)
    assert viz._fit_text(tiles[0][0], layout.font_px, 44).endswith("…")
    assert viz._text_width(viz._fit_text(tiles[0][0], layout.font_px, 44), layout.font_px) <= 44


def test_panel_legend_lists_the_requested_classes():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]], np.uint8)
    names = ["red", "green", "blue", "magenta"]
    tiles = [("image", np.full((128, 256, 3), 128, np.uint8))]
    bare = viz.panel(tiles)
    everything = viz.panel(tiles, legend=(names, palette))
    some = viz.panel(tiles, legend=(names, palette), legend_classes=[0, 2])
    assert everything.shape[0] > bare.shape[0]  # a strip below the tiles
    np.testing.assert_array_equal(everything[: bare.shape[0], : bare.shape[1]], bare)

    def colors_in_strip(image):
        strip = image[bare.shape[0] :].reshape(-1, 3)
        return {tuple(int(v) for v in c) for c in palette if (strip == c).all(axis=1).sum() > 50}

    assert colors_in_strip(everything) == {tuple(int(v) for v in c) for c in palette}
    assert colors_in_strip(some) == {(255, 0, 0), (0, 0, 255)}
    strip = everything[bare.shape[0] :]
    assert (strip.max(axis=2) < 100).sum() > 100  # class names (dark text) are written, not just swatches
    # no classes requested: no strip
    assert viz.panel(tiles, legend=(names, palette), legend_classes=[]).shape == bare.shape


def test_panel_legend_on_tiny_tiles_widens_the_panel_to_fit_names():
    tiles = [("x", np.zeros((32, 32, 3), np.uint8))]
    out = viz.panel(tiles, legend=(["a rather long class name"], np.array([[10, 200, 30]], np.uint8)))
    assert out.shape[1] > viz.panel(tiles).shape[1]


def test_panel_rejects_bad_tiles():
    with pytest.raises(ValueError, match="at least one"):
        viz.panel([])
    with pytest.raises(ValueError, match="uint8 RGB"):
        viz.panel([("mask", np.zeros((8, 8), np.uint8))])
    with pytest.raises(ValueError, match="uint8 RGB"):
        viz.panel([("float", np.zeros((8, 8, 3), np.float32))])


def test_present_classes_drops_ignore_and_out_of_range():
    gt = np.array([[0, 2], [255, 2]], np.uint8)
    pred = np.array([[5, 1], [-1, 0]], np.int64)
    assert viz.present_classes(gt, pred, num_classes=4) == [0, 1, 2]
    assert viz.present_classes(num_classes=4) == []


# ------------------------------------------------------------------ curves


def _write_metrics(path, total=60, warmup=20, log_interval=10, base=0.01):
    lrs = [base * (0.1 + 0.9 * s / warmup) if s < warmup else base * (1 - (s - warmup) / (total - warmup))
           for s in range(total)]
    rows = [{"step": s, "loss": 1.0 / s, "lr": lrs[s - 1]} for s in range(log_interval, total + 1, log_interval)]
    rows.append({"step": total, "val/mIoU": 0.5})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows, lrs


def test_lr_series_draws_every_step_with_lr_per_step(tmp_path):
    rows, lrs = _write_metrics(tmp_path / "m.jsonl")
    steps, values = viz.lr_series(rows, lrs)
    assert steps == list(range(1, 61))  # every step, 1-based like the metrics rows
    assert values == pytest.approx(lrs)
    warmup = values[:20]
    assert all(b > a for a, b in zip(warmup, warmup[1:]))  # the whole warmup ramp is there
    # lr_per_step[i] is the lr of step i + 1: it agrees with what the log recorded at those steps
    for row in rows:
        if "lr" in row:
            assert values[steps.index(row["step"])] == pytest.approx(row["lr"])


def test_lr_series_falls_back_to_logged_rows(tmp_path):
    rows, _ = _write_metrics(tmp_path / "m.jsonl")
    steps, values = viz.lr_series(rows)
    assert steps == [10, 20, 30, 40, 50, 60]
    assert values == pytest.approx([r["lr"] for r in rows if "lr" in r])
    assert viz.lr_series(rows, []) == (steps, values)


def test_plot_curves_with_and_without_lr_per_step(tmp_path):
    _, lrs = _write_metrics(tmp_path / "m.jsonl")
    a = viz.plot_curves(tmp_path / "m.jsonl", tmp_path / "curves.png", lr_per_step=lrs)
    b = viz.plot_curves(tmp_path / "m.jsonl", tmp_path / "curves_logged.png")
    for out in (a, b):
        w, h = _png_size(out)
        assert w > 2.5 * h and 200 < h < 1000  # three panels side by side
    assert _no_temp_files(tmp_path)


def test_plot_curves_lr_only_from_lr_per_step(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"step": 1, "images_per_s": 3.0}) + "\n")
    out = viz.plot_curves(tmp_path / "m.jsonl", tmp_path / "c.png", lr_per_step=[0.1, 0.2, 0.3])
    w, h = _png_size(out)
    assert 200 < w < 1000  # one panel: the lr


def test_plot_curves_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        viz.plot_curves(tmp_path / "nope.jsonl", tmp_path / "c.png")


# ------------------------------------------------------------------ save_figure


def test_save_figure_is_atomic_and_public(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [0, 1])
    out = viz.save_figure(fig, tmp_path / "sub" / "f.png")
    assert out == tmp_path / "sub" / "f.png"
    assert _png_size(out)[0] > 50
    assert _no_temp_files(tmp_path / "sub")
