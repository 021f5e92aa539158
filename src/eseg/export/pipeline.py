"""``eseg export`` as a library: a saved model in, a checked ONNX or OpenVINO graph out.

Every export goes through the fp32 ONNX graph, which is checked against PyTorch first; the
requested format and precision are then made from it and checked again (max |logit difference|
within a stated tolerance, argmax agreement, and for int8 the mIoU change on validation images).
Everything is written into a temporary folder beside the output and moved into place only when
every check passed, so a failed export leaves no file behind.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..sizes import format_size
from .parity import PARITY_ATOL, check_parity, format_parity, parity_sizes

FORMATS = {"onnx": (".onnx", ("fp32", "fp16", "int8")), "openvino": (".xml", ("fp32", "bf16", "int8"))}
TOLERANCES = {"fp32": PARITY_ATOL, "fp16": 5e-2, "bf16": 0.25, "int8": None}  # None: reported, not judged
MIN_ARGMAX_AGREEMENT = {"fp16": 0.99, "bf16": 0.98}
QUANT_MODES = ("static", "dynamic")


@dataclass
class ExportRequest:
    model: str
    format: str = "onnx"
    size: tuple[int, int] | None = None
    dynamic: bool = False
    simplify: bool = False
    precision: str = "fp32"
    quantize_mode: str = "static"
    calib_data: str | None = None
    eval_data: str | None = None
    eval_images: int = 16
    opset: int = 17
    threads: int | None = None
    out: str | None = None
    overwrite: bool = False


def check_request(request: ExportRequest) -> None:
    if request.format not in FORMATS:
        raise ConfigError(f"--format {request.format!r} is not one of {', '.join(FORMATS)}")
    allowed = FORMATS[request.format][1]
    if request.precision not in allowed:
        raise ConfigError(f"--precision {request.precision} is not available for {request.format}; use one of {', '.join(allowed)}")
    if request.quantize_mode not in QUANT_MODES:
        raise ConfigError(f"--quantize-mode {request.quantize_mode!r} is not one of {', '.join(QUANT_MODES)}")
    if request.format == "openvino" and request.precision == "int8" and request.quantize_mode != "static":
        raise ConfigError("OpenVINO int8 is calibrated (static) quantization; drop --quantize-mode dynamic")


def default_out(request: ExportRequest, model_path: Path, size: tuple[int, int]) -> Path:
    """Next to what the user named (the run folder, not its checkpoint)."""
    given = Path(request.model)
    folder = given if given.is_dir() else given.parent if given.exists() else model_path.parent
    tag = "dynamic" if request.dynamic else format_size(size)
    suffix = "" if request.precision == "fp32" else f".{request.precision}"
    return folder / f"model_{tag}{suffix}{FORMATS[request.format][0]}"


def export_model(request: ExportRequest, log: Callable[[str], None] = print) -> Path:
    """Export, check and write the graph the request describes; returns its path."""
    from ..models.base import load_model
    from ..paths import resolve_model_path

    check_request(request)
    model_path = resolve_model_path(request.model)
    if model_path.suffix in (".onnx", ".xml"):
        raise ConfigError(f"'{model_path}' is already an exported graph; export from the model or run folder")
    model = load_model(model_path).eval()
    size = tuple(request.size or model.config.eval_size)
    out = Path(request.out) if request.out else default_out(request, model_path, size)
    if out.exists() and not request.overwrite:
        raise ConfigError(f"'{out}' already exists; pass --overwrite to replace it or choose another --out")
    if request.threads:
        torch.set_num_threads(request.threads)
    data = int8_data(request, model, model_path, size) if request.precision == "int8" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".eseg-export-") as tmp_dir:
        work = Path(tmp_dir)
        fp32 = export_checked_fp32(model, work, size, request, log)
        final = convert(model, fp32, work, size, request, data, log)
        move_into_place(final, out)
    log(f"wrote {out}" + (f" and {out.with_suffix('.bin')}" if out.suffix == ".xml" else ""))
    return out


def export_checked_fp32(model, work: Path, size, request: ExportRequest, log) -> Path:
    from ..runtimes.onnxruntime import OnnxRunner
    from .onnx import export_onnx, simplify_onnx

    path = export_onnx(model, work / "model.onnx", size=size, dynamic=request.dynamic, opset=request.opset)
    if request.simplify:
        simplify_onnx(path)
    log(f"exported {'a dynamic H x W' if request.dynamic else f'a {format_size(size)}'} graph; parity vs PyTorch:")
    judge(model, OnnxRunner(path, threads=request.threads), "onnx fp32", "fp32", size, request, log)
    return path


def judge(model, runner, label: str, precision: str, size, request: ExportRequest, log) -> list[dict]:
    """Parity at the checked sizes; CheckpointError when it misses the precision's tolerance."""
    sizes = parity_sizes(size, request.dynamic, model.input_stride)
    results = check_parity(model, runner, sizes)
    tolerance = TOLERANCES[precision]
    log(format_parity(label, results, tolerance))
    worst = max(r["max_abs_diff"] for r in results)
    agreement = min(r["argmax_agreement"] for r in results)
    if tolerance is not None and worst > tolerance:
        if precision == "fp32" or agreement < MIN_ARGMAX_AGREEMENT.get(precision, 1.0):
            raise CheckpointError(f"{label} parity check failed (max |logit diff| {worst:.2e} > {tolerance:g}, argmax "
                                  f"agreement {100 * agreement:.2f}%); nothing was written")
        log(f"  note: {label} logits differ by more than {tolerance:g}, argmax agreement {100 * agreement:.2f}% is kept")
    return results


