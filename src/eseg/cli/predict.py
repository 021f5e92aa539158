"""``eseg predict MODEL --source PATH``: masks, colour masks, overlays and a legend.

MODEL is a run folder, a model folder, an ``.onnx`` or an OpenVINO ``.xml``; the backend follows
from it. Exit code 1 when some inputs failed (each is named), 2 on a usage error. Under
``torchrun --nproc_per_node N -m eseg.cli predict ...`` the ranks share the inputs
(:mod:`eseg.inference.sharding`): rank 0 picks the output folder and prints the summary.
"""
from __future__ import annotations

import argparse
import sys

from . import options

SAVE_HELP = ("outputs, comma-separated: masks (class ids, PNG), color (palette PNG), overlay (JPEG), probs "
             "((C, H, W) float32 .npy); masks alone is the fastest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, model folder (save_pretrained / checkpoint), .onnx or .xml file")
    parser.add_argument("--source", required=True, help="an image, a folder (searched recursively), a glob, or a video")
    options.add_out(parser, None, "output folder (default: runs/predict, numbered -2, -3... when taken)")
    parser.add_argument("--save", default="masks,color,overlay", help=SAVE_HELP)
    parser.add_argument("--save-probs", action="store_true", help="also save probabilities (same as adding probs to --save)")
    parser.add_argument("--save-frames", action="store_true",
                        help="for videos, also write every frame's class-id mask (masks/<video>/<frame>.png)")
    parser.add_argument("--palette", help="built-in palette (cityscapes, ade20k, synthetic), a classes YAML with "
                                          "names/colors, or a dataset spec (default: the model's own)")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the color mask")
    parser.add_argument("--threads", type=options.positive_int,
                        help="CPU threads of the network (default: the runtime's choice; under torchrun the cores "
                             "shared by the ranks of a machine)")
    parser.add_argument("--workers", type=options.positive_int,
                        help="threads that decode inputs and threads that write outputs (default: 2)")
    options.add_overwrite(parser)
    options.add_progress(parser)
    options.add_inference(parser)


def run(args: argparse.Namespace) -> int:
    from ..inference.predict import parse_save
    from ..inference.sharding import Shard

    save = parse_save(args.save, probs=args.save_probs)  # a bad --save is named before anything loads
    shard = Shard.from_env()
    shard.join()
    try:
        return _predict(args, save, shard)
    finally:
        shard.leave()


def _predict(args: argparse.Namespace, save: tuple[str, ...], shard) -> int:
    from ..inference.palettes import resolve_palette
    from ..inference.predict import predict_sources
    from ..inference.segmenter import Segmenter
    from . import EXIT_OK, EXIT_PARTIAL

    if args.out:
        out_dir = options.output_folder(args.out, "runs/predict")
    else:  # one numbered folder for all ranks, chosen by rank 0
        out_dir = shard.from_main(options.output_folder(None, "runs/predict") if shard.is_main else None)
    runner = load_rank_runner(args, shard)
    segmenter = Segmenter(runner, amp=args.amp, **options.segmenter_options(args))
    info = runner.info
    palette, class_names = resolve_palette(args.palette, info.num_classes, info.class_names, info.palette)
    predictor = predict_sources(segmenter, args.source, out_dir, palette=palette, class_names=class_names,
                                alpha=args.alpha, save=save, save_frames=args.save_frames, overwrite=args.overwrite,
                                progress=args.progress and shard.is_main, shard=shard, workers=args.workers)
    outcomes = shard.everyone((predictor.successes, predictor.total, predictor.failures, predictor.seconds))
    failures = sorted((f for _, _, rank_failures, _ in outcomes for f in rank_failures), key=lambda f: f[0])
    if shard.is_main:
        print(summary(outcomes, segmenter, out_dir, shard))
        if failures:
            print(f"{len(failures)} input(s) failed:", file=sys.stderr)
            for _, message in failures:
                print(f"  {message}", file=sys.stderr)
    return EXIT_PARTIAL if failures else EXIT_OK


def summary(outcomes: list[tuple], segmenter, out_dir, shard) -> str:
    """One line for all ranks: what was predicted, how fast (start-up apart), and where it went."""
    done, total, seconds = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes), max(o[3] for o in outcomes)
    ranks = f" on {shard.world_size} ranks" if shard.distributed else ""
    rate = f", {done / seconds:.2f} input(s)/s" if seconds > 0 else ""
    return (f"predicted {done} of {total} input(s) with {segmenter}{ranks} in {seconds:.1f} s{rate}; "
            f"outputs in {out_dir}")


def load_rank_runner(args: argparse.Namespace, shard):
    """The runner of this rank: its own GPU under torchrun (torch backend), else its own share of
    the machine's cores; ``--threads`` CPU threads (under torchrun by default that share)."""
    import torch

    from ..devices import resolve_device
    from ..runtimes import backend_for, load_runner, model_source

    backend = args.backend or backend_for(model_source(args.model))
    device = args.device
    if backend == "torch" and shard.distributed and device in ("auto", "cuda"):
        device = str(resolve_device(device, shard.local_rank))
    if shard.distributed and not str(device).startswith("cuda"):
        shard.keep_to_own_cores()  # before the runtime starts its threads
    threads = args.threads or (shard.cpu_threads() if shard.distributed else None)
    if threads:
        torch.set_num_threads(threads)
    extra = {"threads": threads} if threads and backend != "torch" else {}
    return load_runner(args.model, args.backend, device=device, **extra)
