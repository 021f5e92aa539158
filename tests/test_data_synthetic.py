"""SyntheticStreets: determinism, layout, the context property, and the on-disk round trip."""
import numpy as np
import pytest

from eseg.cli import main as cli_main
from eseg.data import CONTEXT_CLASSES, SyntheticStreets, build_dataset
from eseg.data.synthetic import BUILDING, CLASSES, POLE, ROAD, SIDEWALK, VEGETATION

SIZE = (96, 192)
PAVEMENT = (ROAD, SIDEWALK)


@pytest.fixture(scope="module")
def scenes():
    dataset = SyntheticStreets("train", num_images=32, size=SIZE, seed=3)
    return [dataset.load(i) for i in range(len(dataset))]


def test_samples_are_deterministic_per_seed_split_index():
    a = SyntheticStreets("train", num_images=3, size=SIZE, seed=7)
    b = SyntheticStreets("train", num_images=3, size=SIZE, seed=7)
    for i in range(3):
        np.testing.assert_array_equal(a.load(i)[0], b.load(i)[0])
        np.testing.assert_array_equal(a.load(i)[1], b.load(i)[1])
    others = [SyntheticStreets("val", num_images=3, size=SIZE, seed=7).load(0),
              SyntheticStreets("train", num_images=3, size=SIZE, seed=8).load(0), a.load(1)]
    for image, _ in others:
        assert not np.array_equal(image, a.load(0)[0])


def test_items_and_class_coverage(scenes):
    dataset = SyntheticStreets("val", num_images=2, size=SIZE)
    item = dataset[1]
    assert item["image"].shape == (3, *SIZE) and item["mask"].shape == SIZE and item["index"] == 1
    assert dataset.class_names == CLASSES and dataset.num_classes == 8 and dataset.palette.shape == (8, 3)
    assert CONTEXT_CLASSES == ("road", "sidewalk")
    counts = np.bincount(np.concatenate([m.ravel() for _, m in scenes]), minlength=len(CLASSES))
    assert len(counts) == len(CLASSES) and (counts > 0).all()
    assert all(image.dtype == np.uint8 and mask.dtype == np.int64 for image, mask in scenes)


def _box_mean(values, radius):
    """Mean over the (2r+1)^2 window of each pixel whose window fits in the image."""
    size = 2 * radius + 1
    table = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)) + ((0, 0),) * (values.ndim - 2))
    total = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    return total / size**2


def _local_features(image, mask, radius=4):
    """Mean and std of each colour channel in the 9x9 window, for pixels whose window is all pavement."""
    pixels = image.astype(np.float64)
    mean = _box_mean(pixels, radius)
    std = np.sqrt(np.maximum(_box_mean(pixels**2, radius) - mean**2, 0))
    inner = mask[radius:-radius, radius:-radius]
    all_pavement = _box_mean(np.isin(mask, PAVEMENT).astype(np.float64), radius) == 1.0
    return np.concatenate([mean, std], -1)[all_pavement], inner[all_pavement]


def _lda_accuracy(train, test, rng):
    """Fisher linear discriminant between two classes, trained on balanced samples, scored on
    balanced held-out samples."""
    def balanced(features, labels, classes):
        n = min((labels == c).sum() for c in classes)
        picks = [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in classes]
        return np.concatenate([features[p] for p in picks]), np.concatenate([labels[p] for p in picks])

    (fa, la), (fb, lb) = train, test
    classes = np.unique(la)
    fa, la = balanced(fa, la, classes)
    fb, lb = balanced(fb, lb, classes)
    mu = [fa[la == c].mean(0) for c in classes]
    within = sum(np.cov(fa[la == c].T) for c in classes) + 1e-6 * np.eye(fa.shape[1])
    w = np.linalg.solve(within, mu[1] - mu[0])
    threshold = w @ (mu[0] + mu[1]) / 2
    predicted = np.where(fb @ w > threshold, classes[1], classes[0])
    return (predicted == lb).mean()


