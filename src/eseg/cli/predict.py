"""``eseg predict MODEL --source PATH``: masks, colour masks, overlays and a legend.

MODEL is a run folder, a model folder, an ``.onnx`` or an OpenVINO ``.xml``; the backend follows
from it. Exit code 1 when some inputs failed (each is named), 2 on a usage error.
"""
from __future__ import annotations

import argparse
import sys

from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, model folder (save_pretrained / checkpoint), .onnx or .xml file")
    parser.add_argument("--source", required=True, help="an image, a folder (searched recursively), a glob, or a video")
    options.add_out(parser, None, "output folder (default: runs/predict, numbered -2, -3... when taken)")
    parser.add_argument("--palette", help="built-in palette (cityscapes, ade20k, synthetic), a classes YAML with "
                                          "names/colors, or a dataset spec (default: the model's own)")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the color mask")
    parser.add_argument("--save-probs", action="store_true", help="also save (C, H, W) float32 probabilities as .npy")
    parser.add_argument("--save-frames", action="store_true",
                        help="for videos, also write every frame's class-id mask (masks/<video>/<frame>.png)")
    options.add_overwrite(parser)
    options.add_progress(parser)
    options.add_inference(parser)


def run(args: argparse.Namespace) -> int:
    from ..inference.palettes import resolve_palette
    from ..inference.predict import predict_sources
    from ..inference.segmenter import Segmenter
    from ..runtimes import load_runner
    from . import EXIT_OK, EXIT_PARTIAL

    out_dir = options.output_folder(args.out, "runs/predict")
    runner = load_runner(args.model, args.backend, device=args.device)
    segmenter = Segmenter(runner, amp=args.amp, **options.segmenter_options(args))
    info = runner.info
    palette, class_names = resolve_palette(args.palette, info.num_classes, info.class_names, info.palette)
    predictor = predict_sources(segmenter, args.source, out_dir, palette=palette, class_names=class_names,
                                alpha=args.alpha, save_probs=args.save_probs, save_frames=args.save_frames,
                                overwrite=args.overwrite,
                                progress=args.progress)
    print(f"predicted {predictor.successes} of {predictor.total} input(s) with {segmenter}; outputs in {out_dir}")
    if predictor.failures:
        print(f"{len(predictor.failures)} input(s) failed:", file=sys.stderr)
        for _, message in predictor.failures:
            print(f"  {message}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK
