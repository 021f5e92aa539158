"""``eseg export`` as a library: a saved model in, a checked ONNX or OpenVINO graph out.

Every export goes through the fp32 ONNX graph, which is checked against PyTorch first; the
requested format and precision are then made from it and checked again (max |logit difference|
within a stated tolerance, argmax agreement, and for int8 the mIoU change on validation images).
Everything is written into a temporary folder beside the output and moved into place only when
every check passed, so a failed export leaves no file behind.

:class:`Exporter` holds one export: the model, the request, and what it made (each checked
graph with its parity, and for int8 the mIoU scores).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from ..sizes import format_size
from .formats import FORMATS, OPSET, QUANT_MODES
from .parity import PARITY_ATOL, check_parity, format_parity, parity_sizes

TOLERANCES = {"fp32": PARITY_ATOL, "fp16": 5e-2, "bf16": 0.25, "int8": None}  # None: reported, not judged
MIN_ARGMAX_AGREEMENT = {"fp16": 0.99, "bf16": 0.98}


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
    opset: int = OPSET
    threads: int | None = None
    out: str | None = None
    overwrite: bool = False


@dataclass
class Int8Data:
    """What an int8 export needs, found before anything is written: the validation images its
    mIoU is checked on, the calibration images, and the validation data's name."""

    val: Any
    calib: Any
    name: str


@dataclass
class Stage:
    """One graph the export made: its label in the log (``onnx fp32``), precision, file, runner,
    and its parity with PyTorch at each checked size (empty for a graph only scored by mIoU)."""

    label: str
    precision: str
    path: Path
    runner: Any
    parity: list[dict] = field(default_factory=list)