def _features(scenes, classes, feature_fn):
    parts = [feature_fn(image, mask) for image, mask in scenes]
    features = np.concatenate([f for f, _ in parts])
    labels = np.concatenate([l for _, l in parts])
    keep = np.isin(labels, classes)
    return features[keep], labels[keep]


def test_road_and_sidewalk_are_locally_indistinguishable(scenes):
    rng = np.random.default_rng(0)
    half = len(scenes) // 2
    train = _features(scenes[:half], PAVEMENT, _local_features)
    test = _features(scenes[half:], PAVEMENT, _local_features)
    assert min(np.bincount(test[1])[list(PAVEMENT)]) > 1000
    accuracy = _lda_accuracy(train, test, rng)
    assert accuracy < 0.6, f"local 9x9 colour statistics separate road from sidewalk ({accuracy:.2f})"


def test_the_local_classifier_does_separate_other_classes(scenes):
    """Control for the test above: the same features and classifier tell vegetation from building."""
    def features_any(image, mask, radius=4):
        pixels = image.astype(np.float64)
        mean = _box_mean(pixels, radius)
        std = np.sqrt(np.maximum(_box_mean(pixels**2, radius) - mean**2, 0))
        return np.concatenate([mean, std], -1).reshape(-1, 6), mask[radius:-radius, radius:-radius].ravel()

    rng = np.random.default_rng(0)
    half = len(scenes) // 2
    classes = (BUILDING, VEGETATION)
    accuracy = _lda_accuracy(_features(scenes[:half], classes, features_any),
                             _features(scenes[half:], classes, features_any), rng)
    assert accuracy > 0.8


def _horizon(mask):
    return int(np.flatnonzero(np.isin(mask, PAVEMENT).any(1))[0])


def test_road_or_sidewalk_is_decided_by_what_stands_on_the_horizon(scenes):
    """The whole image determines the class: a pavement column is sidewalk exactly when a building
    (or a pole, which stand on sidewalks only) rises above the horizon in that column."""
    for _, mask in scenes:
        horizon = _horizon(mask)
        above = mask[:horizon]
        sidewalk_column = (np.isin(above, (BUILDING, POLE))).any(0)
        ground = mask[horizon:]
        pavement = np.isin(ground, PAVEMENT)
        expected = np.where(sidewalk_column[None, :], SIDEWALK, ROAD)
        np.testing.assert_array_equal(ground[pavement], np.broadcast_to(expected, ground.shape)[pavement])


def test_boundary_has_no_other_class_within_a_quarter_image(scenes):
    """Many pixels right at the road/sidewalk boundary see nothing but pavement within a quarter of
    the image height in every direction: their class is set by context further away than that."""
    radius = SIZE[0] // 4
    far, total = 0, 0
    for _, mask in scenes:
        boundary = np.zeros_like(mask, dtype=bool)
        boundary[:, 1:] = (mask[:, 1:] != mask[:, :-1]) & np.isin(mask[:, 1:], PAVEMENT) & np.isin(mask[:, :-1], PAVEMENT)
        if not boundary.any():
            continue
        other = np.pad(~np.isin(mask, PAVEMENT), radius).astype(np.float64)  # outside the frame: no cue
        only_pavement = _box_mean(other, radius) == 0.0
        far += (boundary & only_pavement).sum()
        total += boundary.sum()
    assert total > 0 and far / total > 0.1


def test_synth_command_writes_a_folder_dataset_that_reads_back_identically(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli_main(["data", "synth", "--out", str(out), "--n", "5", "--size", "64x96", "--seed", "4",
                     "--val-fraction", "0.4"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "train: 3" in printed and "val: 2" in printed
    for split, count in (("train", 3), ("val", 2)):
        on_disk = build_dataset({"type": "folder", "root": str(out)}, split)
        generated = SyntheticStreets(split, num_images=count, size=(64, 96), seed=4)
        assert len(on_disk) == count and on_disk.class_names == CLASSES
        np.testing.assert_array_equal(on_disk.palette, generated.palette)
        for i in range(count):
            for a, b in zip(on_disk.load(i), generated.load(i)):
                np.testing.assert_array_equal(a, b)
    assert not list(out.rglob("*.tmp"))
