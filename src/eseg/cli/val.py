"""``eseg val TARGET``: per-class IoU table, results.json and charts, optional Cityscapes export.

TARGET is a training run folder (its best checkpoint and its recorded validation data), an
experiment config YAML (the latest run of it), a model folder, or an exported .onnx / .xml.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="run folder, experiment config YAML, model folder, or .onnx / .xml file")
    parser.add_argument("--weights", help="model to evaluate instead of the one TARGET implies")
    data = parser.add_argument_group("data (default: what the run recorded)")
    data.add_argument("--data", help="dataset spec YAML (e.g. {type: cityscapes, root: DIR})")
    data.add_argument("--data-type", help="dataset type: synthetic, cityscapes, ade20k, folder, voc, cvat, coco or "
                                           "huggingface (that one through --data SPEC.yaml: it takes a path, not a "
                                           "root); docs/data.md")
    data.add_argument("--data-root", help="dataset root folder")
    data.add_argument("--split", help="split to evaluate (default: the run's val split, else val)")
    data.add_argument("--max-images", type=options.positive_int, help="evaluate only the first N images")
    data.add_argument("--num-workers", type=options.non_negative_int, default=2, help="data loader worker processes")
    options.add_inference(parser)
    out = parser.add_argument_group("output")
    options.add_out(out, None, "folder for results.json and the charts (default: runs/val, numbered -2, -3... when taken)")
    out.add_argument("--cityscapes-export", metavar="DIR", help="write <city>_<seq>_<frame>_pred.png labelIds PNGs here")
    options.add_overwrite(out, "existing results and export files")
    options.add_progress(out)


def resolve_target(args: argparse.Namespace) -> tuple[Path, tuple[dict, str] | None]:
    """(model path, the (spec, split) the target records, if any)."""
    from ..config import load_config
    from ..evaluation import recorded_validation_data
    from ..paths import resolve_model_path
    from ..rundir import default_run_dir, latest_run

    target = Path(args.target)
    if target.is_file() and target.suffix in (".yaml", ".yml"):
        cfg = load_config(target)
        run_dir = Path(cfg.run.out) if cfg.run.out else latest_run(default_run_dir(target))
        recorded = (dict(cfg.data.val_dataset or cfg.data.dataset), cfg.data.val_split)
        return resolve_model_path(args.weights or run_dir), recorded
    model_path = resolve_model_path(args.weights or target)
    return model_path, recorded_validation_data(model_path)


def dataset_spec(args: argparse.Namespace, recorded: dict | None) -> dict:
    """--data, else the recorded spec changed by --data-type / --data-root, else an error."""
    from ..data.specs import check_dataset_spec, load_dataset_spec

    if args.data:
        return load_dataset_spec(args.data)
    if args.data_type or args.data_root:
        same_type = recorded is not None and args.data_type in (None, recorded.get("type"))
        spec = dict(recorded) if same_type else {}
        spec.update({k: v for k, v in (("type", args.data_type), ("root", args.data_root)) if v})
        return check_dataset_spec(spec, "--data-type/--data-root")
    if recorded is not None:
        return recorded
    raise ConfigError("say which data to evaluate on: --data SPEC.yaml, or --data-type TYPE --data-root DIR "
                      "(this model is not inside a training run folder that records its data)")


def run(args: argparse.Namespace) -> int:
    from ..data.meta import subset
    from ..data.specs import build_dataset
    from ..data.transforms import build_eval_transform
    from ..evaluation import (
        RESULTS_FILE,
        CityscapesExporter,
        SemSegEvaluator,
        format_table,
        inference_on_dataset,
        write_report,
    )
    from ..inference.segmenter import Segmenter
    from ..runtimes import load_runner

    out_dir = options.output_folder(args.out, "runs/val")  # a file named as the folder is refused first
    if args.cityscapes_export:
        options.output_folder(args.cityscapes_export, "", "--cityscapes-export")
    model_path, recorded = resolve_target(args)
    spec = dataset_spec(args, recorded[0] if recorded else None)
    split = args.split or (recorded[1] if recorded else "val")
    if (out_dir / RESULTS_FILE).exists() and not args.overwrite:
        raise ConfigError(f"'{out_dir / RESULTS_FILE}' already exists; pass --overwrite to replace it or choose another --out")
    runner = load_runner(model_path, args.backend, device=args.device)
    segmenter = Segmenter(runner, amp=args.amp, **options.segmenter_options(args))
    dataset = build_dataset(spec, split, transform=build_eval_transform(mean=runner.info.mean, std=runner.info.std))
    indices = range(len(dataset) if args.max_images is None else min(args.max_images, len(dataset)))
    evaluators = [SemSegEvaluator.for_dataset(dataset, all_reduce=False)]
    if args.cityscapes_export:
        exporter = CityscapesExporter(dataset, args.cityscapes_export, overwrite=args.overwrite)
        exporter.check_targets(indices)
        evaluators.append(exporter)
    print(f"evaluating {model_path} on {spec.get('type')} [{split}], {len(indices)} images, {segmenter}", file=sys.stderr)
    metrics = inference_on_dataset(segmenter, subset(dataset, indices), evaluators, batch_size=args.batch_size,
                                   num_workers=args.num_workers, progress=args.progress)
    print(format_table(metrics))
    skipped = metrics["skipped"]  # each bad file once
    if skipped:
        print(f"skipped {len(skipped)} bad file(s) (on_bad_data: skip):", file=sys.stderr)
        for reason in skipped:
            print(f"  {reason}", file=sys.stderr)
    paths = write_report(metrics, out_dir, extra={"model": str(model_path), "data": spec, "split": split,
                                                  "inference": repr(segmenter)})
    print(f"wrote {paths['results']}, {paths['iou_chart']}, {paths['confusion']}")
    if args.cityscapes_export:
        print(f"wrote {metrics['cityscapes_export']['files']} Cityscapes labelIds PNGs to {args.cityscapes_export}")
    return 0
