"""``eseg benchmark --end-to-end``: from the image file on disk to the mask file on disk, per image.

Every entry runs through one file pipeline, ``eseg predict --save masks``'s own
(:func:`eseg.inference.predict.predict_sources`: decode threads, normalisation, the network, the
mask, the mask writer), with a :class:`~eseg.inference.segmenter.Segmenter` over the entry's
graph; only the graph differs. The graphs are fixed-size ONNX graphs run by OpenVINO (fp32 unless
``--precision`` says bf16; always set, never the CPU's default) or onnxruntime:

- an eseg model (registered, or a trained model's run or model folder) exported with eseg's
  default output, the head's low-resolution logits (``lowres``); the mask is their exact
  upsampled argmax (:func:`eseg.inference.lowres.lowres_argmax`);
- every peer twice: its native output (``full``: the full-resolution logits its own last bilinear
  upsample makes; the mask is their argmax), and the same network without that upsample
  (``lowres``, :func:`.models.peer_lowres`), its mask read by the same exact rule with the
  peer's own ``align_corners``. The two give the same masks (a test checks it pixel for pixel
  in PyTorch; the run reports the differing pixels of the two graphs' masks);
- an exported graph named by its path, as its metadata says.

Per entry, in one process and interleaved rounds (each entry once per round, the start rotated):
the network alone on the decoded, normalised images (batch 1), and the whole path over every
image into a temporary folder, in steady state; start-up (reading and compiling the graph, and
the first image) is reported apart. Beside each figure: the share of disagreeing cells of the
entry's low-resolution logits (:func:`~eseg.inference.lowres.disagreeing_cells`), on which the
mask step's cost depends. Untrained models can first be fitted on synthetic streets (:mod:`.fit`).
"""
from __future__ import annotations

import re
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from ..errors import ConfigError, DataError
from ..export.formats import precision_name, sniff_graph_format
from ..inference.predict import collect_sources, predict_sources
from ..inference.segmenter import Segmenter
from ..runtimes.info import OUTPUT_FULL, OUTPUT_LOWRES
from ..sizes import format_size
from .fit import FitPlan, fit_model, synthetic_batches
from .graphs import Graph, entry_runner, model_graphs, normalisation
from .models import build_or_skip
from .peers import PEERS
from .run import check_models, environment
from .timing import busy_fraction, noise_warnings
from .trained import is_model_path, sizing_for

GRAPH_BACKENDS = ("openvino", "onnxruntime")
DEFAULT_IMAGES = 8
SAVE = ("masks",)  # the fast path of eseg predict: masks alone


@dataclass
class EndToEndSettings:
    models: list[str]  # registered names, peers, and trained models' paths
    sizes: list[tuple[int, int]] = field(default_factory=list)  # empty: --source's first image's, a trained
    # model's validated size, else 512x1024 (resolved_sizes)
    backends: list[str] = field(default_factory=lambda: ["openvino"])
    precision: str = "fp32"  # OpenVINO's inference precision
    threads: int = 2
    runs: int = 5  # interleaved rounds over every image
    warmup: int = 2  # untimed network calls per entry after its start-up
    images: int = DEFAULT_IMAGES  # synthetic scenes per size, or the first N images of ``source``
    source: str | None = None
    fit: FitPlan = field(default_factory=lambda: FitPlan(0))
    references: list[str] = field(default_factory=list)
    num_classes: int | None = None
    encoder: str | None = None
    model_options: dict = field(default_factory=dict)


@dataclass
class EndToEndResult:
    model: str
    output: str  # "lowres" (the exact low-resolution argmax) or "full" (argmax of full-resolution logits)
    size: list[int]
    backend: str
    precision: str = "fp32"
    weights: str = "random init"
    network_ms_median: float | None = None
    end_to_end_ms_per_image: float | None = None  # median over rounds of (seconds / images)
    images_per_s: float | None = None
    end_to_end_over_network: float | None = None
    startup_s: float | None = None  # reading and compiling the graph, and the first image
    disagreeing_cells: float | None = None  # share of the low-resolution cells, mean over the images
    pixels_differing_from_native: float | None = None  # a peer's lowres masks against its full graph's
    images: int = 0
    masks_written: int = 0
    end_to_end_vs: dict = field(default_factory=dict)  # "reference (output)" -> ratio
    network_vs: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model} ({self.output})"


@dataclass
class Entry:
    """One graph through the file pipeline: its row, its Segmenter and what its rounds measured."""

    result: EndToEndResult
    segmenter: Segmenter
    network_s: list[float] = field(default_factory=list)
    end_to_end_s: list[float] = field(default_factory=list)  # seconds per image, one per round
    last_out: Path | None = None

    @property
    def key(self) -> str:
        r = self.result
        return f"{r.label} {format_size(r.size)} {r.backend}"

    @property
    def folder_name(self) -> str:
        """Where its masks go, below the work folder's ``masks``."""
        return re.sub(r"[^\w.-]+", "_", self.key)


