"""The low-resolution output contract end to end: ``eseg export`` writes graphs whose output is the
head's low-resolution logits (ONNX and OpenVINO, fixed and dynamic), the runners say which contract
their output follows, and the Segmenter's masks are the exact argmax of the bilinear upsample of
those logits, pixel for pixel, for every backend. Graphs with full-resolution output (exported with
``--full-resolution``, or before the contract was recorded) keep working, and the logits, TTA and
sliding-window modes give what the full-resolution graph gives."""
import contextlib
import io
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")
skimage_data = pytest.importorskip("skimage.data")
import onnx  # noqa: E402
from skimage import filters  # noqa: E402

from eseg import Segmenter  # noqa: E402
from eseg.cli import main  # noqa: E402
from eseg.errors import CheckpointError, ConfigError  # noqa: E402
from eseg.export.onnx import export_onnx, read_metadata  # noqa: E402
from eseg.export.openvino import save_openvino  # noqa: E402
from eseg.export.pipeline import ExportRequest, export_model  # noqa: E402
from eseg.inference import lowres  # noqa: E402
from eseg.inference.geometry import View, mask_upsample  # noqa: E402
from eseg.runtimes import load_runner  # noqa: E402
from eseg.runtimes.info import META_ALIGN_CORNERS, META_OUTPUT, META_OUTPUT_STRIDE  # noqa: E402
from eseg.runtimes.onnxruntime import OnnxRunner  # noqa: E402
from eseg.runtimes.openvino import OpenVINORunner  # noqa: E402
from eseg.runtimes.torch import TorchRunner  # noqa: E402

from .conftest import tiny_model  # noqa: E402

CLASSES = 6
ODD = (97, 203)  # a fixed graph at a size the model pads
MULTIPLE = (64, 96)  # a fixed graph at a multiple of the input stride
IMAGE_SIZES = [(97, 203), (1, 1), (333, 777), (64, 96), (40, 33)]


def cli(*args) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in args]) == 0
    return out.getvalue()