@dataclass
class Exporter:
    """One export: the model, the request (with its size and output path resolved) and, for
    int8, the validation data in; the checked graphs (:attr:`stages`, by label) and for int8 the
    mIoU of PyTorch and each graph (:attr:`miou`) out."""

    model: torch.nn.Module
    request: ExportRequest
    size: tuple[int, int]
    out: Path
    log: Callable[[str], None] = print
    data: Int8Data | None = None
    stages: dict[str, Stage] = field(default_factory=dict)
    miou: dict[str, float] = field(default_factory=dict)

    @property
    def checked_sizes(self) -> list[tuple[int, int]]:
        return parity_sizes(self.size, self.request.dynamic, self.model.input_stride)

    def write(self) -> Path:
        """Make and check every graph in a temporary folder beside :attr:`out`, then move the
        requested one into place."""
        out = self.out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".eseg-export-") as tmp_dir:
            work = Path(tmp_dir)
            final = self.convert(self.export_fp32(work), work)
            move_into_place(final.path, out)
        self.log(f"wrote {out}" + (f" and {out.with_suffix('.bin')}" if out.suffix == ".xml" else ""))
        return out

    def export_fp32(self, work: Path) -> Stage:
        from .onnx import export_onnx, simplify_onnx

        request = self.request
        path = export_onnx(self.model, work / "model.onnx", size=self.size, dynamic=request.dynamic, opset=request.opset)
        if request.simplify:
            simplify_onnx(path)
        self.log(f"exported {'a dynamic H x W' if request.dynamic else f'a {format_size(self.size)}'} graph; "
                 "parity vs PyTorch:")
        return self.judge(self.onnx_stage("onnx fp32", "fp32", path))

    def onnx_stage(self, label: str, precision: str, path: Path) -> Stage:
        from ..runtimes.onnxruntime import OnnxRunner

        return self.add(Stage(label, precision, path, OnnxRunner(path, threads=self.request.threads)))

    def openvino_stage(self, label: str, precision: str, path: Path) -> Stage:
        from ..runtimes.openvino import OpenVINORunner

        return self.add(Stage(label, precision, path, OpenVINORunner(path, threads=self.request.threads)))

    def add(self, stage: Stage) -> Stage:
        self.stages[stage.label] = stage
        return stage

    def judge(self, stage: Stage) -> Stage:
        """Parity at the checked sizes; CheckpointError when it misses the precision's tolerance."""
        stage.parity = check_parity(self.model, stage.runner, self.checked_sizes)
        tolerance = TOLERANCES[stage.precision]
        self.log(format_parity(stage.label, stage.parity, tolerance))
        worst = max(r["max_abs_diff"] for r in stage.parity)
        agreement = min(r["argmax_agreement"] for r in stage.parity)
        if tolerance is not None and worst > tolerance:
            if stage.precision == "fp32" or agreement < MIN_ARGMAX_AGREEMENT.get(stage.precision, 1.0):
                raise CheckpointError(f"{stage.label} parity check failed (max |logit diff| {worst:.2e} > {tolerance:g}, "
                                      f"argmax agreement {100 * agreement:.2f}%); nothing was written")
            self.log(f"  note: {stage.label} logits differ by more than {tolerance:g}, argmax agreement "
                     f"{100 * agreement:.2f}% is kept")
        return stage

    def convert(self, fp32: Stage, work: Path) -> Stage:
        """The requested format and precision, made from the checked fp32 ONNX graph."""
        precision = self.request.precision
        if self.request.format == "openvino":
            return self.convert_openvino(fp32, work)
        if precision == "fp32":
            return fp32
        if precision == "fp16":
            from .onnx import convert_fp16

            return self.judge(self.onnx_stage("onnx fp16", "fp16", convert_fp16(fp32.path, work / "model.fp16.onnx")))
        int8 = self.onnx_stage("onnx int8", "int8", self.quantize(fp32.path, work / "model.int8.onnx"))
        self.report_int8(fp32, int8)
        return int8

    def convert_openvino(self, fp32: Stage, work: Path) -> Stage:
        from .openvino import save_openvino

        precision = self.request.precision
        source = fp32.path if precision != "int8" else self.quantize(fp32.path, work / "model.qdq.onnx")
        stage = self.openvino_stage(f"openvino {precision}", precision,
                                    save_openvino(source, work / "model.xml", precision=precision))
        self.log(f"OpenVINO inference precision: {stage.runner.precision}")
        if precision != "int8":
            return self.judge(stage)
        reference = self.openvino_stage("openvino fp32", "fp32", save_openvino(fp32.path, work / "fp32.xml", precision="fp32"))
        self.report_int8(reference, stage)
        return stage

    def quantize(self, fp32: Path, dst: Path) -> Path:
        from .calibration import calibration_batches
        from .onnx import quantize_onnx

        calibration = None
        if self.request.quantize_mode == "static":
            fixed = None if self.request.dynamic else self.size
            calibration = calibration_batches(self.int8_data.calib, fixed, self.model.input_stride)
        return quantize_onnx(fp32, dst, self.request.quantize_mode, calibration)

    @property
    def int8_data(self) -> Int8Data:
        if self.data is None:
            raise ConfigError("an int8 export needs its validation data (Exporter.data; export_model finds it)")
        return self.data

    def report_int8(self, fp32: Stage, int8: Stage) -> None:
        """int8 logits against PyTorch (reported), and the mIoU of PyTorch, the fp32 graph and
        the int8 graph on the same validation images."""
        from ..runtimes.torch import TorchRunner
        from .calibration import compare_miou

        try:
            int8.parity = check_parity(self.model, int8.runner, self.checked_sizes)
        except CheckpointError as exc:
            other = "--format openvino --precision int8" if self.request.format == "onnx" else "--format onnx --precision int8"
            raise CheckpointError(f"the int8 graph does not run ({exc}); nothing was written. Try {other}, or "
                                  "--quantize-mode dynamic for ONNX") from exc
        self.log(format_parity(int8.label, int8.parity, None))
        reference = TorchRunner(self.model)
        # PyTorch sees what the graphs see: a fixed-size graph's input size, so only the runtime differs
        reference.info = replace(reference.info, fixed_size=int8.runner.info.fixed_size)
        data = self.int8_data
        self.miou = compare_miou({"torch": reference, fp32.label: fp32.runner, int8.label: int8.runner}, data.val)
        self.log(f"mIoU on {len(data.val)} '{data.name}' validation images:")
        for name, value in self.miou.items():
            self.log(f"  {name:>14}: {100 * value:6.2f}%  (change vs fp32 {100 * (value - self.miou[fp32.label]):+.2f} points)")


def check_request(request: ExportRequest) -> None:
    if request.format not in FORMATS:
        raise ConfigError(f"--format {request.format!r} is not one of {', '.join(FORMATS)}")
    allowed = FORMATS[request.format].precisions
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
    return folder / f"model_{tag}{suffix}{FORMATS[request.format].suffix}"


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
    return Exporter(model, request, size, out, log, data).write()


def int8_data(request: ExportRequest, model, model_path: Path, size) -> Int8Data:
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
    return Int8Data(val=val_set, calib=calib_set, name=spec.get("type"))


def move_into_place(final: Path, out: Path) -> None:
    """The checked graph (and an OpenVINO graph's weights file) onto ``out``, weights first."""
    if final.suffix == ".xml":
        os.replace(final.with_suffix(".bin"), out.with_suffix(".bin"))
    os.replace(final, out)