def check_settings(settings: EndToEndSettings) -> None:
    check_models(settings.models)
    bad = [b for b in settings.backends if b not in GRAPH_BACKENDS]
    if bad or not settings.backends:
        raise ConfigError(f"--end-to-end runs exported graphs: --backends {','.join(bad) or '(none)'} is not one of "
                          f"{', '.join(GRAPH_BACKENDS)}")
    missing = [r for r in settings.references if r not in settings.models]
    if missing:
        raise ConfigError(f"--reference {', '.join(missing)} is not among --models {settings.models}")
    if settings.source is not None:
        source_images(settings.source)


def source_images(source: str) -> list[Path]:
    """The images of the folder ``source``, sorted; ConfigError/DataError saying what is wrong."""
    from ..inference.video import is_video

    if not Path(source).is_dir():
        raise ConfigError(f"--source '{source}' is not a folder; name a folder of images, or leave --source out to "
                          "time synthetic street scenes rendered at each --size")
    try:
        files = [path for path, _ in collect_sources(source)]
    except DataError as exc:
        raise DataError(f"--source '{source}' holds no images to time: {exc}") from exc
    videos = [f for f in files if is_video(f)]
    if videos:
        raise ConfigError(f"--source '{source}' holds videos (e.g. '{videos[0]}'); the end-to-end benchmark times "
                          "images: name a folder of images only")
    return files


