"""Time exported ONNX graphs (e.g. an older eseg's) beside today's models, in one interleaved run.

    .venv/bin/python benchmarks/graphs_vs_peers.py --size 512x1024 \
        --graph eseg_lite_s@acefcfb=/tmp/base_lite_s_512x1024.onnx \
        --models eseg_lite_s,lraspp_mobilenet_v3_large --runs 15

Every entry runs on OpenVINO (fp32 unless --precision bf16), 2 threads, batch 1: a ``--graph`` as
it is (it must be a fixed-size graph for --size), a ``--models`` name exported from today's code
with random weights. Latency ratios are against the last of --models (the peer). This is how a
design change is judged before and after: an older checkout exports its graph
(``eseg.export.export_onnx`` there), and this script times it in the same loop as the new one.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from eseg.benchmark.models import build_model
from eseg.benchmark.prepare import prepare_variant
from eseg.benchmark.timing import interleaved_times
from eseg.sizes import format_size, parse_size
from eseg.tables import markdown_table


def runnables(graphs: dict[str, Path], models: list[str], size, threads: int, precision: str, work: Path) -> dict:
    cpu = torch.device("cpu")
    entries = {}
    for name, path in graphs.items():
        entries[name] = prepare_variant(torch.nn.Identity(), "openvino", size, device=cpu, threads=threads,
                                        onnx_path=path, precision=precision)
    for i, name in enumerate(models):
        entries[name] = prepare_variant(build_model(name).eval(), "openvino", size, device=cpu, threads=threads,
                                        onnx_path=work / f"model{i}.onnx", precision=precision)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="append", default=[], metavar="NAME=PATH", help="a fixed-size ONNX graph")
    parser.add_argument("--models", default="eseg_lite_s,lraspp_mobilenet_v3_large",
                        help="comma-separated registered models and peers; the last is the reference")
    parser.add_argument("--size", type=parse_size, default=(512, 1024))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    graphs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.graph)}
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as work:
        entries = runnables(graphs, models, args.size, args.threads, args.precision, Path(work))
        calls = {name: (lambda r=r, x=r.make_input(1): r.fn(x)) for name, r in entries.items()}
        times = interleaved_times(calls, runs=args.runs, warmup=2, device=torch.device("cpu"))
    medians = {name: 1000 * statistics.median(seconds) for name, seconds in times.items()}
    reference = models[-1]
    print(f"{format_size(args.size)}, OpenVINO {args.precision}, {args.threads} threads, batch 1, "
          f"median of {args.runs} interleaved rounds")
    print(markdown_table(["entry", "latency (ms)", f"/ {reference}"],
                         [[name, f"{ms:.1f}", f"{ms / medians[reference]:.2f}x"] for name, ms in medians.items()]))


if __name__ == "__main__":
    main()
