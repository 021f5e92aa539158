"""What ``eseg predict`` delivers per second against the network alone (issue 19's first targets).

    .venv/bin/python benchmarks/predict_throughput.py RUN --source DIR [--threads 2] [--size 1024x2048]
    .venv/bin/python benchmarks/predict_throughput.py RUN --source DIR --ranks      # + 1x2 threads vs 2 ranks x 1

RUN is exported twice with OpenVINO fp32 at ``--size`` (``eseg export RUN --format openvino
--precision fp32 --size HxW``: the default low-resolution output, and ``--full-resolution``),
unless the graphs already lie in ``--work``. Then, in one process, on every image of DIR:

- **network only**: each graph's runner on the images, decoded and normalised beforehand, after
  two warm-up calls; the full-resolution graph's figure is the bound the targets are ratios of;
- **predict**: :func:`eseg.inference.predict.predict_sources` (what ``eseg predict MODEL.xml
  --source DIR --save ... --no-progress`` runs) in steady state: start-up (reading and compiling
  the graph, and a warm-up run on two images) is timed apart;
- **sequential**: the same steps one after another on one thread (decode, network and mask,
  write): what the overlap gains.

``--ranks`` adds ``eseg predict`` through the command line, one process with ``--threads 2``
against ``torchrun --nproc_per_node 2`` with ``--threads 1``, in steady state: the slope between a
run on the first ``--few`` images and one on all of them (start-up cancels out).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eseg.data.io import as_rgb
from eseg.data.transforms import normalize
from eseg.inference import predict
from eseg.inference.segmenter import Segmenter
from eseg.sizes import format_size, parse_size
from eseg.tables import markdown_table

MASKS_ONLY, DEFAULT_OUTPUTS = ("masks",), predict.DEFAULT_SAVE


def export_graphs(run: str, size: tuple[int, int], work: Path) -> dict[str, Path]:
    """{"low-resolution": xml, "full-resolution": xml}, exported (fp32) unless already there."""
    graphs = {"low-resolution": work / "lowres.xml", "full-resolution": work / "fullres.xml"}
    for kind, xml in graphs.items():
        if not xml.exists():
            extra = ["--full-resolution"] if kind == "full-resolution" else []
            subprocess.run([sys.executable, "-m", "eseg.cli", "export", run, "--format", "openvino", "--precision",
                            "fp32", "--size", format_size(size), "--out", str(xml), *extra], check=True)
    return graphs


def network_only(xml: Path, tensors: list, threads: int) -> float:
    """Images per second of the graph's runner alone (batch 1, inputs ready), after two warm-up calls."""
    from eseg.runtimes.openvino import OpenVINORunner

    runner = OpenVINORunner(xml, threads=threads)
    for batch in tensors[:2]:
        runner(batch)
    start = time.perf_counter()
    for batch in tensors:
        runner(batch)
    return len(tensors) / (time.perf_counter() - start)


def predict_steady(xml: Path, source: Path, files: list[Path], save: tuple[str, ...], threads: int,
                   work: Path) -> tuple[float, float]:
    """(start-up seconds, steady images per second) of predict_sources on ``source``."""
    from eseg.runtimes import load_runner

    start = time.perf_counter()
    segmenter = Segmenter(load_runner(xml, threads=threads))
    palette, names = segmenter.info.palette, segmenter.info.class_names
    warm = work / "warm"
    warm.mkdir(parents=True, exist_ok=True)
    for path in files[:2]:
        (warm / path.name).unlink(missing_ok=True)
        os.symlink(path.resolve(), warm / path.name)
    options = {"palette": palette, "class_names": names, "save": save, "progress": False, "overwrite": True}
    predict.predict_sources(segmenter, warm, tempfile.mkdtemp(dir=work), **options)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    done = predict.predict_sources(segmenter, source, tempfile.mkdtemp(dir=work), **options)
    seconds = time.perf_counter() - start
    assert done.successes == len(files), done.failures
    return startup, len(files) / seconds


