"""The ESeg family: every variant, any input size, gradients, no dilation, save/load, GMACs."""
import json

import pytest
import torch
from torch import nn

import eseg
from eseg.errors import CheckpointError, ConfigError
from eseg.flops import count_macs
from eseg.models.eseg.bifpn import WeightedFusion
from eseg.models.padding import pad_to_size, padded_size

from .conftest import tiny_model

ESEG_MODELS = [n for n in eseg.list_models() if eseg.models.MODELS.metadata(n)["arch"] == "eseg"]


@pytest.mark.parametrize("name", eseg.list_models())
def test_every_registered_model_runs_at_a_small_size(name):
    model = eseg.create_model(name, num_classes=7).eval()
    assert isinstance(model, eseg.SegmentationModel) and model.config.variant == name
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 150))
    assert out.shape == (1, 7, 70, 150)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ESEG_MODELS)
def test_every_eseg_variant_builds_its_pyramid(name):
    config = eseg.get_config(name)
    model = eseg.create_model(name, num_classes=7).eval()
    assert len(model.pyramid.layers) == config.fpn_repeats
    assert model.input_stride == 32  # padded to the backbone's stride, not to 2**max_level
    assert pyramid_sizes(model, (70, 150)) == expected_sizes((70, 150), config.min_level, config.max_level)


def test_registry_covers_the_variants_and_rejects_unknown_names():
    assert eseg.list_models() == sorted(
        ["deeplabv3plus", "eseg_s", "eseg_m", "eseg_l", "eseg_lite_s", "eseg_lite_m", "eseg_lite_l", "eseg_rt_s", "lraspp",
         "eseg_rt_m", "eseg_rt_l"]
    )
    assert eseg.list_models("eseg_lite_*") == ["eseg_lite_l", "eseg_lite_m", "eseg_lite_s"]
    assert eseg.list_models("lite_s") == ["eseg_lite_s"]  # a plain filter is a substring
    with pytest.raises(ConfigError, match="eseg_lite_s"):
        eseg.create_model("eseg_lite_z")
    with pytest.raises(ConfigError, match="fpn_widht"):
        eseg.create_model("eseg_lite_s", fpn_widht=3)
    with pytest.raises(TypeError):
        eseg.create_model("eseg_lite_s", 19)  # builders are keyword-only


@pytest.mark.parametrize("size", [(97, 203), (1080, 1920), (1024, 2048), (512, 1024)])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_size_equals_input_size(size, batch):
    model = tiny_model(num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, *size))
    assert out.shape == (batch, 5, *size)


def pyramid_sizes(model, size) -> list[tuple[int, int]]:
    seen = {}
    handle = model.pyramid.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    handle.remove()
    assert out.shape[-2:] == size  # the output is always the input's size
    return [tuple(f.shape[-2:]) for f in seen["out"]]