def convert(model, fp32: Path, work: Path, size, request: ExportRequest, data, log) -> Path:
    """The requested format and precision, made from the checked fp32 ONNX graph."""
    from ..runtimes.onnxruntime import OnnxRunner

    if request.format == "onnx":
        if request.precision == "fp32":
            return fp32
        if request.precision == "fp16":
            from .onnx import convert_fp16

            path = convert_fp16(fp32, work / "model.fp16.onnx")
            judge(model, OnnxRunner(path, threads=request.threads), "onnx fp16", "fp16", size, request, log)
            return path
        path = quantize(fp32, work / "model.int8.onnx", request, data, model)
        report_int8(model, {"onnx fp32": OnnxRunner(fp32, threads=request.threads),
                            "onnx int8": OnnxRunner(path, threads=request.threads)}, data, size, request, log)
        return path
    return convert_openvino(model, fp32, work, size, request, data, log)


def convert_openvino(model, fp32: Path, work: Path, size, request: ExportRequest, data, log) -> Path:
    from ..runtimes.openvino import OpenVINORunner
    from .openvino import save_openvino

    source = fp32 if request.precision != "int8" else quantize(fp32, work / "model.qdq.onnx", request, data, model)
    xml = save_openvino(source, work / "model.xml", precision=request.precision)
    runner = OpenVINORunner(xml, threads=request.threads)
    log(f"OpenVINO inference precision: {runner.precision}")
    if request.precision == "int8":
        report_int8(model, {"openvino fp32": OpenVINORunner(save_openvino(fp32, work / "fp32.xml", precision="fp32"),
                                                            threads=request.threads),
                            "openvino int8": runner}, data, size, request, log)
    else:
        judge(model, runner, f"openvino {request.precision}", request.precision, size, request, log)
    return xml


def int8_data(request: ExportRequest, model, model_path: Path, size) -> dict:
    """Calibration and validation images, found (and checked) before anything is written."""
    from .calibration import eval_data_spec, eval_dataset

    config = model.config
    spec, split = eval_data_spec(request.eval_data, model_path, config.num_classes, size)
    val_set = eval_dataset(spec, split, mean=config.mean, std=config.std, num_classes=config.num_classes,
                           num_images=request.eval_images)
    calib_set = val_set
    if request.calib_data:
        calib_spec, calib_split = eval_data_spec(request.calib_data, model_path, config.num_classes, size)
        calib_set = eval_dataset(calib_spec, calib_split, mean=config.mean, std=config.std,
                                 num_classes=config.num_classes, num_images=request.eval_images)
    return {"val": val_set, "calib": calib_set, "name": spec.get("type")}


def quantize(fp32: Path, dst: Path, request: ExportRequest, data: dict, model) -> Path:
    from .calibration import calibration_batches
    from .onnx import quantize_onnx

    calibration = None
    if request.quantize_mode == "static":
        fixed = None if request.dynamic else tuple(request.size or model.config.eval_size)
        calibration = calibration_batches(data["calib"], fixed, model.input_stride)
    return quantize_onnx(fp32, dst, request.quantize_mode, calibration)


def report_int8(model, runners: dict, data: dict, size, request: ExportRequest, log) -> None:
    """int8 logits against PyTorch (reported), and the mIoU of torch, fp32 and int8 on the
    same validation images."""
    from ..runtimes.torch import TorchRunner
    from .calibration import compare_miou

    label, int8 = list(runners.items())[-1]
    try:
        parity = check_parity(model, int8, parity_sizes(size, request.dynamic, model.input_stride))
    except CheckpointError as exc:
        other = "--format openvino --precision int8" if request.format == "onnx" else "--format onnx --precision int8"
        raise CheckpointError(f"the int8 graph does not run ({exc}); nothing was written. Try {other}, or "
                              "--quantize-mode dynamic for ONNX") from exc
    log(format_parity(label, parity, None))
    reference = TorchRunner(model)
    # PyTorch sees what the graphs see: a fixed-size graph's input size, so only the runtime differs
    reference.info = replace(reference.info, fixed_size=int8.info.fixed_size)
    scores = compare_miou({"torch": reference, **runners}, data["val"])
    base = list(scores.values())[1]
    log(f"mIoU on {len(data['val'])} '{data['name']}' validation images:")
    for name, value in scores.items():
        log(f"  {name:>14}: {100 * value:6.2f}%  (change vs fp32 {100 * (value - base):+.2f} points)")


def move_into_place(final: Path, out: Path) -> None:
    """The checked graph (and an OpenVINO graph's weights file) onto ``out``, weights first."""
    if final.suffix == ".xml":
        os.replace(final.with_suffix(".bin"), out.with_suffix(".bin"))
    os.replace(final, out)