def sequential(xml: Path, files: list[Path], save: tuple[str, ...], threads: int, work: Path) -> float:
    """Images per second of the same steps without overlap (after one warm-up image)."""
    from eseg.runtimes import load_runner

    segmenter = Segmenter(load_runner(xml, threads=threads))
    look = predict.Look(segmenter.info.palette)
    out = Path(tempfile.mkdtemp(dir=work))

    def one(path: Path) -> None:
        image = as_rgb(path)
        mask = segmenter.masks_from_tensors([normalize(image, segmenter.info.mean, segmenter.info.std)])[0]
        predict.write_image_outputs(look, image, mask, None, predict.output_paths(out, Path(path.stem), video=False,
                                                                                   save=save))

    one(files[0])
    start = time.perf_counter()
    for path in files:
        one(path)
    return len(files) / (time.perf_counter() - start)


def cli_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ranks_rows(xml: Path, files: list[Path], few: int, work: Path) -> list[tuple[str, str, str]]:
    """``eseg predict --save masks`` as one process x 2 threads and as 2 ranks x 1 thread: steady
    images/s from the slope between ``few`` images and all of them."""
    subsets = {}
    for count in (few, len(files)):
        folder = work / f"first-{count}"
        folder.mkdir(exist_ok=True)
        for path in files[:count]:
            if not (folder / path.name).exists():
                os.symlink(path.resolve(), folder / path.name)
        subsets[count] = folder
    launchers = {"1 process x 2 threads": ([sys.executable, "-m", "eseg.cli"], "2"),
                 "2 ranks x 1 thread (torchrun)": ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                                    "2", "-m", "eseg.cli"], "1")}
    rows = []
    for name, (launcher, threads) in launchers.items():
        seconds = {count: cli_seconds([*launcher, "predict", str(xml), "--source", str(folder), "--out",
                                       tempfile.mkdtemp(dir=work), "--save", "masks", "--threads", threads,
                                       "--no-progress"]) for count, folder in subsets.items()}
        steady = (len(files) - few) / (seconds[len(files)] - seconds[few])
        rows.append((name, f"{seconds[len(files)]:.1f} s for {len(files)}", f"{steady:.2f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run or model folder to export")
    parser.add_argument("--source", type=Path, required=True, help="folder of images (e.g. eseg data synth's images/)")
    parser.add_argument("--size", type=parse_size, default=(1024, 2048))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/predict-throughput"), help="graphs and outputs")
    parser.add_argument("--ranks", action="store_true", help="also compare 1 process x 2 threads with 2 ranks x 1")
    parser.add_argument("--few", type=int, default=10, help="--ranks: images of the short run")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    graphs = export_graphs(args.run, args.size, args.work)
    files = [path for path, _ in predict.collect_sources(args.source)]
    report(args, graphs, files)


def report(args: argparse.Namespace, graphs: dict[str, Path], files: list[Path]) -> None:
    from eseg.runtimes.openvino import OpenVINORunner

    info = OpenVINORunner(graphs["low-resolution"]).info
    tensors = [normalize(as_rgb(path), info.mean, info.std)[None] for path in files]
    bound = network_only(graphs["full-resolution"], tensors, args.threads)
    rows = [("network only, full-resolution graph", "", bound),
            ("network only, low-resolution graph", "", network_only(graphs["low-resolution"], tensors, args.threads))]
    del tensors
    for save in (MASKS_ONLY, DEFAULT_OUTPUTS):
        startup, speed = predict_steady(graphs["low-resolution"], args.source, files, save, args.threads, args.work)
        rows.append((f"eseg predict --save {','.join(save)}", f"{startup:.1f} s", speed))
        rows.append((f"  the same steps in sequence, --save {','.join(save)}", "",
                     sequential(graphs["low-resolution"], files, save, args.threads, args.work)))
    print(f"{len(files)} images of {format_size(args.size)}, OpenVINO fp32, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(markdown_table(("what", "start-up", "images/s", "x full-resolution network"),
                         [(w, s, f"{v:.2f}", f"{v / bound:.2f}") for w, s, v in rows]))
    if args.ranks:
        print(markdown_table(("eseg predict --save masks", "wall", "steady images/s"),
                             ranks_rows(graphs["low-resolution"], files, args.few, args.work)))


if __name__ == "__main__":
    main()
