"""``eseg reproduce [--quick]``: the paper's claims in miniature (see :mod:`eseg.reproduce`).

    eseg reproduce                   # the manifest's full preset -> docs/
    eseg reproduce --part seed0      # one part of it (resumable), the page from every finished run
    eseg reproduce --quick           # its quick preset (a smoke run) -> runs/claims_quick/
    eseg reproduce --preset budget   # another preset of the manifest -> docs/claims_budget.json + the page
    eseg reproduce --report-only     # re-render claims.md and the plots from claims.json
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from . import options

DEFAULT_THREADS = 2  # the machine: 2 CPU cores
DEFAULT_CONFIG_DIR = "configs/claims"
MAIN_PRESET = "full"


def default_out(preset: str) -> str:
    return "runs/claims_quick" if preset == "quick" else "docs"


def default_work_dir(preset: str) -> str:
    return "runs/claims" if preset == MAIN_PRESET else f"runs/claims_{preset}"


def preset_of(args: argparse.Namespace) -> str:
    if args.quick and args.preset not in (MAIN_PRESET, "quick"):
        from ..errors import ConfigError

        raise ConfigError(f"--quick is --preset quick; it cannot go with --preset {args.preset}")
    return "quick" if args.quick else args.preset


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(item) for item in options.csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, e.g. 0,1,2; got {text}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"must list seeds >= 0, got {text}")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    budget = parser.add_argument_group("budget (default: the manifest's preset)")
    budget.add_argument("--quick", action="store_true",
                        help="the manifest's quick preset instead of its full one: a smoke run of a few minutes "
                             "(default --out runs/claims_quick); the same as --preset quick")
    budget.add_argument("--preset", default=MAIN_PRESET,
                        help="a preset of the manifest (full, quick, budget, lr, ...): full and quick write claims.json, "
                             "any other claims_PRESET.json beside it, shown on the same page")
    budget.add_argument("--seeds", type=seed_list, help="comma-separated training seeds, e.g. 0,1,2")
    budget.add_argument("--steps", type=options.positive_int, help="training steps per run")
    budget.add_argument("--val-images", type=options.positive_int, help="score on the first N validation images")
    budget.add_argument("--bn-batches", type=options.non_negative_int,
                        help="training batches for the precise-BN statistics (0: both scores use the running ones)")
    budget.add_argument("--latency-runs", type=options.positive_int, help="interleaved CPU timing rounds")
    parser.add_argument("--experiments", type=options.csv_list, help="comma-separated subset of the manifest's experiments")
    parser.add_argument("--set", action="append", default=[], metavar="section.key=value",
                        help="config override applied to every run (repeatable), e.g. --set train.lr=0.002")
    parser.add_argument("--threads", type=options.positive_int, default=DEFAULT_THREADS,
                        help="torch CPU threads for training and timing")
    parser.add_argument("--jobs", type=options.positive_int, default=1,
                        help="training runs in parallel worker processes (the threads are split among them)")
    parser.add_argument("--part", help="train one named part of the manifest (resumable: finished runs are kept) and "
                                       "render the page from every run finished so far")
    parser.add_argument("--reuse", action="store_true",
                        help="skip runs whose folder already holds a result for the same config (resume an interrupted run)")
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR,
                        help="folder of the manifest experiments.yaml and the experiment configs")
    options.add_out(parser, None, "where claims.json, claims.md and img/ go (default: docs, quick: runs/claims_quick)")
    parser.add_argument("--work-dir", help="run folders (default: runs/claims, quick: runs/claims_quick)")
    parser.add_argument("--report-only", action="store_true", help="re-render claims.md and the plots from OUT/claims.json")
    parser.add_argument("--notes", help="a markdown file whose text becomes the page's Notes section (kept in claims.json)")


def command_line(args: argparse.Namespace) -> str:
    """The ``eseg reproduce`` command that reproduces this run (options in a fixed order)."""
    preset = preset_of(args)
    parts = ["eseg reproduce"] + (["--quick"] if preset == "quick" else [f"--preset {preset}"] if preset != MAIN_PRESET
                                  else [])
    for flag, value in (("--seeds", args.seeds and ",".join(map(str, args.seeds))), ("--steps", args.steps),
                        ("--val-images", args.val_images), ("--latency-runs", args.latency_runs),
                        ("--bn-batches", args.bn_batches), ("--part", args.part),
                        ("--experiments", args.experiments and ",".join(args.experiments))):
        if value is not None:
            parts.append(f"{flag} {value}")
    parts += [f"--set {shlex.quote(item)}" for item in args.set]
    for flag, value, default in (("--threads", args.threads, DEFAULT_THREADS), ("--jobs", args.jobs, 1),
                                 ("--config-dir", args.config_dir, DEFAULT_CONFIG_DIR)):
        if value != default:
            parts.append(f"{flag} {value}")
    for flag, value, default in (("--out", args.out, default_out(preset)),
                                 ("--work-dir", args.work_dir, default_work_dir(preset))):
        if Path(value) != Path(default):
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def claims_options(args: argparse.Namespace):
    from ..config import parse_override
    from ..reproduce import ClaimsOptions

    for item in args.set:
        parse_override(item)  # a malformed --set fails before anything is loaded
    return ClaimsOptions(
        config_dir=Path(args.config_dir), preset=preset_of(args), experiments=args.experiments,
        seeds=args.seeds, steps=args.steps, val_images=args.val_images, bn_batches=args.bn_batches,
        latency_runs=args.latency_runs, overrides=list(args.set), threads=args.threads, jobs=args.jobs,
        reuse=args.reuse, part=args.part, work_dir=Path(args.work_dir), out=Path(args.out), command=command_line(args))


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..reproduce import load_report, run_claims, write_reports
    from ..reproduce.studies import MAIN_PRESETS, pair_gaps

    preset = preset_of(args)
    # folders that are meant to be reused (docs/, an interrupted run's work dir): checked, never numbered
    args.out = str(options.output_folder(args.out or default_out(preset), default_out(preset)))
    args.work_dir = str(options.output_folder(args.work_dir or default_work_dir(preset), default_work_dir(preset),
                                              "--work-dir"))
    notes = None
    if args.notes:
        if not Path(args.notes).is_file():
            raise ConfigError(f"--notes '{args.notes}' does not exist; name a markdown file")
        notes = Path(args.notes).read_text(encoding="utf-8").strip()
    doc = load_report(args.out, preset) if args.report_only else run_claims(claims_options(args))
    if notes is not None:
        doc["notes"] = notes
    paths = write_reports(doc, args.out, preset)
    if preset not in MAIN_PRESETS:
        for gap in pair_gaps(doc):
            print(f"lr {gap['lr']:g}: {gap['eseg']} minus {gap['deeplab']}: {100 * gap['delta']:+.1f} points "
                  f"(noise {100 * gap['noise']:.1f}: {gap['verdict']})")
    for claim in doc["claims"] if preset in MAIN_PRESETS else []:
        print(f"claim {claim['claim']}: {'reproduced' if claim['reproduced'] else 'NOT reproduced'} - {claim['text']}")
    check = doc["bn_check"]
    print(f"running vs precise BN: largest mIoU gap {check['max_gap_points']:.1f} points ({check['worst_run']}; "
          f"tolerance {check['tolerance_points']:g}): {'ok' if check['within'] else 'BEYOND'}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