def run_end_to_end(settings: EndToEndSettings, work_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Time every entry at every size; returns the results document (:mod:`.end_to_end_report`)."""
    check_settings(settings)
    torch.set_num_threads(settings.threads)
    busy = busy_fraction()  # before this run loads the machine itself
    settings = resolved_sizes(settings, log)
    models = prepare_models(settings, log)
    entries: list[Entry] = []
    failed: list[EndToEndResult] = []
    for size in settings.sizes:
        folder = benchmark_images(settings, size, work_dir / f"images_{format_size(size)}")
        built, errors = build_entries(models, settings, size, folder, work_dir, log)
        time_entries(built, folder, settings, work_dir, log)
        entries += built
        failed += errors
    results = [e.result for e in entries] + failed
    references = settings.references or [m for m in settings.models if m in PEERS] or settings.models[:1]
    add_ratios(results, references)
    times = {entry.key: entry.end_to_end_s for entry in entries}
    return {"mode": "end_to_end",
            "settings": {**settings_dict(settings), "references": references, "encoder": models.encoder},
            "environment": environment(settings.threads, torch.device("cpu")),
            "fit": models.fit_records, "skipped": models.skipped, "notes": models.notes(settings),
            "warnings": noise_warnings(times, settings.runs, settings.threads, busy),
            "end_to_end": [asdict(r) for r in sorted(results, key=row_order(settings))]}


def settings_dict(settings: EndToEndSettings) -> dict:
    doc = asdict(settings)
    doc["sizes"] = [list(size) for size in settings.sizes]
    doc["fit"] = {**asdict(settings.fit), "size": list(settings.fit.size)}
    return doc


def row_order(settings: EndToEndSettings) -> Callable[[EndToEndResult], tuple]:
    """Rows by size, then in --models order, each model's lowres row before its full one."""
    def key(r: EndToEndResult) -> tuple:
        return (settings.sizes.index(tuple(r.size)), settings.models.index(r.model), r.output != OUTPUT_LOWRES,
                settings.backends.index(r.backend))
    return key


def resolved_sizes(settings: EndToEndSettings, log: Callable[[str], None]) -> EndToEndSettings:
    """``--size``, else the first --source image's size, else a trained model's validated size,
    else 512x1024; the classes and smp encoder as :func:`.trained.sizing_for` gives them."""
    from ..data.io import header_size

    size = settings.sizes[0] if settings.sizes else None
    if size is None and settings.source is not None:
        first = source_images(settings.source)[0]
        size = header_size(first)
        log(f"timing at {format_size(size)}: the size of '{first}', the first image of --source (--size for another)")
    sizing = sizing_for(settings.models, size, settings.num_classes, log)
    return replace(settings, sizes=settings.sizes or [sizing.size], num_classes=sizing.num_classes,
                   encoder=settings.encoder or sizing.encoder)


def benchmark_images(settings: EndToEndSettings, size: tuple[int, int], folder: Path) -> Path:
    """A folder of the images to time: the first ``settings.images`` of --source (linked), or that
    many synthetic street scenes rendered at ``size`` and written as PNG."""
    from ..data.synthetic import SyntheticStreets

    folder.mkdir(parents=True, exist_ok=True)
    if settings.source is not None:
        for number, path in enumerate(source_images(settings.source)[: settings.images]):
            link = folder / f"{number:04d}_{path.name}"  # a flat folder: names stay apart
            try:
                link.symlink_to(path.resolve())
            except OSError:  # no symlinks here: copy
                shutil.copyfile(path, link)
        return folder
    scenes = SyntheticStreets("val", num_images=settings.images, size=size, seed=0)
    for index in range(settings.images):
        fileio.write_png(folder / f"scene_{index:04d}.png", scenes.read_sample(index)[0])
    return folder


@dataclass
class Models:
    """The benchmarked models, built (and fitted) once for every size."""

    modules: dict[str, torch.nn.Module | None] = field(default_factory=dict)  # None: an exported graph
    weights: dict[str, str] = field(default_factory=dict)  # name -> "random init", "fit N steps", "trained"
    fit_records: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the outputs each model's graphs give
    encoder: str = ""

    def notes(self, settings: EndToEndSettings) -> list[str]:
        notes = []
        if settings.fit.steps == 0 and any(w == "random init" for w in self.weights.values()):
            notes.append("random weights give noise-like logits with many disagreeing cells, which inflate the mask "
                         "step of the low-resolution rows against a trained model's; --fit-steps N fits every "
                         "untrained model on synthetic streets first")
        lacking = [name for name in self.modules if name in PEERS and OUTPUT_LOWRES not in self.outputs.get(name, ())]
        if lacking:
            notes.append(f"no low-resolution form (its output is not one bilinear upsample): {', '.join(lacking)}")
        return notes


def prepare_models(settings: EndToEndSettings, log: Callable[[str], None]) -> Models:
    """Every model built once; with ``settings.fit.steps`` every untrained one fitted by the one loop."""
    models = Models(encoder=settings.encoder)
    batches = synthetic_batches(settings.fit) if settings.fit.steps else []
    for name in settings.models:
        if sniff_graph_format(name):
            models.modules[name], models.weights[name] = None, "trained (exported graph)"
            continue
        model = build_or_skip(name, num_classes=settings.num_classes, encoder=settings.encoder,
                              model_options=settings.model_options, skipped=models.skipped, log=log)
        if model is None:
            continue
        models.modules[name] = model
        models.weights[name] = "trained" if is_model_path(name) else "random init"
        if batches and not is_model_path(name):
            record = fit_model(model, *normalisation(model), batches, settings.fit, log, name)
            models.fit_records[name] = asdict(record)
            models.weights[name] = f"fit {record.steps} steps"
    return models


def build_entries(models: Models, settings: EndToEndSettings, size: tuple[int, int], images: Path, work_dir: Path,
                  log: Callable[[str], None]) -> tuple[list[Entry], list[EndToEndResult]]:
    """Every (graph, backend) at ``size`` ready to time; one that fails is a row with its error."""
    entries, failed = [], []
    for name, model in models.modules.items():
        try:
            graphs = model_graphs(name, model, size, work_dir / "graphs", models.weights[name], settings.num_classes)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be exported at this size is a row saying why
            failed.append(EndToEndResult(name, OUTPUT_LOWRES, list(size), settings.backends[0],
                                         error=f"{type(exc).__name__}: {exc}"))
            log(f"{name} at {format_size(size)}: {failed[-1].error}")
            continue
        models.outputs[name] = tuple(graph.output for graph in graphs)
        for graph in graphs:
            for backend in settings.backends:
                entry = build_entry(graph, backend, settings, size, images, log)
                (entries.append(entry) if isinstance(entry, Entry) else failed.append(entry))
    return entries, failed


def build_entry(graph: Graph, backend: str, settings: EndToEndSettings, size: tuple[int, int], images: Path,
                log: Callable[[str], None]) -> Entry | EndToEndResult:
    """The graph's runner and Segmenter, started: compiled and one image predicted (start-up)."""
    result = EndToEndResult(graph.model, graph.output, list(size), backend, weights=graph.weights)
    start = time.perf_counter()
    try:
        runner = entry_runner(graph, backend, settings.threads, settings.precision)
        entry = Entry(result, Segmenter(runner))
        first = sorted(images.iterdir())[:1]
        predict_into(entry, first[0], images.parent / "masks" / entry.folder_name / "startup")
    except Exception as exc:  # noqa: BLE001 - a graph a runtime cannot run is a row saying why
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"{result.label} at {format_size(size)} on {backend}: {result.error}")
        return result
    result.startup_s = time.perf_counter() - start
    result.precision = precision_name(getattr(runner, "precision", "f32"))
    log(f"ready {entry.key}: start-up {result.startup_s:.1f} s, {result.precision}")
    return entry


