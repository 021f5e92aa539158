"""Experiment configs: defaults, _base_ inheritance, dotted overrides and unknown-key errors."""
from pathlib import Path

import pytest
import yaml

from eseg.config import ExperimentConfig, load_config, save_config
from eseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_defaults_file_values_and_overrides_in_that_order(tmp_path):
    path = write(tmp_path / "exp.yaml", {"train": {"lr": 0.02, "steps": 50}, "model": {"fpn_width": 32}})
    cfg = load_config(path, ["train.lr=0.05", "data.crop_size=[64, 96]", "model.max_level=6", "eval.max_images=null"])
    assert cfg.train.lr == 0.05  # override beats file
    assert cfg.train.steps == 50  # file beats default
    assert cfg.train.momentum == ExperimentConfig().train.momentum  # default kept
    assert cfg.data.crop_size == (64, 96)  # values are parsed as YAML, typed by the schema
    assert cfg.to_dict()["model"] == {"name": "eseg_lite_s", "pretrained_backbone": False, "backbone_weights": None,
                                      "fpn_width": 32, "max_level": 6}
    assert cfg.eval.max_images is None


def test_base_inheritance_is_relative_to_the_file_and_deep_merges(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", {"train": {"lr": 0.3, "steps": 7}, "data": {"dataset": {"type": "synthetic", "num_images": 5}}})
    child = write(tmp_path / "sub" / "child.yaml", {"_base_": "../base.yaml", "train": {"steps": 9},
                                                     "data": {"dataset": {"num_images": 6}}})
    cfg = load_config(child)
    assert cfg.train.lr == 0.3 and cfg.train.steps == 9
    assert cfg.data.dataset == {"type": "synthetic", "num_images": 6}
    # A dataset spec of another type replaces the inherited one instead of merging into it.
    other = write(tmp_path / "other.yaml", {"_base_": "base.yaml", "data": {"dataset": {"type": "folder", "root": "x"}}})
    assert load_config(other).data.dataset == {"type": "folder", "root": "x"}


def test_base_loop_is_reported(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "override, named, suggested",
    [
        ("train.lrr=0.1", "'lrr'", "'lr'"),
        ("trian.lr=0.1", "'trian'", "'train'"),
        ("model.fpn_widht=8", "'fpn_widht'", "'fpn_width'"),
        ("eval.intervall=3", "'intervall'", "'interval'"),
        ("data.dataset.roots=/x", "'roots'", "'size'"),  # a synthetic spec has no root
    ],
)
def test_unknown_override_key_names_it_and_suggests_the_closest(override, named, suggested):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"unknown key {named}" in message
    if suggested != "'size'":
        assert f"did you mean {suggested}" in message


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path / "bad.yaml", {"train": {"warmup_step": 10}})
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'warmup_step'; did you mean 'warmup_steps'"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.lr=abc", "train.steps=1.5", "train.amp=3", "data.dataset=cityscapes",
                                      "train.lr", "train.steps.x=1"])