def photo(size, seed=0) -> np.ndarray:
    """A blurred crop of a real photograph, resized to ``size``: regions with borders, like a street."""
    from PIL import Image

    image = (filters.gaussian(skimage_data.coffee(), 4, channel_axis=2) * 255).astype(np.uint8)
    top, left = np.random.default_rng(seed).integers(0, 100, 2)
    crop = Image.fromarray(image[top : top + 300, left : left + 500])
    return np.asarray(crop.resize((size[1], size[0]), Image.BILINEAR))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """A tiny 6-class model whose classifier is scaled so its masks hold several classes with
    borders (about a fifth of the logit cells disagree), exported every way the tests need."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lowres_contract")
    model = tiny_model(num_classes=CLASSES).eval()
    with torch.no_grad():
        model.head.classifier.weight.mul_(30)
    model.save_pretrained(root / "model")
    logs, paths = {}, {}
    lines: list[str] = []
    paths["onnx", "dynamic"] = export_model(ExportRequest(model=str(root / "model"), size=MULTIPLE, dynamic=True,
                                                          out=str(root / "dynamic.onnx")), log=lines.append)
    logs["onnx", "dynamic"] = "\n".join(lines)
    logs["openvino", "odd"] = cli("export", root / "model", "--format", "openvino", "--size", "97x203",
                                  "--out", root / "odd.xml")
    paths["openvino", "odd"] = root / "odd.xml"
    logs["onnx", "full"] = cli("export", root / "model", "--dynamic", "--size", "64x96", "--full-resolution",
                               "--out", root / "full.onnx")
    paths["onnx", "full"] = root / "full.onnx"
    for name, size, dynamic in (("odd", ODD, False), ("multiple", MULTIPLE, False)):
        paths["onnx", name] = export_onnx(model, root / f"{name}.onnx", size=size, dynamic=dynamic, output="lowres")
    for name in ("dynamic", "multiple", "full"):
        paths["openvino", name] = save_openvino(paths["onnx", name], root / f"{name}.xml", precision="fp32")
    paths["onnx", "old"] = strip_contract(paths["onnx", "full"], root / "old.onnx")
    return {"model": model, "root": root, "paths": paths, "logs": logs}


def strip_contract(path, out):
    """A copy of a graph without the contract metadata: as eseg wrote graphs before recording it."""
    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in (META_OUTPUT, META_OUTPUT_STRIDE,
                                                                              META_ALIGN_CORNERS)]
    del proto.metadata_props[:]
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out))
    return out


def runner_for(graphs, backend: str, name: str):
    path = graphs["paths"]["onnx" if name == "old" else backend, name]
    return OnnxRunner(path) if backend == "onnx" else OpenVINORunner(path)


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def oracle_mask(runner, image: np.ndarray) -> np.ndarray:
    """The mask by its definition, written out here: torch's fp32 F.interpolate of the graph's
    low-resolution logits, then the first-index argmax. A dynamic graph: the image padded to the
    stride, the logits resized to the padded size and cropped (the model's forward). A fixed graph:
    the image resized to the graph's size, the logits resized once, straight to the image (by the
    scale factor that maps the graph's input onto the image where the graph pads it)."""
    info = runner.info
    x = Segmenter(runner).normalized([image])[0][None]
    height, width = image.shape[:2]
    stride = info.input_stride
    if info.fixed_size is None:
        padded = (ceil_to(height, stride), ceil_to(width, stride))
        low = runner(F.pad(x, (0, padded[1] - width, 0, padded[0] - height)))
        up = F.interpolate(low, size=padded, mode="bilinear", align_corners=False)
    else:
        fixed = info.fixed_size
        low = runner(F.interpolate(x, size=fixed, mode="bilinear", align_corners=False))
        if fixed[0] % stride == 0 and fixed[1] % stride == 0:
            up = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
        else:
            padded = (ceil_to(fixed[0], stride), ceil_to(fixed[1], stride))
            factors = [(height, width)[i] * padded[i] / (fixed[i] * low.shape[2 + i]) for i in range(2)]
            up = F.interpolate(low, scale_factor=factors, mode="bilinear", align_corners=False,
                               recompute_scale_factor=False)
    return up[0, :, :height, :width].argmax(dim=0).numpy()


def test_graphs_record_their_contract_and_runners_report_it(graphs):
    model = graphs["model"]
    for backend in ("onnx", "openvino"):
        for name, fixed in (("dynamic", None), ("odd", ODD), ("multiple", MULTIPLE)):
            info = runner_for(graphs, backend, name).info
            assert (info.output, info.output_stride, info.align_corners, info.fixed_size) == ("lowres", 4, False, fixed)
        assert runner_for(graphs, backend, "full").info.output == "full"
    assert runner_for(graphs, "onnx", "old").info.output == "full"  # no contract recorded: full resolution
    meta = read_metadata(graphs["paths"]["onnx", "dynamic"])
    assert (meta[META_OUTPUT], meta[META_OUTPUT_STRIDE], meta[META_ALIGN_CORNERS]) == ("lowres", "4", "false")
    assert TorchRunner(model).info.output == "full" and TorchRunner(model).with_output("lowres").info.output == "lowres"


def test_the_default_export_outputs_the_heads_logits_and_full_resolution_is_an_option(graphs):
    model, paths, logs = graphs["model"], graphs["paths"], graphs["logs"]
    dims = [d.dim_value or d.dim_param for d in onnx.load(str(paths["onnx", "dynamic"])).graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["batch", CLASSES, "logit_height", "logit_width"]
    x = torch.randn(2, 3, *ODD)
    with torch.no_grad():
        low, full = model.forward_lowres(x), model(x)
    assert low.shape == (2, CLASSES, 128 // 4, 224 // 4)  # the padded 128x224 input at stride 4
    for backend in ("onnx", "openvino"):
        assert (runner_for(graphs, backend, "dynamic")(x) - low).abs().max() <= 1e-4
        assert (runner_for(graphs, backend, "odd")(x) - low).abs().max() <= 1e-4
        assert (runner_for(graphs, backend, "full")(x) - full).abs().max() <= 1e-4
    assert "graph with low-resolution logits" in logs["onnx", "dynamic"]
    assert "graph with full-resolution logits" in logs["onnx", "full"]
    assert "masks identical to its full-resolution graph's" not in logs["onnx", "full"]


def test_export_parity_compares_masks_with_pytorch_and_the_backends_full_resolution_graph(graphs):
    for key in (("onnx", "dynamic"), ("openvino", "odd")):
        log = graphs["logs"][key]
        lines = [line for line in log.splitlines() if "max |logit diff|" in line]
        assert lines and all("ok;" in line and "argmax agreement 100.000%" in line for line in lines), log
        assert all("masks identical to its full-resolution graph's: 100.000%" in line for line in lines), log
    assert "openvino fp32 97x203" in graphs["logs"]["openvino", "odd"]
    assert "onnx fp32 97x203" in graphs["logs"]["onnx", "dynamic"]  # a dynamic graph: checked at an odd size too


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("name", ["dynamic", "odd", "multiple"])
def test_segmenter_masks_are_the_argmax_of_the_interpolated_low_resolution_logits(graphs, backend, name):
    runner = runner_for(graphs, backend, name)
    seg = Segmenter(runner)
    images = [photo(size, seed) for seed, size in enumerate(IMAGE_SIZES)]
    masks = seg.predict_batch(images)
    for image, mask in zip(images, masks):
        assert mask.shape == image.shape[:2] and mask.dtype == np.uint8
        assert np.array_equal(mask, oracle_mask(runner, image)), (name, image.shape)
    assert len(np.unique(masks[2])) >= 3  # a mask with borders, not one class everywhere


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_masks_equal_the_torch_models_own_argmax_where_the_logits_agree(graphs, backend):
    model = graphs["model"]
    seg = Segmenter(runner_for(graphs, backend, "dynamic"))
    for size in IMAGE_SIZES:
        image = photo(size, seed=sum(size))
        with torch.no_grad():
            full = model(seg.normalized([image])[0][None])[0]
        top2 = full.topk(min(2, CLASSES), dim=0).values
        clear = (top2[0] - top2[1] > 1e-4).numpy()  # pixels the graphs' fp32 rounding cannot flip
        mask = seg(image)
        assert np.array_equal(mask[clear], full.argmax(0).numpy()[clear]) and clear.mean() > 0.99
        assert np.array_equal(Segmenter(model)(image), full.argmax(0).numpy())  # PyTorch: exactly


def test_pytorch_masks_come_from_its_low_resolution_logits(graphs, monkeypatch):
    from eseg.inference import segmenter as segmenter_module

    model = graphs["model"]
    shapes = []
    rule = segmenter_module.lowres_argmax
    monkeypatch.setattr(segmenter_module, "lowres_argmax", lambda x, up: shapes.append(tuple(x.shape)) or rule(x, up))
    seg = Segmenter(model)
    assert seg.mask_runner.info.output == "lowres" and seg.runner.info.output == "full"
    image = photo((97, 203))
    mask = seg(image)
    assert shapes == [(CLASSES, 32, 56)]
    with torch.no_grad():
        assert np.array_equal(mask, model(seg.normalized([image])[0][None])[0].argmax(0).numpy())


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_full_resolution_graphs_old_and_new_keep_working(graphs, backend):
    images = [photo(size, seed) for seed, size in enumerate(IMAGE_SIZES)]
    lowres_masks = Segmenter(runner_for(graphs, backend, "dynamic")).predict_batch(images)
    for name in ("full", "old"):
        runner = runner_for(graphs, backend, name)
        seg = Segmenter(runner)
        for image, mask, low in zip(images, seg.predict_batch(images), lowres_masks):
            logits = seg.predict_logits(image)
            assert np.array_equal(mask, logits.numpy().argmax(0))  # the argmax of its own logits, as before
            assert (mask == low).mean() >= 0.999  # the same masks, up to the runtimes' rounding near ties


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_logits_tta_and_slide_stay_what_the_full_resolution_graph_gives(graphs, backend):
    image = photo((97, 203))
    low, full = runner_for(graphs, backend, "dynamic"), runner_for(graphs, backend, "full")
    for options in ({}, {"mode": "tta", "scales": (0.75, 1.0)}, {"mode": "slide", "crop": 64, "stride": 48},
                    {"flip": True}):
        got, expected = Segmenter(low, **options), Segmenter(full, **options)
        assert (got.predict_logits(image) - expected.predict_logits(image)).abs().max() <= 1e-4, options
        np.testing.assert_allclose(got.predict_proba(image), expected.predict_proba(image), atol=1e-5)
        if options:  # masks of several passes: the argmax of the averaged logits, as before
            assert np.array_equal(got(image), got.predict_logits(image).numpy().argmax(0))


def test_pytorch_logits_are_the_models_forward_bit_for_bit(graphs):
    model = graphs["model"]
    image = photo((97, 203))
    seg = Segmenter(model)
    with torch.no_grad():
        expected = model(seg.normalized([image])[0][None])[0]
    assert torch.equal(seg.predict_logits(image), expected)


def test_a_fixed_graphs_mask_is_one_resize_straight_to_the_image(graphs):
    """At a multiple of the stride the graph's whole output maps onto the image; at an odd size
    only its top-left part does. Either way the mask is close to the two-resize reference (the
    logits resized to the graph's size, then to the image's: what the logits path does)."""
    for name in ("multiple", "odd"):
        seg = Segmenter(runner_for(graphs, "openvino", name))
        for size in ((333, 777), (40, 33)):
            image = photo(size)
            two_resizes = seg.predict_logits(image).numpy().argmax(0)
            assert (seg(image) == two_resizes).mean() >= 0.97, (name, size)
    upsample = mask_upsample(View.of((333, 777), MULTIPLE, MULTIPLE, 32), (16, 24))
    assert upsample == lowres.Upsample.resize_to((333, 777))
    odd = mask_upsample(View.of((40, 33), ODD, ODD, 32), (32, 56))
    assert odd.crop == (40, 33) and odd.size[0] >= 40 and odd.size[1] >= 33 and odd.scale_factor is not None
    assert mask_upsample(View.of((40, 33), ODD, ODD, 32), (32, 56), align_corners=True) is None


def test_the_mask_api_in_steps_and_streamed(graphs):
    seg = Segmenter(runner_for(graphs, "onnx", "dynamic"), batch_size=2)
    images = [photo(size, seed) for seed, size in enumerate([(97, 203), (100, 200), (64, 96), (97, 203)])]
    tensors = seg.normalized(images)
    batches = seg.mask_batches(tensors)
    assert sorted(i for b in batches for i in b.indices) == [0, 1, 2, 3]
    assert [tuple(b.inputs.shape) for b in batches] == [(2, 3, 128, 224), (1, 3, 128, 224), (1, 3, 64, 96)]
    stepped = {i: m for b in batches for i, m in zip(b.indices, seg.batch_masks(b, seg.run_network(b)))}
    expected = seg.masks_from_tensors(tensors)
    assert all(np.array_equal(stepped[i], expected[i]) for i in range(4))

    streamed = list(seg.stream(images))
    assert len(streamed) == 4 and all(np.array_equal(a, b) for a, b in zip(streamed, expected))
    endless = seg.stream(images[i % 4] for i in itertools.count())  # read as it goes, not all first
    assert all(np.array_equal(next(endless), expected[i % 4]) for i in range(6))
    endless.close()
    with pytest.raises(ConfigError, match="single-pass"):
        Segmenter(seg.runner, mode="tta").mask_batches(tensors)


def test_a_low_resolution_graph_without_its_metadata_is_refused_clearly(graphs, tmp_path):
    stripped = strip_contract(graphs["paths"]["onnx", "dynamic"], tmp_path / "stripped.onnx")
    with pytest.raises(CheckpointError, match=r"output contract 'full'; re-export"):
        Segmenter(load_runner(stripped))(photo((64, 96)))


def test_what_has_no_low_resolution_output_says_so(tmp_path):
    peer = torch.nn.Conv2d(3, 2, 1)
    with pytest.raises(ConfigError, match="not an eseg model"):
        export_onnx(peer, tmp_path / "peer.onnx", size=(8, 8), output="lowres")
    with pytest.raises(ConfigError, match="no low-resolution output"):
        TorchRunner(peer).with_output("lowres")
    with pytest.raises(ConfigError, match="output 'half' is not one of"):
        export_model(ExportRequest(model="unused", output="half"))


def test_an_openvino_graph_copied_without_its_contract_reads_as_old(graphs, tmp_path):
    """An IR converted by OpenVINO's own tools from an old full-resolution ONNX graph."""
    xml = tmp_path / "ovc.xml"
    ov.save_model(ov.convert_model(str(graphs["paths"]["onnx", "old"])), str(xml), compress_to_fp16=False)
    seg = Segmenter.from_pretrained(xml)
    assert seg.runner.info.output == "full"
    image = photo((97, 203))
    assert np.array_equal(seg(image), seg.predict_logits(image).numpy().argmax(0))
