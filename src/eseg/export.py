"""ONNX export with parity checks, fp16 and int8 variants, and the ONNX Runtime runner.

``eseg export MODEL_DIR --format onnx --size HxW [--dynamic] [--simplify] [--fp16]
[--quantize dynamic|static --calib-data synthetic] [--out FILE]``

The graph is exported with the TorchScript exporter (``dynamo=False``): it records the model's
shape arithmetic, so with ``--dynamic`` the pad to a multiple of ``2**max_level`` is computed from
the input shape inside the graph (the dynamo exporter needs ``onnxscript``, not a dependency).
Every export is checked against PyTorch with ONNX Runtime at several sizes before it is kept.

The model config is stored in the ONNX metadata (``eseg_config``), so :class:`OnnxRunner` can give
:class:`eseg.Segmenter` the normalization, class names and padding rule without the model folder:
``eseg predict --backend onnxruntime model.onnx``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import fileio
from .cli import parse_size
from .errors import CheckpointError, ConfigError, ESegError
from .models.padding import pad_to_multiple

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
META_CONFIG = "eseg_config"
META_INPUT_SIZE = "eseg_input_size"  # "HxW" for a fixed-size graph, "dynamic" otherwise
PARITY_ATOL = 1e-3
FP16_ATOL = 5e-2  # fp16 keeps ~3 significant digits; stated looser tolerance for the fp16 graph
QUANT_MODES = ("dynamic", "static")


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ESegError(f"ONNX export needs the onnx extra: pip install 'eseg[onnx]' ({exc})") from exc
    return onnx, onnxruntime


# ----------------------------------------------------------------------------------------------
# Export and conversions
# ----------------------------------------------------------------------------------------------


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    size: tuple[int, int],
    dynamic: bool = False,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` as ONNX (input ``images`` (N, 3, H, W) normalized, output ``logits``).

    The batch axis is always dynamic; H and W are too with ``dynamic``, else the graph is for
    ``size``. The model config goes into the metadata and the file passes ``onnx.checker``.
    """
    onnx, _ = _require_onnx()
    path = Path(path)
    model = model.eval()
    dummy = torch.randn(1, 3, *size)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    with fileio.atomic_path(path) as tmp, warnings.catch_warnings():
        # the tracer warns about every shape-to-int conversion; parity is checked explicitly instead
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(
                model, (dummy,), str(tmp), dynamo=False, opset_version=opset, do_constant_folding=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            )
        proto = onnx.load(str(tmp))
        config = getattr(model, "config", None)
        meta = {META_INPUT_SIZE: "dynamic" if dynamic else f"{size[0]}x{size[1]}"}
        if hasattr(config, "to_dict"):  # an ESeg (other models, e.g. benchmark peers, carry no eseg config)
            meta[META_CONFIG] = json.dumps(config.to_dict())
        set_metadata(proto, meta)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return path


def set_metadata(proto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in values.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | Path) -> dict[str, str]:
    onnx, _ = _require_onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def simplify_onnx(path: str | Path) -> Path:
    """Simplify in place with onnxslim (constant folding, dead-node and shape-op elimination)."""
    onnx, _ = _require_onnx()
    try:
        import onnxslim
    except ImportError as exc:
        raise ESegError(f"--simplify needs onnxslim: pip install onnxslim ({exc})") from exc
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    slim = onnxslim.slim(proto)
    set_metadata(slim, meta)
    onnx.checker.check_model(slim)
    with fileio.atomic_path(path) as tmp:
        onnx.save(slim, str(tmp))
    return Path(path)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """fp16 weights and activations inside; float32 input and output (``keep_io_types``)."""
    onnx, _ = _require_onnx()
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _sort_topologically(proto.graph)  # the converter appends its input casts at the end
    onnx.checker.check_model(proto)
    with fileio.atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
    return Path(dst)