def test_malformed_overrides_are_errors(override):
    with pytest.raises(ConfigError, match=r"override|train\.|data\."):
        load_config(None, [override])


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "'train.batch_size' = 0 is out of range: each value must be >= 1"),
    ("train.log_interval=0", "'train.log_interval' = 0 is out of range"),
    ("train.checkpoint_interval=0", "'train.checkpoint_interval' = 0 is out of range"),
    ("train.lr=-1", "'train.lr' = -1.0 is out of range: each value must be > 0"),
    ("train.steps=0", "'train.steps' = 0 is out of range"),
    ("train.steps=-5", "'train.steps' = -5 is out of range"),
    ("model.act=gelu", "'model.act' = 'gelu' is not one of swish, relu6, relu, hardswish"),
    ("model.fusion=foo", "'model.fusion' = 'foo' is not one of fast, attn, sum"),
    ("data.crop_size=[0,0]", "'data.crop_size' = (0, 0) is out of range"),
    ("train.optimizer=adam", "'train.optimizer' = 'adam' is not one of sgd, adamw; did you mean 'adamw'?"),
    ("train.warmup_steps=5000", "train.warmup_steps=5000 must be below train.steps=1000"),
    ("data.scale_range=[2,1]", "data.scale_range=[2.0, 1.0] must be [low, high]"),
    ("train.device=gpu", "train.device='gpu' must be auto, cpu, mps, cuda or cuda:N"),
    ("model.max_level=2", "'model.max_level' = 2 is out of range"),
    ("model.name=eseg_lite_z", "model.name: unknown model 'eseg_lite_z'; did you mean 'eseg_lite_s'"),
    ("train.loss={type: focal, gama: 2}", "train.loss (type 'focal'): unknown key 'gama'; did you mean 'gamma'?"),
])
def test_every_bad_value_is_a_config_error_naming_key_value_and_range(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_switching_the_dataset_type_by_override_starts_a_fresh_spec(tmp_path):
    cfg = load_config(None, ["data.dataset.type=folder", f"data.dataset.root={tmp_path}"])
    assert cfg.data.dataset == {"type": "folder", "root": str(tmp_path)}
    base = write(tmp_path / "c.yaml", {"data": {"dataset": {"type": "synthetic", "size": [64, 64], "num_images": 4}}})
    assert load_config(base, ["data.dataset.type=cityscapes", "data.dataset.root=/d"]).data.dataset == {
        "type": "cityscapes", "root": "/d"}


def test_free_form_dataset_spec_accepts_any_sub_key():
    cfg = load_config(None, ["data.dataset={type: folder, root: /d}", "data.dataset.ignore_index=0"])
    assert cfg.data.dataset == {"type": "folder", "root": "/d", "ignore_index": 0}


def test_saved_config_loads_back_unchanged(tmp_path):
    cfg = load_config(None, ["train.lr=0.123", "model.fpn_width=24"])
    assert load_config(save_config(cfg, tmp_path / "run" / "config.yaml")) == cfg


SHIPPED = [CONFIGS / "demo.yaml", *sorted((CONFIGS / "cityscapes").glob("*.yaml")), *sorted((CONFIGS / "ade20k").glob("*.yaml"))]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_loads_and_builds_its_model_config(path):
    import eseg

    cfg = load_config(path)
    if path.parent.name in ("cityscapes", "ade20k") and not path.name.startswith("_"):
        assert cfg.data.dataset["type"] == path.parent.name
        assert cfg.model.name == path.stem
    eseg.get_config(cfg.model.name, **cfg.model_options())


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


def test_the_train_crop_is_the_configs_else_the_models():
    from eseg.models.registry import get_config

    assert load_config(None, ["data.crop_size=[64, 96]"]).train_crop() == (64, 96)
    assert load_config(None, ["model.name=eseg_m"]).train_crop() == tuple(get_config("eseg_m").train_crop) == (768, 1536)
    assert load_config(None, ["model.train_crop=[32, 48]"]).train_crop() == (32, 48)  # a model option counts too


def test_one_spelling_hint_for_keys_choices_registries_and_loss_specs():
    from eseg.models.registry import MODELS
    from eseg.schema import did_you_mean

    assert did_you_mean("gama", ["type", "weight", "gamma", "alpha"]) == "did you mean 'gamma'? "
    assert did_you_mean("zzz", ["gamma"]) == ""
    assert did_you_mean("eseg_lite_z", MODELS.names(), n=2) == "did you mean 'eseg_lite_s', 'eseg_lite_m'? "
    for override, hint in [("train.lrr=1", "did you mean 'lr'? "), ("train.optimizer=adam", "did you mean 'adamw'?"),
                           ("model.name=eseg_lite_z", "did you mean 'eseg_lite_"),
                           ("train.loss={type: dcie}", "did you mean 'dice'? "),
                           ("data.dataset={type: foldr}", "did you mean 'folder'? ")]:
        with pytest.raises(ConfigError) as info:
            load_config(None, [override])
        assert hint in str(info.value), override


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_numbers_must_be_finite(value):
    with pytest.raises(ConfigError, match=rf"'train.grad_clip' must be a finite number, got {value.replace('.', '')}"):
        load_config(None, [f"train.grad_clip={value}"])
