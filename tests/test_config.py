"""Experiment configs: defaults, _base_ inheritance, dotted overrides and unknown-key errors."""
from pathlib import Path

import pytest
import yaml

from eseg.config import DEFAULTS, load_config, save_config
from eseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_defaults_file_values_and_overrides_in_that_order(tmp_path):
    path = write(tmp_path / "exp.yaml", {"train": {"lr": 0.02, "steps": 50}, "model": {"fpn_width": 32}})
    cfg = load_config(path, ["train.lr=0.05", "data.crop_size=[64, 96]", "model.max_level=6", "eval.max_images=null"])
    assert cfg["train"]["lr"] == 0.05  # override beats file
    assert cfg["train"]["steps"] == 50  # file beats default
    assert cfg["train"]["momentum"] == DEFAULTS["train"]["momentum"]  # default kept
    assert cfg["data"]["crop_size"] == [64, 96]  # values are parsed as YAML
    assert cfg["model"] == {"name": "eseg_lite_s", "pretrained_backbone": False, "backbone_weights": None,
                            "fpn_width": 32, "max_level": 6}
    assert cfg["eval"]["max_images"] is None


def test_base_inheritance_is_relative_to_the_file_and_deep_merges(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", {"train": {"lr": 0.3, "steps": 7}, "data": {"dataset": {"type": "synthetic", "num_images": 5}}})
    child = write(tmp_path / "sub" / "child.yaml", {"_base_": "../base.yaml", "train": {"steps": 9},
                                                     "data": {"dataset": {"num_images": 6}}})
    cfg = load_config(child)
    assert cfg["train"]["lr"] == 0.3 and cfg["train"]["steps"] == 9
    assert cfg["data"]["dataset"] == {"type": "synthetic", "num_images": 6}
    # A dataset spec of another type replaces the inherited one instead of merging into it.
    other = write(tmp_path / "other.yaml", {"_base_": "base.yaml", "data": {"dataset": {"type": "folder", "root": "x"}}})
    assert load_config(other)["data"]["dataset"] == {"type": "folder", "root": "x"}


def test_base_loop_is_reported(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "override, named, suggested",
    [
        ("train.lrr=0.1", "train.lrr", "train.lr"),
        ("trian.lr=0.1", "trian", "train"),
        ("model.fpn_widht=8", "model.fpn_widht", "model.fpn_width"),
        ("eval.intervall=3", "eval.intervall", "eval.interval"),
    ],
)
def test_unknown_override_key_names_it_and_suggests_the_closest(override, named, suggested):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"'{named}'" in message
    assert f"did you mean '{suggested}'" in message


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path / "bad.yaml", {"train": {"warmup_step": 10}})
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'train\.warmup_step'.*did you mean 'train\.warmup_steps'"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.lr=abc", "train.steps=1.5", "train.amp=3", "data.dataset=cityscapes",
                                      "train.lr", "train.steps.x=1"])
def test_malformed_overrides_are_errors(override):
    with pytest.raises(ConfigError, match="override"):
        load_config(None, [override])


def test_free_form_dataset_spec_accepts_any_sub_key():
    cfg = load_config(None, ["data.dataset={type: folder, root: /d}", "data.dataset.ignore_index=0"])
    assert cfg["data"]["dataset"] == {"type": "folder", "root": "/d", "ignore_index": 0}


def test_saved_config_loads_back_unchanged(tmp_path):
    cfg = load_config(None, ["train.lr=0.123", "model.fpn_width=24"])
    assert load_config(save_config(cfg, tmp_path / "run" / "config.yaml")) == cfg


SHIPPED = [CONFIGS / "demo.yaml", *sorted((CONFIGS / "cityscapes").glob("*.yaml")), *sorted((CONFIGS / "ade20k").glob("*.yaml"))]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_loads_and_builds_its_model_config(path):
    import eseg

    cfg = load_config(path)
    if path.parent.name in ("cityscapes", "ade20k") and not path.name.startswith("_"):
        assert cfg["data"]["dataset"]["type"] == path.parent.name
        assert cfg["model"]["name"] == path.stem
    model = {k: v for k, v in cfg["model"].items() if k not in ("name", "pretrained_backbone", "backbone_weights")}
    eseg.get_config(cfg["model"]["name"], **model)


def test_config_files_and_dataset_specs_share_one_reader_and_its_errors(tmp_path):
    from eseg.data import load_dataset_spec

    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "wrapped.yaml").write_text("dataset: {type: synthetic, num_images: 3}\n")
    for read, what in ((load_config, "config file"), (load_dataset_spec, "dataset spec")):
        with pytest.raises(ConfigError, match=f"{what} '.*missing.yaml' does not exist"):
            read(tmp_path / "missing.yaml")
        with pytest.raises(ConfigError, match=f"{what} '.*bad.yaml' is not valid YAML"):
            read(tmp_path / "bad.yaml")
        with pytest.raises(ConfigError, match=f"{what} '.*list.yaml' must hold a mapping, got list"):
            read(tmp_path / "list.yaml")
    assert load_dataset_spec(tmp_path / "wrapped.yaml") == {"type": "synthetic", "num_images": 3}