def _sort_topologically(graph) -> None:
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise CheckpointError("the fp16 graph has a cycle or a dangling input; export without --fp16")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(id(n) != id(r) for r in ready)]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def quantize_onnx(src: str | Path, dst: str | Path, mode: str, calibration: Iterable[np.ndarray] | None = None) -> Path:
    """int8 quantization with onnxruntime.quantization.

    ``dynamic``: int8 weights, activations quantized on the fly. ``static``: QDQ int8 weights
    (per channel) and activations, with activation ranges calibrated on ``calibration`` batches.
    """
    _require_onnx()
    from onnxruntime import quantization as q

    if mode not in QUANT_MODES:
        raise ConfigError(f"unknown quantization '{mode}'; choose from {QUANT_MODES}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        prepared = Path(tmp_dir) / "prepared.onnx"
        q.quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        with fileio.atomic_path(dst) as tmp:
            if mode == "dynamic":
                q.quantize_dynamic(str(prepared), str(tmp), weight_type=q.QuantType.QInt8, per_channel=True)
            else:
                if calibration is None:
                    raise ConfigError("static quantization needs calibration data (--calib-data)")
                reader = _CalibrationReader(calibration)
                q.quantize_static(
                    str(prepared), str(tmp), reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                    activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                )
            set_metadata_file(tmp, read_metadata(src))
    return Path(dst)


def set_metadata_file(path: Path, values: dict[str, str]) -> None:
    onnx, _ = _require_onnx()
    proto = onnx.load(str(path))
    set_metadata(proto, values)
    onnx.save(proto, str(path))


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over (1, 3, H, W) float32 arrays."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:  # single pass is all quantize_static needs
        return None


# ----------------------------------------------------------------------------------------------
# ONNX Runtime
# ----------------------------------------------------------------------------------------------


def onnx_session(path: str | Path, *, threads: int | None = None, device: str | torch.device | None = None):
    """An InferenceSession with all graph optimizations; CUDA provider when ``device`` is CUDA."""
    _, ort = _require_onnx()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: fp16 graphs log a line per op without a CPU fp16 kernel
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device is not None and torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("device is CUDA but this onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ort raises its own exception types (Fail, InvalidGraph, NoSuchFile...)
        raise CheckpointError(f"onnxruntime cannot load '{path}': {exc}") from exc


class OnnxRunner:
    """The ``onnxruntime`` backend of :class:`eseg.Segmenter` (see the runner protocol in
    :mod:`eseg.inference`): an exported ``.onnx`` file in, (N, C, H, W) logits out."""

    def __init__(self, path: str | Path, *, device: str | torch.device | None = None, threads: int | None = None) -> None:
        from .models import ESegConfig

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file '{path}' does not exist; write one with 'eseg export MODEL_DIR --format onnx'")
        self.session = onnx_session(path, threads=threads, device=device)
        meta = self.session.get_modelmeta().custom_metadata_map  # the file is parsed once, by onnxruntime
        if META_CONFIG not in meta:
            raise CheckpointError(f"'{path}' has no '{META_CONFIG}' metadata; export it with 'eseg export' to use it here")
        config = ESegConfig.from_dict(json.loads(meta[META_CONFIG]), source=f"{path} metadata")
        self.path = path
        self.device = torch.device("cpu")  # outputs come back as CPU tensors
        self.num_classes = config.num_classes
        self.pad_multiple = 2**config.max_level
        self.mean, self.std = tuple(config.mean), tuple(config.std)
        size = meta.get(META_INPUT_SIZE, "dynamic")
        self.fixed_size = None if size == "dynamic" else parse_size(size)
        self.class_names = config.class_names
        self.eval_size = tuple(config.eval_size)
        self.train_crop = tuple(config.train_crop)
        self.extra = dict(config.extra)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(logits).float()


# ----------------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------------


def parity_sizes(size: tuple[int, int], dynamic: bool, multiple: int) -> list[tuple[int, int]]:
    """Sizes to check: the export size, then for a dynamic graph two sizes that need the in-graph
    pad (97x203 and 600x1000, or smaller ones below the export size), each distinct."""
    if not dynamic:
        return [size]
    candidates = [size, (97, 203), (600, 1000)] if size[0] * size[1] >= 600 * 1000 else [size, (97, 203), (size[0] + 37, size[1] + 53)]
    sizes: list[tuple[int, int]] = []
    for s in candidates:
        if s not in sizes:
            sizes.append(s)
    if all(h % multiple == 0 and w % multiple == 0 for h, w in sizes):
        sizes.append((sizes[0][0] - 1, sizes[0][1] - 1))
    return sizes


@torch.no_grad()
def check_parity(
    model: torch.nn.Module, runner, sizes: Sequence[tuple[int, int]], *, batch: int = 1, seed: int = 0
) -> list[dict]:
    """Max abs logit difference and argmax agreement of ``runner`` vs ``model`` on random inputs."""
    generator = torch.Generator().manual_seed(seed)
    results = []
    for size in sizes:
        x = torch.randn(batch, 3, *size, generator=generator)
        expected = model(x)
        got = runner(x)
        if got.shape != expected.shape:
            raise CheckpointError(f"ONNX output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)} at {size}")
        diff = (got - expected).abs().max().item()
        agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
        results.append({"size": list(size), "max_abs_diff": diff, "argmax_agreement": agree,
                        "max_abs_logit": expected.abs().max().item()})
    return results


def format_parity(label: str, results: list[dict], atol: float | None) -> str:
    """One line per size; ``atol=None`` reports the numbers without a verdict (int8)."""
    lines = []
    for r in results:
        verdict = "" if atol is None else f" (tolerance {atol:g}) " + ("ok" if r["max_abs_diff"] <= atol else "FAIL")
        lines.append(
            f"  {label} {r['size'][0]}x{r['size'][1]}: max |logit diff| {r['max_abs_diff']:.2e}{verdict}; "
            f"max |logit| {r['max_abs_logit']:.2f}, argmax agreement {100 * r['argmax_agreement']:.3f}%"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Validation data for calibration and the int8 mIoU check
# ----------------------------------------------------------------------------------------------


def build_eval_dataset(spec: str, *, mean, std, size: tuple[int, int], num_images: int):
    """``spec``: ``synthetic`` (the embedded street scenes at ``size``) or a YAML/JSON file
    holding a dataset spec as in a training config's ``data.dataset``; the ``val`` split."""
    from .data import build_dataset, load_dataset_spec
    from .data.transforms import build_eval_transform

    if spec == "synthetic":
        dataset_spec: dict = {"type": "synthetic", "num_images": num_images, "size": list(size)}
    else:
        dataset_spec = load_dataset_spec(spec)
    dataset = build_dataset(dataset_spec, "val", transform=build_eval_transform(mean=mean, std=std))
    if len(dataset) > num_images:
        subset = torch.utils.data.Subset(dataset, range(num_images))
        subset.num_classes, subset.ignore_index = dataset.num_classes, dataset.ignore_index
        subset.class_names = dataset.class_names
        dataset = subset
    return dataset


def calibration_batches(dataset, size: tuple[int, int] | None, multiple: int) -> list[np.ndarray]:
    """Normalized (1, 3, H, W) arrays: resized to ``size`` for a fixed-size graph (as the
    Segmenter feeds one), else padded with the one padding rule."""
    batches = []
    for index in range(len(dataset)):
        image = dataset[index]["image"][None].float()
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        elif size is None:
            image = pad_to_multiple(image, multiple)
        batches.append(image.numpy())
    return batches


def compare_miou(runners: dict, dataset) -> dict[str, float]:
    """mIoU of each runner on ``dataset`` with the shared evaluation code."""
    from .engine.evaluate import evaluate_dataset

    for name, runner in runners.items():
        if runner.num_classes != dataset.num_classes:
            raise ConfigError(
                f"the model has {runner.num_classes} classes but the validation data has {dataset.num_classes}; "
                "pass --eval-data with a dataset the model was trained for"
            )
    return {name: evaluate_dataset(runner, dataset, progress=False)["mIoU"] for name, runner in runners.items()}


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder written by save_pretrained (config.json + model.safetensors)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    parser.add_argument("--size", default=None, help="input HxW of the graph (default: the model's eval_size)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic height and width (the pad stays in the graph)")
    parser.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim")
    parser.add_argument("--fp16", action="store_true", help=f"fp16 graph with float32 I/O (parity tolerance {FP16_ATOL:g})")
    parser.add_argument("--quantize", choices=QUANT_MODES, default=None, help="int8 quantization with onnxruntime")
    parser.add_argument("--calib-data", default="synthetic",
                        help="calibration data for --quantize static: 'synthetic' or a dataset spec YAML (val split)")
    parser.add_argument("--eval-data", default="synthetic",
                        help="validation data for the int8 mIoU check: 'synthetic' or a dataset spec YAML")
    parser.add_argument("--eval-images", type=int, default=16, help="images used for calibration and the mIoU check")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for the parity checks")
    parser.add_argument("--out", default=None, help="output .onnx file (default: MODEL/model_<size|dynamic>.onnx)")


def _default_out(model_dir: Path, size: tuple[int, int], args) -> Path:
    tag = "dynamic" if args.dynamic else f"{size[0]}x{size[1]}"
    suffix = ".fp16" if args.fp16 else f".int8-{args.quantize}" if args.quantize else ""
    return model_dir / f"model_{tag}{suffix}.onnx"


def run(args: argparse.Namespace) -> int:
    from .inference import resolve_model_dir
    from .models import load_model

    if args.fp16 and args.quantize:
        raise ConfigError("--fp16 and --quantize are exclusive: pick one")
    model_dir = resolve_model_dir(args.model)  # a model folder, or a training run (its best checkpoint)
    model = load_model(model_dir)
    size = parse_size(args.size) if args.size else tuple(model.config.eval_size)
    given = Path(args.model)  # default output next to what the user named (the run folder, not its checkpoint)
    out = Path(args.out) if args.out else _default_out(given if given.is_dir() else given.parent, size, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp_dir:
        fp32_path = Path(tmp_dir) / "fp32.onnx" if (args.fp16 or args.quantize) else out
        export_onnx(model, fp32_path, size=size, dynamic=args.dynamic, opset=args.opset)
        if args.simplify:
            simplify_onnx(fp32_path)
        sizes = parity_sizes(size, args.dynamic, model.pad_multiple)
        print(f"exported {'dynamic H x W' if args.dynamic else f'{size[0]}x{size[1]}'} graph; parity vs PyTorch (onnxruntime):")
        fp32_runner = OnnxRunner(fp32_path, threads=args.threads)
        results = check_parity(model, fp32_runner, sizes)
        print(format_parity("fp32", results, PARITY_ATOL))
        if max(r["max_abs_diff"] for r in results) > PARITY_ATOL:
            raise CheckpointError(f"ONNX parity check failed (tolerance {PARITY_ATOL}); the graph was not kept")

        if args.fp16:
            convert_fp16(fp32_path, out)
            results16 = check_parity(model, OnnxRunner(out, threads=args.threads), sizes)
            print(format_parity("fp16", results16, FP16_ATOL))
            if max(r["max_abs_diff"] for r in results16) > FP16_ATOL:
                print(f"warning: fp16 logits differ by more than {FP16_ATOL}; check the argmax agreement above")
        if args.quantize:
            _quantize_and_report(model, fp32_runner, fp32_path, out, size, args)
    print(f"wrote {out}")
    return 0


def _quantize_and_report(model, fp32_runner: OnnxRunner, fp32_path: Path, out: Path, size, args) -> None:
    """Quantize, then score torch, fp32 ONNX and int8 ONNX on the same validation images."""
    from .inference import TorchRunner

    config = model.config
    calibration = None
    if args.quantize == "static":
        calib_set = build_eval_dataset(args.calib_data, mean=config.mean, std=config.std, size=size,
                                       num_images=args.eval_images)
        calibration = calibration_batches(calib_set, None if args.dynamic else size, model.pad_multiple)
    quantize_onnx(fp32_path, out, args.quantize, calibration)
    int8_runner = OnnxRunner(out, threads=args.threads)
    print(format_parity(f"int8-{args.quantize}", check_parity(model, int8_runner, [size]), None))
    val_set = build_eval_dataset(args.eval_data, mean=config.mean, std=config.std, size=size, num_images=args.eval_images)
    scores = compare_miou({"torch": TorchRunner(model), "onnx fp32": fp32_runner, f"int8 {args.quantize}": int8_runner}, val_set)
    base = scores["onnx fp32"]
    print(f"mIoU on {len(val_set)} '{args.eval_data}' val images:")
    for name, value in scores.items():
        print(f"  {name:>14}: {100 * value:6.2f}%  (change vs fp32 ONNX {100 * (value - base):+.2f} points)")
