"""``eseg data``: dataset tools.

- ``eseg data synth --out DIR --n N`` writes SyntheticStreets to disk in the generic folder format.
- ``eseg data convert {voc,cvat,coco} SRC --out DIR`` rewrites a labelling tool's export in the
  folder format (see :mod:`eseg.data.convert`).
"""
from __future__ import annotations

import argparse
import time

from ..data.specs import SYNTHETIC_DEFAULT_SIZE
from ..errors import ConfigError
from . import options

CONVERT_SOURCES = ("voc", "cvat", "coco")


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
    _add_convert(sub)


def _add_convert(sub) -> None:
    convert = sub.add_parser(
        "convert", help="rewrite a VOC, CVAT or COCO export in eseg's folder layout",
        description="Read a Pascal VOC folder, a CVAT 'Segmentation mask 1.1' export or a COCO JSON export the way "
                    "training would, check every file, and write images/<split>/, masks/<split>/ (class ids, "
                    "255 = ignore) and classes.yaml. Splits of the source are kept; a source without splits is "
                    "written flat, or as train/val with --val-fraction. Format rules: docs/data.md.")
    convert.add_argument("source_format", choices=CONVERT_SOURCES, metavar="FORMAT",
                         help=f"the export's format: {', '.join(CONVERT_SOURCES)}")
    convert.add_argument("source", metavar="SRC", help="the export's root folder")
    convert.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --overwrite)")
    convert.add_argument("--val-fraction", type=float, default=None,
                         help="for a source without splits: hold out this share as val (by the SHA-1 of the names)")
    convert.add_argument("--annotations", default=None, help="coco: the annotation JSON (relative to SRC) when "
                                                             "it is not found by itself")
    convert.add_argument("--unannotated", choices=("background", "ignore"), default=None,
                         help="coco: pixels no annotation covers are class 0 'background' (default) or ignored (255)")
    convert.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        return _synth(args)
    if args.data_command == "convert":
        return _convert(args)
    raise ConfigError(f"unknown data action {args.data_command!r}")


def _synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import CLASSES, write_folder_dataset

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


def _convert(args: argparse.Namespace) -> int:
    from ..data.convert import convert_dataset

    spec = {"type": args.source_format, "root": args.source}
    if args.source_format != "coco" and (args.annotations or args.unannotated):
        raise ConfigError("--annotations and --unannotated are for coco sources")
    spec.update({k: v for k, v in (("annotations", args.annotations), ("unannotated", args.unannotated)) if v})
    start = time.perf_counter()
    report = convert_dataset(spec, args.out, val_fraction=args.val_fraction, overwrite=args.overwrite)
    print(f"wrote {args.source_format} export {args.source} to {report.out} in {time.perf_counter() - start:.1f}s "
          f"({len(report.class_names)} classes: {', '.join(report.class_names)})")
    for split, count in report.counts.items():
        where = f"images/{split}" if split else "images (no split folders)"
        print(f"  {where}: {count} images, from {report.sources[split]}")
    if "" in report.counts:  # written flat: training needs a held-out share
        print(f"use it with: {{type: folder, root: {report.out}, val_fraction: 0.2}}  (no splits: hold some out)")
    else:
        print(f"use it with: {{type: folder, root: {report.out}}}")
    return 0
