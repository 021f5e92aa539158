"""What ``eseg predict`` delivers per second against the network alone (issue 19's first targets).

    .venv/bin/python benchmarks/predict_throughput.py RUN --source DIR [--threads 2] [--size 1024x2048]
    .venv/bin/python benchmarks/predict_throughput.py RUN --source DIR --ranks      # + 1x2 threads vs 2 ranks x 1

RUN is exported twice with OpenVINO fp32 at ``--size`` (``eseg export RUN --format openvino
--precision fp32 --size HxW``: the default low-resolution output, and ``--full-resolution``),
unless the graphs already lie in ``--work``. Then, in one process, on every image of DIR, in
``--rounds`` interleaved rounds (each entry once per round, in a rotating order, so a busy
machine's load falls on all alike; each ratio is taken within a round, the median reported):

- **network only**: each graph's runner on the images, decoded and normalised beforehand; the
  full-resolution graph's figure is the bound the targets are ratios of;
- **predict**: :func:`eseg.inference.predict.predict_sources` (what ``eseg predict MODEL.xml
  --source DIR --save ... --no-progress`` runs) in steady state: start-up (reading and compiling
  the graph, and a warm-up run on two images) is timed apart, once;
- **sequential**: the same steps one after another on one thread (decode, network and mask,
  write): what the overlap gains.

``--ranks`` adds ``eseg predict --save masks`` through the command line, one process with
``--threads 2`` against ``torchrun --nproc_per_node 2`` with ``--threads 1``: the input(s)/s each
prints (start-up apart), ``--rounds`` runs of each, interleaved.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eseg.data.io import as_rgb
from eseg.data.transforms import normalize
from eseg.inference import predict
from eseg.inference.palettes import resolve_palette
from eseg.inference.segmenter import Segmenter
from eseg.sizes import format_size, parse_size
from eseg.tables import markdown_table

MASKS_ONLY, DEFAULT_OUTPUTS = ("masks",), predict.DEFAULT_SAVE
BOUND = "network only, full-resolution graph"


def export_graphs(run: str, size: tuple[int, int], work: Path) -> dict[str, Path]:
    """{"low-resolution": xml, "full-resolution": xml}, exported (fp32) unless already there."""
    graphs = {"low-resolution": work / "lowres.xml", "full-resolution": work / "fullres.xml"}
    for kind, xml in graphs.items():
        if not xml.exists():
            extra = ["--full-resolution"] if kind == "full-resolution" else []
            subprocess.run([sys.executable, "-m", "eseg.cli", "export", run, "--format", "openvino", "--precision",
                            "fp32", "--size", format_size(size), "--out", str(xml), *extra], check=True)
    return graphs


def network_only(xml: Path, tensors: list, threads: int) -> Callable[[], float]:
    """The graph's runner alone on every input (batch 1, normalised beforehand), warmed up: images/s."""
    from eseg.runtimes.openvino import OpenVINORunner

    runner = OpenVINORunner(xml, threads=threads)
    for batch in tensors[:2]:
        runner(batch)

    def run() -> float:
        start = time.perf_counter()
        for batch in tensors:
            runner(batch)
        return len(tensors) / (time.perf_counter() - start)

    return run


class Predicting:
    """``predict_sources`` on one segmenter: :meth:`entry` makes a measured run for a choice of outputs."""

    def __init__(self, xml: Path, source: Path, threads: int, work: Path) -> None:
        from eseg.runtimes import load_runner

        start = time.perf_counter()
        self.segmenter = Segmenter(load_runner(xml, threads=threads))
        info = self.segmenter.info
        self.palette, self.names = resolve_palette(None, info.num_classes, info.class_names, info.palette)
        self.source, self.work, self.sizes = source, work, {}
        files = [path for path, _ in predict.collect_sources(source)]
        warm = Path(tempfile.mkdtemp(dir=work))
        for path in files[:2]:
            os.symlink(path.resolve(), warm / path.name)
        self.predict_into_new_folder(warm, DEFAULT_OUTPUTS)
        self.startup = time.perf_counter() - start  # reading and compiling the graph, and two images

    def predict_into_new_folder(self, source: Path, save: tuple[str, ...]) -> tuple[Path, float]:
        """(output folder, input(s)/s as ``eseg predict`` reports it: its legend and start-up apart)."""
        out = Path(tempfile.mkdtemp(dir=self.work))
        done = predict.predict_sources(self.segmenter, source, out, palette=self.palette, class_names=self.names,
                                       save=save, progress=False)
        assert not done.failures, done.failures
        return out, done.successes / done.seconds

    def entry(self, save: tuple[str, ...], png_level: int = predict.OUTPUT_PNG_LEVEL) -> Callable[[], float]:
        def run() -> float:
            chosen, predict.OUTPUT_PNG_LEVEL = predict.OUTPUT_PNG_LEVEL, png_level
            try:
                out, rate = self.predict_into_new_folder(self.source, save)
            finally:
                predict.OUTPUT_PNG_LEVEL = chosen
            self.sizes[(save, png_level)] = kilobytes(out)
            shutil.rmtree(out)
            return rate

        return run

    def sequential(self, save: tuple[str, ...]) -> Callable[[], float]:
        """The same steps without overlap: decode, network and mask, write, one image after another."""
        segmenter, look = self.segmenter, predict.Look(self.palette)
        files = [path for path, _ in predict.collect_sources(self.source)]

        def run() -> float:
            out = Path(tempfile.mkdtemp(dir=self.work))
            start = time.perf_counter()
            for path in files:
                image = as_rgb(path)
                mask = segmenter.masks_from_tensors([normalize(image, segmenter.info.mean, segmenter.info.std)])[0]
                paths = predict.output_paths(out, Path(path.stem), video=False, save=save)
                predict.write_image_outputs(look, image, mask, None, paths)
            seconds = time.perf_counter() - start
            shutil.rmtree(out)
            return len(files) / seconds

        return run


