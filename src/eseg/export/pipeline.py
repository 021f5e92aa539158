"""``eseg export`` as a library: a saved model in, a checked ONNX or OpenVINO graph out.

Every export goes through the fp32 ONNX graph, which is checked against PyTorch first; the
requested format and precision are then made from it and checked again (max |logit difference|
within a stated tolerance, argmax agreement, and for int8 the mIoU change on validation images).
Everything is written into a temporary folder beside the output and moved into place only when
every check passed (an OpenVINO graph and its weights together, or neither), so a failed export
leaves no file behind, nor a folder it made.

The graph's size defaults to the one size the model was validated at (a dynamic graph when its
validation images varied in size: :func:`export_size`); ``--out`` names are
:func:`~.formats.graph_out_path`'s.

:class:`Exporter` holds one export: the model, the request, and what it made (each checked
graph with its parity, and for int8 the mIoU scores).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from ..runtimes.info import OUTPUT_FULL, OUTPUT_LOWRES, OUTPUTS
from ..sizes import format_size
from .formats import FORMATS, OPSET, QUANT_MODES, graph_out_path, sniff_graph_format
from .parity import PARITY_ATOL, check_parity, format_parity, parity_sizes

TOLERANCES = {"fp32": PARITY_ATOL, "fp16": 5e-2, "bf16": 0.25, "int8": None}  # None: reported, not judged
MIN_ARGMAX_AGREEMENT = {"fp16": 0.99, "bf16": 0.98}


class ExportSizeWarning(UserWarning):
    """A fixed export size other than the one the model was validated at."""


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
    output: str = OUTPUT_LOWRES  # the output contract (eseg.runtimes.info); --full-resolution: OUTPUT_FULL


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
        graph = FORMATS[self.request.format]
        created = missing_folders(self.out.parent)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.out.parent, prefix=".eseg-export-") as tmp_dir:
                work = Path(tmp_dir)
                final = self.convert(self.export_fp32(work), work)
                (work / "previous").mkdir()
                move_into_place(graph.files(final.path), graph.files(self.out), work / "previous")
        except BaseException:
            for folder in created:  # deepest first: the folders this export made, if still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        self.log("wrote " + " and ".join(str(p) for p in reversed(graph.files(self.out))))
        return self.out

    def export_fp32(self, work: Path) -> Stage:
        from .onnx import export_onnx, simplify_onnx

        request = self.request
        path = export_onnx(self.model, work / "model.onnx", size=self.size, dynamic=request.dynamic, opset=request.opset,
                           output=request.output)
        if request.simplify:
            simplify_onnx(path)
        output = ("full-resolution logits" if request.output == OUTPUT_FULL else "low-resolution logits (the masks: "
                  "their exact upsampled argmax; --full-resolution for full-resolution logits)")
        self.log(f"exported {'a dynamic H x W' if request.dynamic else f'a {format_size(self.size)}'} graph "
                 f"with {output}; parity vs PyTorch:")
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
        stage.parity = check_parity(self.model, stage.runner, self.checked_sizes, full_runner=self.full_reference(stage))
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

    def full_reference(self, stage: Stage):
        """A low-resolution graph's reference: the same backend's full-resolution graph at the
        same precision, made beside it (None for a full-resolution or an int8 graph)."""
        if self.request.output == OUTPUT_FULL or stage.precision == "int8":
            return None
        from .onnx import convert_fp16, export_onnx

        work, threads = stage.path.parent, self.request.threads
        full = work / "full.onnx"
        if not full.exists():
            export_onnx(self.model, full, size=self.size, dynamic=self.request.dynamic, opset=self.request.opset)
        if stage.path.suffix == ".xml":
            from ..runtimes.openvino import OpenVINORunner
            from .openvino import save_openvino

            xml = save_openvino(full, work / f"full.{stage.precision}.xml", precision=stage.precision)
            return OpenVINORunner(xml, threads=threads)
        from ..runtimes.onnxruntime import OnnxRunner

        return OnnxRunner(convert_fp16(full, work / "full.fp16.onnx") if stage.precision == "fp16" else full,
                          threads=threads)

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
    if request.output not in OUTPUTS:
        raise ConfigError(f"output {request.output!r} is not one of {', '.join(OUTPUTS)}")
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
    if sniff_graph_format(request.model):
        raise ConfigError(f"'{request.model}' is already an exported graph; export from the model or run folder")
    model_path = resolve_model_path(request.model)
    model = load_model(model_path).eval()
    size, dynamic = export_size(request, model.config, log)
    request = replace(request, size=size, dynamic=dynamic)
    out = graph_out_path(request.out, request.format) if request.out else default_out(request, model_path, size)
    check_out_free(out, request)
    if request.threads:
        torch.set_num_threads(request.threads)
    data = int8_data(request, model, model_path, size) if request.precision == "int8" else None
    return Exporter(model, request, size, out, log, data).write()


def export_size(request: ExportRequest, config, log: Callable[[str], None]) -> tuple[tuple[int, int], bool]:
    """The graph's size (a dynamic graph's: the size it is traced and first checked at) and
    whether it is dynamic. By default: the one size the model was validated at, or a dynamic
    graph when its validation images varied in size. A fixed size other than the validated one
    is exported as asked, with a warning."""
    from ..models.config import validated_size

    validated, recorded = validated_size(config), config.val_sizes is not None
    if request.size is None and not request.dynamic and not recorded:
        log("note: the model records no validation sizes (saved before eseg recorded them, or never trained); "
            + (f"using its eval_size {format_size(config.eval_size)}; pass --size HxW (or --dynamic) for another"
               if config.eval_size is not None else "exporting a dynamic graph"))
    dynamic = request.dynamic or (request.size is None and validated is None)
    if dynamic and not request.dynamic and recorded:
        log(f"the model's validation images varied in size ({described_sizes(config.val_sizes or [])}): exporting "
            "a dynamic graph (pass --size HxW for a fixed one)")
    size = tuple(request.size or validated or (config.val_sizes or [None])[0] or config.eval_size or config.train_crop)
    if not dynamic and recorded and size != validated:
        advice = f"drop --size to export at {format_size(validated)}" if validated else "or use --dynamic"
        warnings.warn(f"exporting a fixed {format_size(size)} graph, but the model was validated at "
                      f"{described_sizes(config.val_sizes)}: images are resized to {format_size(size)} and its "
                      f"accuracy may differ from validation's; {advice}", ExportSizeWarning, stacklevel=2)
    return size, dynamic


def described_sizes(sizes) -> str:
    return ", ".join(format_size(s) for s in sizes) or "no recorded size"


def check_out_free(out: Path, request: ExportRequest) -> None:
    """Every file the export writes must be free (or --overwrite given), and none a folder."""
    for path in FORMATS[request.format].files(out):
        if path.is_dir():
            raise ConfigError(f"'{path}' is a folder, and the export would write a file of that name; to write "
                              f"into it, end --out in '/' (--out {path}/)")
        if path.exists() and not request.overwrite:
            raise ConfigError(f"'{path}' already exists; pass --overwrite to replace it or choose another --out")


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


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def move_into_place(made: list[Path], targets: list[Path], aside: Path) -> None:
    """Each made file onto its target, all or none: targets that exist are first moved into the
    folder ``aside`` (on the same file system) and are put back if any move fails, so an
    OpenVINO graph and its weights are never mixed with a previous export's."""
    set_aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for number, target in enumerate(targets):
            if target.exists():
                set_aside.append((aside / f"previous-{number}", target))
                os.replace(target, set_aside[-1][0])
        for source, target in zip(made, targets):
            os.replace(source, target)
            placed.append(target)
    except BaseException as exc:
        for target in placed:
            target.unlink(missing_ok=True)
        for previous, target in set_aside:
            os.replace(previous, target)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write '{targets[-1]}': {exc}; nothing was written") from exc
        raise
