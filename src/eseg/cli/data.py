"""``eseg data``: dataset tools.

- ``eseg data synth --out DIR --n N [--format folder|voc|cvat|coco]`` writes SyntheticStreets to
  disk in eseg's folder layout or as a labelling tool exports it (see :mod:`eseg.data.exports`).
- ``eseg data convert {voc,cvat,coco} SRC --out DIR`` rewrites a labelling tool's export in the
  folder format (see :mod:`eseg.data.convert`).
"""
from __future__ import annotations

import argparse
import time

from ..data.specs import CONVERT_SOURCES, EXPORT_LAYOUTS, SYNTHETIC_DEFAULT_SIZE
from ..errors import ConfigError
from . import options

FORMAT_NAMES = {"folder": "a folder dataset", "voc": "a Pascal VOC export", "cvat": "a CVAT 'Segmentation mask 1.1' export",
                "coco": "a COCO JSON export (CVAT 'COCO 1.0')"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = sub.add_parser(
        "synth", help="write the embedded SyntheticStreets scenes as a folder dataset or a labelling tool's export",
        description="Write SyntheticStreets to disk: in eseg's folder layout (images/{train,val}/, masks/{train,val}/ "
                    "with class ids, classes.yaml), or as a labelling tool exports it (voc, cvat, coco), to try "
                    "the commands for your own data on. Layouts: docs/data.md.")
    synth.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --overwrite)")
    synth.add_argument("--n", type=options.positive_int, required=True, help="total number of images (train + val)")
    synth.add_argument("--format", choices=EXPORT_LAYOUTS, default="folder",
                       help="folder: eseg's layout; voc: Pascal VOC (JPEGImages/, palette PNGs, ImageSets/Segmentation "
                            "train/val lists, labelmap.txt); cvat: CVAT 'Segmentation mask 1.1' (RGB colour masks, "
                            "labelmap.txt, one pool); coco: COCO JSON as CVAT's 'COCO 1.0' writes it (images/, "
                            "annotations/instances_default.json with RLE masks, one pool; needs the coco extra)")
    options.add_size(synth, help="image size", default=SYNTHETIC_DEFAULT_SIZE)
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    synth.add_argument("--val-fraction", type=float, default=None,
                       help="folder and voc: share of images in val (default 0.2; 0: no val split, a flat folder); "
                            "cvat and coco exports hold one pool: hold images out when training instead")
    options.add_overwrite(synth, "--out if it exists")
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
    options.add_overwrite(convert, "--out if it exists")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        return _synth(args)
    if args.data_command == "convert":
        return _convert(args)
    raise ConfigError(f"unknown data action {args.data_command!r}")


def _synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import CLASSES, write_dataset

    out = options.output_folder(args.out, args.out)
    start = time.perf_counter()
    counts = write_dataset(out, num_images=args.n, size=args.size, seed=args.seed, val_fraction=args.val_fraction,
                           layout=args.format, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    height, width = args.size
    print(f"wrote SyntheticStreets (seed {args.seed}, {height}x{width}, {len(CLASSES)} classes: {', '.join(CLASSES)}) "
          f"as {FORMAT_NAMES[args.format]} to {out} in {seconds:.1f}s")
    for split, count in counts.items():
        print(f"  {split or 'one pool'}: {count} images")
    print(f"use it with: {{{', '.join(f'{k}: {v}' for k, v in training_spec(args.format, out, counts).items())}}}")
    return 0


def training_spec(layout: str, out, counts: dict[str, int]) -> dict:
    """The data.dataset spec that trains on what synth wrote (a pool or a flat folder needs a
    held-out share; COCO: every pixel is annotated, so no 'background' class is added)."""
    spec = {"type": layout, "root": str(out)}
    if layout == "coco":
        spec["unannotated"] = "ignore"
    if "" in counts:
        spec["val_fraction"] = 0.2
    return spec


def _convert(args: argparse.Namespace) -> int:
    from ..data.convert import convert_dataset

    spec = {"type": args.source_format, "root": args.source}
    if args.source_format != "coco" and (args.annotations or args.unannotated):
        raise ConfigError("--annotations and --unannotated are for coco sources")
    spec.update({k: v for k, v in (("annotations", args.annotations), ("unannotated", args.unannotated)) if v})
    start = time.perf_counter()
    out = options.output_folder(args.out, args.out)
    report = convert_dataset(spec, out, val_fraction=args.val_fraction, overwrite=args.overwrite)
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
