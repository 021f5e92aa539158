"""Dataset metadata through subsetting: a SegSubset maps every index it forwards, and the
ignore-index rule is one for datasets and model configs."""
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from eseg.data.folder import FolderDataset
from eseg.data.labels import LabelOptions
from eseg.data.meta import SegSubset, is_per_sample, subset
from eseg.errors import ConfigError
from eseg.models.config import ModelConfig

NAMES = ("a", "b", "c", "d", "e")


@pytest.fixture
def folder(tmp_path):
    """Five samples whose image and mask hold their own number, so a sample read under the wrong
    index shows."""
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["x", "y", "z", "w", "v", "u"]}))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for number, name in enumerate(NAMES):
        Image.fromarray(np.full((4, 6, 3), 10 * number, np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(np.full((4, 6), number, np.uint8)).save(tmp_path / "masks" / f"{name}.png")
    return FolderDataset(tmp_path, "val")


def test_every_per_sample_method_maps_the_subset_index(folder):
    part = subset(folder, [3, 1])
    assert isinstance(part, SegSubset) and len(part) == 2
    for position, index in enumerate([3, 1]):
        assert part.sample_name(position) == NAMES[index]
        assert part.image_path(position) == folder.image_path(index) and part.image_path(position).stem == NAMES[index]
        assert part.mask_path(position) == folder.mask_path(index)
        image, mask = part.load(position)
        assert image[0, 0, 0] == 10 * index and (mask == index).all()
        raw_image, raw_mask = part.read_sample(position)
        assert raw_image[0, 0, 0] == 10 * index and (raw_mask == index).all()
        item = part[position]
        assert item["index"] == index and (item["mask"] == index).all()  # the dataset's index, as read


def test_shared_metadata_is_read_from_the_dataset(folder):
    part = subset(folder, [4])
    assert part.class_names == folder.class_names and part.num_classes == 6 and part.ignore_index == 255
    np.testing.assert_array_equal(part.palette, folder.palette)
    assert part.split == "val" and part.transform is folder.transform and part.meta == folder.meta
    with pytest.raises(AttributeError, match=r"SegSubset\.transform is its dataset's; set it on \.dataset"):
        part.transform = None  # would be ignored: items come from the dataset


@pytest.mark.parametrize("name", ["bad_samples", "check_files", "scan", "samples", "_describe", "root"])
def test_what_the_subset_cannot_map_is_not_forwarded(folder, name):
    """Dataset-indexed state and methods would take or give the dataset's indices."""
    with pytest.raises(AttributeError, match=rf"SegSubset has no '{name}'.*\.dataset with \.indices\[i\]"):
        getattr(subset(folder, [0, 2]), name)


def outcome(call):
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the subset must fail as the dataset does
        return type(exc)


def test_every_per_sample_method_of_the_dataset_answers_for_the_mapped_index(folder):
    names = [name for name in dir(FolderDataset) if is_per_sample(FolderDataset, name)]
    assert {"sample_name", "image_path", "mask_path", "load", "read_sample"} <= set(names)
    part = subset(folder, [3, 1])
    for name in names:
        for position, index in enumerate([3, 1]):
            np.testing.assert_equal(outcome(lambda: getattr(part, name)(position)),
                                    outcome(lambda: getattr(folder, name)(index)), err_msg=name)


def test_a_datasets_own_per_sample_methods_are_mapped_too(folder):
    class Streets(FolderDataset):
        def city(self, index: int) -> str:  # as Cityscapes' city and label_path
            return f"city of {self.sample_name(index)}"

        def map_labels(self, raw, index):  # a hook: its index is not the first parameter
            return raw

    assert is_per_sample(Streets, "city") and not is_per_sample(Streets, "map_labels")
    assert not is_per_sample(Streets, "check_files") and not is_per_sample(Streets, "_describe")
    assert subset(Streets(folder.root, "val"), [2, 0]).city(0) == "city of c"


def test_a_subset_travels_to_dataloader_workers(folder):
    part = pickle.loads(pickle.dumps(subset(folder, [2, 0])))
    assert [part.sample_name(i) for i in range(len(part))] == ["c", "a"] and part.num_classes == 6


def test_the_whole_dataset_is_not_wrapped(folder):
    assert subset(folder, range(len(NAMES))) is folder


def test_one_ignore_index_rule_for_datasets_and_model_configs(folder):
    message = "ignore_index=2 collides with a class id 0..5; give unlabelled pixels a value outside the classes"
    with pytest.raises(ConfigError, match=message):
        FolderDataset(folder.root, "val", label_options=LabelOptions(ignore_index=2))
    with pytest.raises(ConfigError, match=rf"^model\.{message}"):
        ModelConfig(num_classes=6, ignore_index=2)
    assert ModelConfig(num_classes=6, ignore_index=6).ignore_index == 6  # just past the classes is fine
