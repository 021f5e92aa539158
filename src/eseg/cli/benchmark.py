"""``eseg benchmark --models ... --size HxW --backends ...``: every model (registered, peer, or
trained: a run folder, model folder or exported graph) in every variant (eager, channels_last,
compile, onnxruntime, openvino), timed in one interleaved loop, with latency and memory ratios
against the reference models."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmark.peers import DEFAULT_MODELS, PEERS
    from ..benchmark.variants import variant_names
    from ..export.formats import OPENVINO_RUN_PRECISIONS

    parser.add_argument("--models", type=options.csv_list, default=list(DEFAULT_MODELS),
                        help="comma-separated: eseg models (eseg models), peers (" + ", ".join(PEERS.names())
                        + "), and trained models by path: run folders, saved model folders, exported .onnx/.xml graphs")
    options.add_size(parser, help="input size (default: the first trained model's validated size, else 512x1024)")
    parser.add_argument("--backends", type=options.csv_list, default=["eager"], help="comma-separated: " + ", ".join(variant_names()))
    parser.add_argument("--precision", choices=OPENVINO_RUN_PRECISIONS, default="fp32",
                        help="OpenVINO inference precision (stated in every report; never the CPU's silent default)")
    parser.add_argument("--threads", type=options.positive_int, default=2, help="intra-op threads of every runtime")
    parser.add_argument("--runs", type=options.positive_int, default=10, help="timed batch-1 rounds per entry")
    parser.add_argument("--warmup", type=options.non_negative_int, default=2, help="warm-up calls per entry")
    options.add_batch_size(parser, 1, "batch size of the throughput measurement")
    parser.add_argument("--throughput-runs", type=options.positive_int, default=3, help="timed rounds at --batch-size")
    parser.add_argument("--reference", type=options.csv_list, default=[],
                        help="models the ratios are taken against (default: the peers among --models)")
    parser.add_argument("--encoder", help="timm encoder of the smp peers (default: the first eseg model's backbone)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model option for the eseg models, e.g. --set fpn_repeats=2 (repeatable)")
    parser.add_argument("--num-classes", type=options.positive_int,
                        help="classes of the registered models and peers (default: the first trained model's, else 19)")
    options.add_device(parser)
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="measure each entry's peak memory (in a fresh process on CPU)")
    options.add_out(parser, None, "output folder (default: runs/benchmark, numbered -2, -3... when taken)")


def run(args: argparse.Namespace) -> int:
    from ..benchmark.report import markdown_report, write_reports
    from ..benchmark.run import BenchmarkSettings, run_benchmark
    from ..config import parse_override
    from ..devices import resolve_device

    model_options = {}
    for item in args.set:
        path, value = parse_override(item)
        model_options[".".join(path)] = value
    settings = BenchmarkSettings(
        models=args.models, backends=args.backends, size=args.size, threads=args.threads, runs=args.runs,
        warmup=args.warmup, batch=args.batch_size, throughput_runs=args.throughput_runs, num_classes=args.num_classes,
        encoder=args.encoder, references=args.reference, device=str(resolve_device(args.device)),
        precision=args.precision, memory=args.memory, model_options=model_options)
    out_dir = options.output_folder(args.out, "runs/benchmark")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work:
        doc = run_benchmark(settings, Path(work))
    paths = write_reports(doc, out_dir)
    print(markdown_report(doc))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