def predict_into(entry: Entry, source: Path, out: Path) -> float:
    """``eseg predict SOURCE --out OUT --save masks`` through the entry's Segmenter: seconds per
    image in steady state (from the first image read to the last mask written)."""
    from ..inference.palettes import resolve_palette

    segmenter = entry.segmenter
    palette, names = resolve_palette(None, segmenter.num_classes, segmenter.class_names, segmenter.info.palette)
    done = predict_sources(segmenter, source, out, palette=palette, class_names=names, save=SAVE, overwrite=True,
                           progress=False)
    if done.failures:
        raise DataError(f"{entry.key}: {len(done.failures)} image(s) failed, e.g. {done.failures[0][1]}")
    entry.result.masks_written = done.successes
    return done.seconds / max(1, done.successes)


def time_entries(entries: list[Entry], images: Path, settings: EndToEndSettings, work_dir: Path,
                 log: Callable[[str], None]) -> None:
    """Interleaved rounds: in each, every entry (start rotated) runs the network alone on every
    image, then the whole file pipeline over every image into a fresh folder."""
    from .graphs import network_inputs

    inputs = network_inputs(entries, images)
    for entry in entries:
        low = [entry.segmenter.runner(x) for x in inputs[entry.key][: max(1, settings.warmup)]]
        entry.result.disagreeing_cells = disagreeing_share(entry, inputs[entry.key], low)
        entry.result.images = len(inputs[entry.key])
    log(f"timing {len(entries)} entries on {len(inputs[entries[0].key]) if entries else 0} images, "
        f"{settings.runs} interleaved rounds")
    for number in range(settings.runs):
        for entry in entries[number % max(1, len(entries)):] + entries[: number % max(1, len(entries))]:
            for x in inputs[entry.key]:
                start = time.perf_counter()
                entry.segmenter.runner(x)
                entry.network_s.append(time.perf_counter() - start)
            out = work_dir / "masks" / entry.folder_name / f"round_{number}"
            entry.end_to_end_s.append(predict_into(entry, images, out))
            if entry.last_out is not None:
                shutil.rmtree(entry.last_out, ignore_errors=True)
            entry.last_out = out
    for entry in entries:
        summarise(entry.result, entry)
    compare_with_native(entries)


def disagreeing_share(entry: Entry, inputs: list[torch.Tensor], warm: list[torch.Tensor]) -> float | None:
    """The mean share of disagreeing cells of the entry's low-resolution logits over the images
    (a full-resolution entry: None here; its low-resolution sibling's share is copied to it)."""
    from ..inference.lowres import disagreeing_cells

    if not entry.segmenter.info.lowres:
        return None
    logits = warm + [entry.segmenter.runner(x) for x in inputs[len(warm):]]
    return float(np.mean([disagreeing_cells(low) for low in logits]))


def summarise(result: EndToEndResult, entry: Entry) -> None:
    result.network_ms_median = 1e3 * statistics.median(entry.network_s)
    result.end_to_end_ms_per_image = 1e3 * statistics.median(entry.end_to_end_s)
    result.images_per_s = 1e3 / result.end_to_end_ms_per_image
    result.end_to_end_over_network = result.end_to_end_ms_per_image / result.network_ms_median


def compare_with_native(entries: list[Entry]) -> None:
    """For each model with both outputs: the share of mask pixels where its lowres graph's masks
    (the last round's files) differ from its native full graph's; the full row gets the lowres
    row's disagreeing cells (the same network's logits)."""
    by_key = {(e.result.model, e.result.backend, e.result.output): e for e in entries}
    for (model, backend, output), low in by_key.items():
        full = by_key.get((model, backend, OUTPUT_FULL))
        if output != OUTPUT_LOWRES or full is None:
            continue
        full.result.disagreeing_cells = low.result.disagreeing_cells
        differing = total = 0
        for mask_file in sorted((low.last_out / "masks").rglob("*.png")):
            ours = _read_png(mask_file)
            theirs = _read_png(full.last_out / "masks" / mask_file.relative_to(low.last_out / "masks"))
            differing, total = differing + int((ours != theirs).sum()), total + ours.size
        low.result.pixels_differing_from_native = differing / max(1, total)


def add_ratios(results: list[EndToEndResult], references: list[str]) -> None:
    """Each row's end-to-end and network time over each reference's rows (both outputs) at the
    same size on the same backend."""
    timed = {(r.model, r.output, tuple(r.size), r.backend): r for r in results if r.end_to_end_ms_per_image}
    for r in results:
        if r.end_to_end_ms_per_image is None:
            continue
        for reference in references:
            for output in (OUTPUT_FULL, OUTPUT_LOWRES):
                ref = timed.get((reference, output, tuple(r.size), r.backend))
                if ref is not None:
                    r.end_to_end_vs[ref.label] = r.end_to_end_ms_per_image / ref.end_to_end_ms_per_image
                    r.network_vs[ref.label] = r.network_ms_median / ref.network_ms_median


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)
