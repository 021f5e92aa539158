"""``eseg data``: dataset tools. ``eseg data synth --out DIR --n N`` writes SyntheticStreets to
disk in the generic folder format."""
from __future__ import annotations

import argparse
import time

from ..data.specs import SYNTHETIC_DEFAULT_SIZE
from ..errors import ConfigError
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="write the embedded SyntheticStreets dataset as a folder dataset",
                           description="Write SyntheticStreets in the folder format: images/{train,val}/*.png, "
                                       "masks/{train,val}/*.png (label ids) and classes.yaml.")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, required=True, help="total number of images (train + val)")
    options.add_size(synth, help="image size", default=SYNTHETIC_DEFAULT_SIZE)
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val (default 0.2)")


def run(args: argparse.Namespace) -> int:
    from ..data.synthetic import CLASSES, write_folder_dataset

    if args.data_command != "synth":
        raise ConfigError(f"unknown data action {args.data_command!r}")
    start = time.perf_counter()
    counts = write_folder_dataset(args.out, num_images=args.n, size=args.size, seed=args.seed,
                                  val_fraction=args.val_fraction)
    seconds = time.perf_counter() - start
    height, width = args.size
    print(f"wrote SyntheticStreets (seed {args.seed}, {height}x{width}, {len(CLASSES)} classes: {', '.join(CLASSES)}) "
          f"to {args.out} in {seconds:.1f}s")
    for split, count in counts.items():
        print(f"  {split}: {count} images in {args.out}/images/{split}, masks in {args.out}/masks/{split}")
    print(f"  classes: {args.out}/classes.yaml")
    print(f"use it with: {{type: folder, root: {args.out}}}")
    return 0
