"""GPU frames per second, network only and end to end, in TensorRT fp16 and torch.compile fp16.

On a GPU machine, with the torch it already has (nothing here installs or replaces torch):

    PYTHONPATH=src python benchmarks/gpu_fps.py --install --out gpu_fps.json

``--install`` pip-installs what is missing of eseg's other dependencies, smp, onnx and
``tensorrt`` (about two minutes); the run keeps itself inside ``--budget-s`` (420 s: no model is
started that would end past it, judged by the slowest so far) and lists the entries it had no
time left for. TensorRT is skipped, with the reason printed, where it is not installed or there
is no CUDA device. ``--device cpu --quick`` runs every other step on the CPU at a tiny size, in
fp32 and eager (no compile): the test of this script.

Entries: eseg_lite_s, eseg_rt_s, eseg_rt_m, torchvision LRASPP-MobileNetV3-L and smp DeepLabV3+
(eseg.benchmark's peers), 19 classes, random init, batch 1, at 512x1024 and 1024x2048.
- network: normalized input already on the device, one forward, synchronized; FPS = 1 / median.
- end to end: JPEG file -> decode (PIL) -> normalize (eseg's one rule) -> device -> network ->
  argmax on the device -> uint8 mask to the host -> PNG (level 1) on disk, one image after the
  other (no overlap); FPS = images / seconds. The same file pipeline for every entry.
The full-resolution output of each graph is used (eseg's ``forward``, the peers' own).
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

MODELS = ("eseg_lite_s", "eseg_rt_s", "eseg_rt_m", "lraspp_mobilenet_v3_large", "smp_deeplabv3plus")
SIZES = ((512, 1024), (1024, 2048))
QUICK_SIZE = (64, 128)
NUM_CLASSES = 19
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # one normalisation for every entry
# import name -> pip name; never torch or torchvision: the machine's own are measured
NEEDED = {"timm": "timm", "safetensors": "safetensors", "huggingface_hub": "huggingface-hub", "yaml": "pyyaml",
          "tqdm": "tqdm", "matplotlib": "matplotlib", "segmentation_models_pytorch": "segmentation-models-pytorch",
          "onnx": "onnx", "tensorrt": "tensorrt"}


@dataclass
class Settings:
    device: torch.device
    sizes: tuple[tuple[int, int], ...]
    models: tuple[str, ...]
    runs: int
    warmup: int
    images: int
    compile_backend: str | None  # torch.compile's backend (inductor); None: plain eager (the quick check)
    half: bool
    deadline: float  # time.monotonic() after which no new entry starts


@dataclass
class Result:
    model: str
    size: str
    backend: str
    precision: str
    network_fps: float | None = None
    end_to_end_fps: float | None = None
    note: str = ""


def install_missing(device: torch.device) -> None:
    """pip-install the missing packages of NEEDED (TensorRT only for a CUDA device)."""
    wanted = [pip for module, pip in NEEDED.items()
              if importlib.util.find_spec(module) is None and (module != "tensorrt" or device.type == "cuda")]
    if wanted:
        print(f"installing {' '.join(wanted)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *wanted], check=False)
        importlib.invalidate_caches()


def tensorrt_missing(device: torch.device) -> str:
    """Why TensorRT entries cannot run here, or '' when they can."""
    if device.type != "cuda":
        return "TensorRT needs a CUDA device"
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (pip install tensorrt, or run with --install)"
    return ""


def compiled_network(model: torch.nn.Module, settings: Settings) -> Callable:
    """torch.compile of the model (fp16 weights on the GPU); calls take normalized fp32 input."""
    model = model.to(settings.device)
    if settings.half:
        model = model.half()
    compiled = model if settings.compile_backend is None else torch.compile(
        model, backend=settings.compile_backend, dynamic=False)
    dtype = torch.float16 if settings.half else torch.float32

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x.to(dtype))

    return run


def onnx_graph(model: torch.nn.Module, size: tuple[int, int], folder: Path) -> Path:
    """The fixed-size ONNX graph eseg's exporter writes (batch axis dynamic)."""
    from eseg.export.onnx import export_onnx

    return export_onnx(model.cpu().float(), folder / "model.onnx", size=size)


def tensorrt_network(onnx_path: Path, size: tuple[int, int]) -> Callable:
    """An fp16 TensorRT engine built from the ONNX graph, run on its own CUDA stream."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        raise RuntimeError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, 3, *size), (1, 3, *size), (1, 3, *size))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build an engine from the graph")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    return _engine_runner(engine, trt, name, size)


def _engine_runner(engine, trt, input_name: str, size: tuple[int, int]) -> Callable:
    context = engine.create_execution_context()
    context.set_input_shape(input_name, (1, 3, *size))
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    output_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    output = torch.empty(tuple(context.get_tensor_shape(output_name)),
                         dtype=dtypes[engine.get_tensor_dtype(output_name)], device="cuda")
    input_dtype = dtypes[engine.get_tensor_dtype(input_name)]
    stream = torch.cuda.Stream()

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(input_dtype).contiguous()
        stream.wait_stream(torch.cuda.current_stream())  # the input is ready
        context.set_tensor_address(input_name, x.data_ptr())
        context.set_tensor_address(output_name, output.data_ptr())
        context.execute_async_v3(stream.cuda_stream)
        torch.cuda.current_stream().wait_stream(stream)  # whoever reads the output waits for it
        return output

    return run


def network_fps(network: Callable, size: tuple[int, int], settings: Settings) -> float:
    from eseg.benchmark.timing import interleaved_times, percentile

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(settings.device)
    times = interleaved_times({"network": lambda: network(x)}, settings.runs, settings.warmup, settings.device)
    return 1.0 / percentile(times["network"], 50)


def end_to_end_fps(network: Callable, images: list[Path], out_dir: Path, settings: Settings) -> float:
    """Files in, mask PNGs out, one after the other; the first pass warms up, the second is timed."""
    from eseg import fileio
    from eseg.data.io import as_rgb
    from eseg.data.transforms import normalize

    def one(path: Path) -> None:
        x = normalize(as_rgb(path), MEAN, STD)[None].to(settings.device, non_blocking=True)
        mask = network(x).argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
        fileio.write_png(out_dir / f"{path.stem}.png", mask, compress_level=1)

    for path in images[: settings.warmup]:
        one(path)
    start = time.perf_counter()
    for path in images:
        one(path)
    return len(images) / (time.perf_counter() - start)


def write_images(size: tuple[int, int], count: int, folder: Path) -> list[Path]:
    """``count`` synthetic street scenes as JPEG (quality 90)."""
    from PIL import Image

    from eseg.data.synthetic import render_street

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image, _ = render_street(np.random.default_rng(i), size)
        paths.append(folder / f"street_{i}.jpg")
        Image.fromarray(image).save(paths[-1], quality=90)
    return paths


def measure(result: Result, network: Callable, size, images: list[Path], work: Path, settings: Settings) -> Result:
    result.network_fps = network_fps(network, size, settings)
    result.end_to_end_fps = end_to_end_fps(network, images, work / "masks", settings)
    return result


def entries_for(model_name: str, size: tuple[int, int], images: list[Path], work: Path,
                settings: Settings) -> list[Result]:
    """The compile entry and the TensorRT entry of one model at one size."""
    from eseg.benchmark.models import build_model

    label, precision = f"{size[0]}x{size[1]}", "fp16" if settings.half else "fp32"
    results = []
    compiled = Result(model_name, label, "torch eager" if settings.compile_backend is None else "torch.compile",
                      precision)
    try:
        results.append(measure(compiled, compiled_network(build_model(model_name, num_classes=NUM_CLASSES), settings),
                               size, images, work, settings))
    except Exception as exc:  # a failing entry is reported, the others still run
        compiled.note = f"failed: {type(exc).__name__}: {exc}"[:300]
        results.append(compiled)
    trt_entry = Result(model_name, label, "TensorRT", "fp16")
    trt_entry.note = tensorrt_missing(settings.device)
    if not trt_entry.note:
        try:
            graph = onnx_graph(build_model(model_name, num_classes=NUM_CLASSES), size, work)
            measure(trt_entry, tensorrt_network(graph, size), size, images, work, settings)
        except Exception as exc:
            trt_entry.note = f"failed: {type(exc).__name__}: {exc}"[:300]
    results.append(trt_entry)
    return results


def run(settings: Settings) -> list[Result]:
    from eseg.tables import markdown_row

    reason = tensorrt_missing(settings.device)
    if reason:
        print(f"TensorRT skipped: {reason}", flush=True)
    results: list[Result] = []
    longest = 0.0  # seconds the slowest model's entries took so far
    with tempfile.TemporaryDirectory() as tmp:
        for size in settings.sizes:
            images = write_images(size, settings.images, Path(tmp) / f"images_{size[0]}")
            for model_name in settings.models:
                if time.monotonic() + longest > settings.deadline:  # the next one would not end in time
                    results.append(Result(model_name, f"{size[0]}x{size[1]}", "-", "-",
                                          note="not run: the time budget was spent"))
                    continue
                start = time.monotonic()
                results += entries_for(model_name, size, images, Path(tmp), settings)
                longest = max(longest, time.monotonic() - start)
                print("\n".join(markdown_row(cells(r)) for r in results[-2:]), flush=True)
    return results


COLUMNS = ("model", "size", "backend", "precision", "network FPS", "end-to-end FPS", "note")


def cells(result: Result) -> list[str]:
    def fps(value):
        return f"{value:.1f}" if value else "-"

    return [result.model, result.size, result.backend, result.precision, fps(result.network_fps),
            fps(result.end_to_end_fps), result.note]


def machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    trt = "tensorrt " + __import__("tensorrt").__version__ if not tensorrt_missing(device) else "no TensorRT"
    return f"{name}; torch {torch.__version__}; {trt}"


def settings_from(args: argparse.Namespace) -> Settings:
    device = torch.device(args.device)
    quick = args.quick
    return Settings(device=device, sizes=(QUICK_SIZE,) if quick else tuple(args.sizes),
                    models=tuple(args.models), runs=2 if quick else args.runs, warmup=1 if quick else 5,
                    images=2 if quick else args.images,
                    compile_backend=None if quick else "inductor",
                    half=device.type == "cuda", deadline=time.monotonic() + args.budget_s)


def main(argv: list[str] | None = None) -> int:
    from eseg.sizes import parse_size
    from eseg.tables import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=list(SIZES))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--images", type=int, default=10, help="end-to-end images per size")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no entry starts after this many seconds")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE[0]}x{QUICK_SIZE[1]}, 2 runs: a check")
    parser.add_argument("--install", action="store_true", help="pip-install missing packages first (never torch)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    settings = settings_from(args)
    if args.install:
        install_missing(settings.device)
    print(f"# {machine(settings.device)}", flush=True)
    results = run(settings)
    print(markdown_table(COLUMNS, [cells(r) for r in results]))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(settings.device), "results": [asdict(r) for r in results]},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
