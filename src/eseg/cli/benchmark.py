"""``eseg benchmark --models ... --size HxW --backends ...``: every model (registered, peer, or
trained: a run folder, model folder or exported graph) in every variant (eager, channels_last,
compile, onnxruntime, openvino), timed in one interleaved loop, with latency and memory ratios
against the reference models.

``eseg benchmark --end-to-end``: every model from the image file to the mask file through eseg
predict's pipeline, beside its network alone (:mod:`eseg.benchmark.end_to_end`)."""
from __future__ import annotations

import argparse
import functools
import sys
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
    parser.add_argument("--backends", type=options.csv_list, default=None,
                        help="comma-separated: " + ", ".join(variant_names())
                        + " (default: eager; --end-to-end: openvino)")
    parser.add_argument("--precision", choices=OPENVINO_RUN_PRECISIONS, default="fp32",
                        help="OpenVINO inference precision (stated in every report; never the CPU's silent default)")
    parser.add_argument("--threads", type=options.positive_int, default=2, help="intra-op threads of every runtime")
    parser.add_argument("--runs", type=options.positive_int, default=None,
                        help="timed batch-1 rounds per entry (default: 10; --end-to-end: 5 rounds over every image)")
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
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown",
                        help="what is printed: the markdown table or results.json's document")
    add_end_to_end_arguments(parser.add_argument_group("end to end (--end-to-end)"))


def add_end_to_end_arguments(group) -> None:
    group.add_argument("--end-to-end", action="store_true",
                       help="time the whole path, image file to mask file (eseg predict's pipeline, --save masks), "
                            "beside the network alone; peers with their native output and with the low-resolution "
                            "argmax (docs/benchmark.md)")
    group.add_argument("--sizes", type=options.csv_list, default=None, metavar="HxW,HxW",
                       help="several sizes, each timed in turn (default: --size)")
    group.add_argument("--source", help="a folder of images to time (default: synthetic street scenes at each size)")
    group.add_argument("--images", type=options.positive_int, default=None,
                       help="images per size: synthetic scenes rendered, or the first N of --source (default: 8)")
    group.add_argument("--fit-steps", type=options.non_negative_int, default=0,
                       help="first fit every untrained model (registered and peers alike) for N steps of one loop on "
                            "synthetic streets, so its logits resemble a trained model's (0: random weights)")
    group.add_argument("--fit-batch", type=options.positive_int, default=2, help="scenes per fit step")
    options.add_size(group, "--fit-size", help="size of the fit's synthetic scenes (default: 256x512)")


def run(args: argparse.Namespace) -> int:
    if args.end_to_end:
        return run_end_to_end(args)
    from ..errors import ConfigError

    only = [flag for flag, value in (("--sizes", args.sizes), ("--source", args.source), ("--images", args.images),
                                     ("--fit-steps", args.fit_steps), ("--fit-size", args.fit_size)) if value]
    if only:
        raise ConfigError(f"{', '.join(only)} belong to --end-to-end; add --end-to-end, or drop them")
    from ..benchmark.report import markdown_report, write_reports
    from ..benchmark.run import BenchmarkSettings, run_benchmark
    from ..devices import resolve_device

    model_options = parsed_model_options(args.set)
    settings = BenchmarkSettings(
        models=args.models, backends=args.backends or ["eager"], size=args.size, threads=args.threads,
        runs=args.runs or 10,
        warmup=args.warmup, batch=args.batch_size, throughput_runs=args.throughput_runs, num_classes=args.num_classes,
        encoder=args.encoder, references=args.reference, device=str(resolve_device(args.device)),
        precision=args.precision, memory=args.memory, model_options=model_options)
    out_dir = options.output_folder(args.out, "runs/benchmark")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work:
        doc = run_benchmark(settings, Path(work))
    paths = write_reports(doc, out_dir)
    print_results(doc, markdown_report(doc), paths, args.format)
    return 0


def parsed_model_options(items: list[str]) -> dict:
    from ..config import parse_override

    model_options = {}
    for item in items:
        path, value = parse_override(item)
        model_options[".".join(path)] = value
    return model_options


def print_results(doc: dict, markdown: str, paths: dict, form: str) -> None:
    import json

    if form == "json":
        print(json.dumps(doc, indent=2))
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    else:
        print(markdown)
        print("wrote " + ", ".join(str(p) for p in paths.values()))


def run_end_to_end(args: argparse.Namespace) -> int:
    from ..benchmark.end_to_end import DEFAULT_IMAGES, EndToEndSettings, run_end_to_end as measure
    from ..benchmark.end_to_end_report import markdown_report, write_reports
    from ..benchmark.fit import DEFAULT_FIT_SIZE, FitPlan
    from ..sizes import parse_size

    sizes = [parse_size(size, "--sizes") for size in args.sizes or []] or ([args.size] if args.size else [])
    settings = EndToEndSettings(
        models=args.models, sizes=sizes, backends=args.backends or ["openvino"], precision=args.precision,
        threads=args.threads, runs=args.runs or 5, warmup=args.warmup, images=args.images or DEFAULT_IMAGES,
        source=args.source, fit=FitPlan(args.fit_steps, args.fit_batch, args.fit_size or DEFAULT_FIT_SIZE),
        references=args.reference, num_classes=args.num_classes, encoder=args.encoder,
        model_options=parsed_model_options(args.set))
    out_dir = options.output_folder(args.out, "runs/benchmark")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = print if args.format == "markdown" else functools.partial(print, file=sys.stderr)  # stdout: the JSON
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work:
        doc = measure(settings, Path(work), log)
    paths = write_reports(doc, out_dir)
    print_results(doc, markdown_report(doc), paths, args.format)
    return 0