def expected_sizes(size, min_level=2, max_level=9, stride=32) -> list[tuple[int, int]]:
    """Independent of the model: the canvas is the input padded to the backbone's stride; P_i
    has ceil(side / 2**i) cells of it, down to 1 x 1 (for i >= 5 that is ceil of the input)."""
    canvas = [-(-side // stride) * stride for side in size]
    return [tuple(-(-side // 2**level) for side in canvas) for level in range(min_level, max_level + 1)]


@pytest.mark.parametrize("size", [(97, 203), (333, 777), (1, 1), (1080, 1920)])
def test_every_level_has_ceil_size_of_the_input_down_to_one_cell(size):
    model = tiny_model().eval()
    sizes = pyramid_sizes(model, size)
    assert sizes == expected_sizes(size)
    for level, cells in zip(range(5, 10), sizes[3:]):
        assert cells == tuple(-(-side // 2**level) for side in size)  # ceil(H / 2^i) of the input itself
    assert sizes[-1] == tuple(-(-side // 512) for side in size)  # P9: 1/512, at least one cell


def test_learned_extra_levels_keep_the_ceil_sizes_and_train():
    """extra_kind=conv (a hypothesis of docs/claims.md): P6-P9 by stride-2 separable convs, with
    the max-pool's ceil sizes, and a gradient into every one of them."""
    model = tiny_model(extra_kind="conv").train()
    steps = model.pyramid.extra.steps
    assert len(steps) == 4 and all(isinstance(step[1].depthwise, nn.Conv2d) for step in steps)
    assert steps[0][1].depthwise.stride == (2, 2)
    nn.functional.cross_entropy(model(torch.randn(2, 3, 96, 160)), torch.randint(0, 4, (2, 96, 160))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in steps.parameters())
    assert pyramid_sizes(model.eval(), (333, 777)) == expected_sizes((333, 777))
    assert sum(p.numel() for p in steps.parameters()) > 0 == sum(
        p.numel() for p in tiny_model().pyramid.extra.parameters())


@pytest.mark.parametrize("size", [(720, 1280), (1080, 1920), (600, 800)])
def test_gmacs_follow_the_pixels(size):
    """The cost of an image is proportional to its pixels (within 5%), not to the next multiple
    of 512 the old padding rule computed on."""
    with torch.device("meta"):
        model = eseg.create_model("eseg_lite_s").eval()
    ratio = count_macs(model, size) / count_macs(model, (512, 1024))
    pixels = size[0] * size[1] / (512 * 1024)
    assert abs(ratio / pixels - 1) < 0.05, (ratio, pixels)


def test_gradients_reach_p9_and_every_fusion_weight():
    model = tiny_model().train()
    captured = {}

    def keep_p9(module, inputs, outputs):
        outputs[-1].retain_grad()
        captured["p9"] = outputs[-1]

    model.pyramid.extra.register_forward_hook(keep_p9)
    target = torch.randint(0, 4, (2, 96, 160))
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 96, 160)), target)
    loss.backward()
    assert captured["p9"].shape[-2:] == (1, 1)
    assert captured["p9"].grad is not None and captured["p9"].grad.abs().sum() > 0
    fusions = [m for m in model.modules() if isinstance(m, WeightedFusion) and m.weight is not None]
    assert len(fusions) > 10
    for fusion in fusions:
        assert fusion.weight.grad is not None and (fusion.weight.grad != 0).all()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


@pytest.mark.parametrize("name", ESEG_MODELS)
def test_no_dilation_anywhere(name):
    with torch.device("meta"):
        model = eseg.create_model(name)
    checked = 0
    for module_name, module in model.named_modules():
        dilation = getattr(module, "dilation", None)
        if dilation is None:
            continue
        values = dilation if isinstance(dilation, (tuple, list)) else (dilation,)
        assert all(d == 1 for d in values), f"{name}: {module_name} has dilation {dilation}"
        checked += 1
    assert checked > 50


def test_fast_fusion_formula():
    fusion = WeightedFusion(3, "fast")
    with torch.no_grad():
        fusion.weight.copy_(torch.tensor([2.0, -1.0, 1.0]))
    xs = [torch.full((1, 1, 2, 2), v) for v in (1.0, 5.0, 4.0)]
    expected = (2.0 * 1.0 + 0.0 * 5.0 + 1.0 * 4.0) / (3.0 + 1e-4)
    assert torch.allclose(fusion(xs), torch.full((1, 1, 2, 2), expected))


def test_sum_and_softmax_fusion_against_hand_values():
    xs = [torch.full((1, 1, 2, 2), v) for v in (1.0, 5.0, 4.0)]
    assert torch.equal(WeightedFusion(3, "sum")(iter(xs)), torch.full((1, 1, 2, 2), 10.0))  # a generator works too
    attn = WeightedFusion(3, "attn")
    with torch.no_grad():
        attn.weight.copy_(torch.tensor([0.0, 0.0, float(torch.log(torch.tensor(2.0)))]))
    expected = (1.0 + 5.0 + 2 * 4.0) / 4.0  # softmax weights 1/4, 1/4, 2/4
    assert torch.allclose(attn(xs), torch.full((1, 1, 2, 2), expected))


def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = tiny_model(num_classes=3, class_names=["a", "b", "c"]).train()
    with torch.no_grad():  # move BN running stats away from their init
        model(torch.randn(2, 3, 64, 64))
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = eseg.load_model(tmp_path / "m")
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(1, 3, 97, 203)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_corrupt_or_mismatched_saves_name_the_file(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    config = tmp_path / "m" / "config.json"

    data = json.loads(config.read_text())
    data["model"]["fpn_width"] = 24
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*does not match"):
        eseg.load_model(tmp_path / "m")

    data["model"]["fpn_width"] = 16
    data["model"]["fpn_wdth"] = 16
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="fpn_wdth"):
        eseg.load_model(tmp_path / "m")

    config.write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        eseg.load_model(tmp_path / "m")

    model.save_pretrained(tmp_path / "m")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        eseg.load_model(tmp_path / "m")

    with pytest.raises(CheckpointError, match="does not exist"):
        eseg.load_model(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="unknown architecture 'unet'"):
        (tmp_path / "u").mkdir()
        (tmp_path / "u" / "config.json").write_text(json.dumps({"format_version": 2, "model": {"arch": "unet"}}))
        eseg.load_model(tmp_path / "u")


def test_gmacs_match_fvcore_within_one_percent():
    fvcore = pytest.importorskip("fvcore.nn")
    model = eseg.create_model("eseg_lite_s", num_classes=19).eval()
    size = (512, 1024)
    ours = count_macs(model, size)
    analysis = fvcore.FlopCountAnalysis(model, torch.randn(1, 3, *size))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    # fvcore also prices norms and resizes; torch.utils.flop_counter counts convs/matmuls only.
    theirs = sum(by_op.get(op, 0) for op in ("conv", "linear", "matmul", "addmm", "bmm", "einsum"))
    assert by_op["conv"] > 0.9 * sum(by_op.values())
    assert abs(ours - theirs) / theirs < 0.01, (ours, theirs)
    assert 3e9 < ours < 8e9


def test_batch_padding_equals_single_image_padding():
    model = tiny_model().eval()
    small = torch.randn(1, 3, 97, 203)
    large = torch.randn(1, 3, 120, 210)
    canvas = padded_size(120, 210, model.input_stride)
    assert canvas == padded_size(97, 203, model.input_stride) == (128, 224)
    batch = torch.cat([pad_to_size(small, canvas), pad_to_size(large, canvas)])
    with torch.no_grad():
        alone = model(small)
        together = model(batch)[:1, :, :97, :203]
    assert torch.allclose(alone, together, atol=1e-5, rtol=0)


def test_local_backbone_weights_are_loaded(tmp_path):
    import safetensors.torch
    import timm

    source = timm.create_model("test_efficientnet", num_classes=10)
    safetensors.torch.save_file(source.state_dict(), str(tmp_path / "backbone.safetensors"))
    model = tiny_model()
    loaded = tiny_model(backbone_weights=tmp_path / "backbone.safetensors")
    stem = "conv_stem.weight"
    assert torch.equal(loaded.backbone.model.state_dict()[stem], source.state_dict()[stem])
    assert not torch.equal(model.backbone.model.state_dict()[stem], source.state_dict()[stem])
    with pytest.raises(CheckpointError, match="missing.pth"):
        eseg.create_model("eseg_lite_s", backbone_weights=tmp_path / "missing.pth")


class _Payload:
    """Unpickling this would run code: what a malicious weights file does."""

    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("name, message", [
    ("backbone.safetensors", "not a readable safetensors file.*renamed pickle"),
    ("backbone.pth", "pickle that needs code to load.*save the backbone's state dict as .safetensors"),
])
def test_a_pickled_backbone_file_is_refused_with_what_to_do(tmp_path, capsys, name, message):
    import pickle

    (tmp_path / name).write_bytes(pickle.dumps({"conv_stem.weight": _Payload()}))
    with pytest.raises(CheckpointError, match=message):
        tiny_model(backbone_weights=tmp_path / name)
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv3_small_050", "efficientnetv2_rw_t"])
def test_other_timm_backbones(backbone):
    model = eseg.create_model("eseg_lite_s", num_classes=3, backbone=backbone, fpn_width=16,
                              fpn_repeats=1, head_width=16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 90)).shape == (1, 3, 65, 90)


def test_models_command_prints_the_table(capsys):
    from eseg.cli import main

    assert main(["models", "lite_s", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["eseg_lite_s"] and rows[0]["design"].startswith("P2-P9")
    assert main(["models", "nothing-like-this"]) == 2
    assert "no registered model matches" in capsys.readouterr().err


@pytest.mark.parametrize("name", eseg.list_models())
def test_the_registry_cost_table_is_what_flop_counter_counts(name):
    from eseg.models.summary import measure_costs

    assert eseg.models.MODELS.metadata(name)["costs"] == measure_costs(name), "update the COSTS table of the variants"


@pytest.mark.parametrize("document", ["README.md", "docs/models.md"])
def test_documented_model_table_is_the_models_command_output(document):
    from pathlib import Path

    from eseg.models.summary import TABLE_END, TABLE_START, markdown_table, model_rows

    text = (Path(__file__).parents[1] / document).read_text()
    section = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert markdown_table(model_rows()) in section, f"{document}'s table is stale: run `eseg models --update {document}`"


def test_p2_reaches_the_head_through_its_lateral_and_the_bifpn_spans_p3_to_p9():
    model = tiny_model().eval()  # eseg_lite_s: fpn_min_level 3
    assert model.config.bifpn_min_level == 3 and len(model.pyramid.layers[0].top_down) == 6  # P3..P9: 7 levels
    seen = {}
    model.backbone.register_forward_hook(lambda m, i, o: seen.setdefault("backbone", o))
    model.pyramid.register_forward_hook(lambda m, i, o: seen.setdefault("pyramid", o))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
        lateral_p2 = model.pyramid.lateral[0](seen["backbone"][0])
    assert torch.equal(seen["pyramid"][0], lateral_p2)  # not fused: P2 is the head's lateral only
    assert len(seen["pyramid"]) == 8


def test_progressive_head_is_upsample_and_add_from_the_coarsest_level():
    from eseg.models.eseg.head import SegmentationHead

    head = SegmentationHead(3, 4, 4, 2, num_layers=0).eval()
    feats = [torch.randn(1, 4, 9, 13), torch.randn(1, 4, 5, 7), torch.randn(1, 4, 3, 4)]

    def up(x, like):
        return torch.nn.functional.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    expected = feats[0] + up(feats[1] + up(feats[2], feats[1]), feats[0])
    with torch.no_grad():
        torch.testing.assert_close(head(feats), head.classifier(expected))


@pytest.mark.parametrize("kind", ["progressive", "weighted"])
def test_both_heads_and_a_p2_bifpn_keep_the_output_size(kind):
    model = tiny_model(head_kind=kind, fpn_min_level=2).eval()
    assert (model.head.fuse is None) == (kind == "progressive")
    with torch.no_grad():
        assert model(torch.randn(2, 3, 97, 203)).shape == (2, 4, 97, 203)


@pytest.mark.parametrize("options, message", [
    ({"fpn_min_level": 9}, "fpn_min_level=9 must be in [min_level=2, max_level=9)"),
    ({"fpn_min_level": 1}, "fpn_min_level=1 must be in"),
    ({"head_kind": "fancy"}, "'model.head_kind' = 'fancy' is not one of progressive, weighted"),
    ({"extra_kind": "pool"}, "'model.extra_kind' = 'pool' is not one of maxpool, conv"),
])
def test_bad_architecture_options_are_config_errors(options, message):
    with pytest.raises(ConfigError) as info:
        eseg.get_config("eseg_lite_s", **options)
    assert message in str(info.value)


def test_one_image_of_a_small_crop_trains_through_its_one_by_one_levels():
    """P9 of a 64x128 crop is 1x1: with one image per process its BN sees one value per channel."""
    model = tiny_model().train()
    before = model.pyramid.layers[0].bottom_up[-1].conv.bn.running_var.clone()
    loss = model(torch.randn(1, 3, 64, 128)).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.equal(model.pyramid.layers[0].bottom_up[-1].conv.bn.running_var, before)  # the P9 node: unchanged
    assert not torch.equal(model.head.refine[0].bn.running_var, torch.ones_like(model.head.refine[0].bn.running_var))


def test_the_bases_name_what_an_architecture_and_an_evaluator_must_provide():
    from eseg.evaluation import DatasetEvaluator
    from eseg.models.base import SegmentationModel

    assert SegmentationModel.__abstractmethods__ == {"input_stride", "forward_logits"}
    assert DatasetEvaluator.__abstractmethods__ == {"process"}

    class Incomplete(SegmentationModel):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(eseg.get_config("eseg_lite_s"))


def test_every_configurable_activation_has_a_module():
    from eseg.models.config import ACTIVATIONS
    from eseg.models.layers import ACTIVATION_MODULES, activation

    assert tuple(ACTIVATION_MODULES) == ACTIVATIONS
    assert [type(activation(name)) for name in ACTIVATIONS] == list(ACTIVATION_MODULES.values())