def kilobytes(out: Path) -> str:
    """Mean kB per file of each output folder."""
    sizes = {kind.name: [p.stat().st_size for p in kind.iterdir()] for kind in sorted(out.iterdir()) if kind.is_dir()}
    return ", ".join(f"{kind} {np.mean(found) / 1024:.0f} kB" for kind, found in sizes.items())


def interleaved(entries: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each entry's images/s in every round; round r starts at entry r (a rotating order)."""
    names = list(entries)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names[number % len(names):] + names[: number % len(names)]:
            rates[name].append(entries[name]())
    return rates


def cli_rate(command: list[str]) -> float:
    """The input(s)/s ``eseg predict`` prints (start-up apart: from the first input read to the last written)."""
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"([0-9.]+) input\(s\)/s", printed).group(1))


def ranks_entries(xml: Path, source: Path, work: Path) -> dict[str, Callable[[], float]]:
    """``eseg predict --save masks`` as one process x 2 threads and as 2 ranks x 1 thread."""
    launchers = {"1 process x 2 threads": ([sys.executable, "-m", "eseg.cli"], "2"),
                 "2 ranks x 1 thread (torchrun)": ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                                    "2", "-m", "eseg.cli"], "1")}

    def entry(launcher: list[str], threads: str) -> Callable[[], float]:
        def run() -> float:
            out = tempfile.mkdtemp(dir=work)
            rate = cli_rate([*launcher, "predict", str(xml), "--source", str(source), "--out", out, "--save", "masks",
                             "--threads", threads, "--no-progress"])
            shutil.rmtree(out)
            return rate
        return run

    return {name: entry(*launcher) for name, launcher in launchers.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run or model folder to export")
    parser.add_argument("--source", type=Path, required=True, help="folder of images (e.g. eseg data synth's images/)")
    parser.add_argument("--size", type=parse_size, default=(1024, 2048))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every entry")
    parser.add_argument("--work", type=Path, default=Path("runs/predict-throughput"), help="graphs and outputs")
    parser.add_argument("--ranks", action="store_true", help="also compare 1 process x 2 threads with 2 ranks x 1")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    graphs = export_graphs(args.run, args.size, args.work)
    report(args, graphs)
    if args.ranks:
        rates = interleaved(ranks_entries(graphs["low-resolution"], args.source, args.work), args.rounds)
        print(markdown_table(("eseg predict --save masks", "median input(s)/s", "each round"),
                             [(n, f"{np.median(r):.2f}", " ".join(f"{v:.2f}" for v in r)) for n, r in rates.items()]))


def report(args: argparse.Namespace, graphs: dict[str, Path]) -> None:
    predicting = Predicting(graphs["low-resolution"], args.source, args.threads, args.work)
    info = predicting.segmenter.info
    tensors = [normalize(as_rgb(path), info.mean, info.std)[None] for path, _ in predict.collect_sources(args.source)]
    entries = {BOUND: network_only(graphs["full-resolution"], tensors, args.threads),
               "network only, low-resolution graph": network_only(graphs["low-resolution"], tensors, args.threads),
               "eseg predict --save masks": predicting.entry(MASKS_ONLY),
               "eseg predict (default: masks,color,overlay)": predicting.entry(DEFAULT_OUTPUTS),
               "  the same steps in sequence, --save masks": predicting.sequential(MASKS_ONLY),
               "  the same steps in sequence, default outputs": predicting.sequential(DEFAULT_OUTPUTS),
               "  eseg predict, default outputs, PNG level 6": predicting.entry(DEFAULT_OUTPUTS, png_level=6)}
    rates = interleaved(entries, args.rounds)
    sizes = {"eseg predict --save masks": (MASKS_ONLY, predict.OUTPUT_PNG_LEVEL),
             "eseg predict (default: masks,color,overlay)": (DEFAULT_OUTPUTS, predict.OUTPUT_PNG_LEVEL),
             "  eseg predict, default outputs, PNG level 6": (DEFAULT_OUTPUTS, 6)}
    rows = [(name, f"{np.median(found):.2f}",
             f"{np.median([v / b for v, b in zip(found, rates[BOUND])]):.2f}",
             " ".join(f"{v:.2f}" for v in found), predicting.sizes.get(sizes.get(name), ""))
            for name, found in rates.items()]
    print(f"{len(tensors)} images of {format_size(args.size)}, OpenVINO fp32, {args.threads} threads, {args.rounds} "
          f"interleaved rounds; predict start-up {predicting.startup:.1f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(markdown_table(("what", "images/s (median)", "x full-resolution network (median of rounds)", "each round",
                          "outputs per image"), rows))


if __name__ == "__main__":
    main()
