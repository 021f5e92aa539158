"""Options shared by every command, so each is spelled and behaves the same everywhere.

``--size HxW`` (``H W`` accepted too), ``--batch-size``, ``--device auto``, ``--overwrite``,
``--progress/--no-progress``, ``--out``; every option has help text, and the help shows defaults.
"""
from __future__ import annotations

import argparse

from ..sizes import parse_size


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (when it has one worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text or "default:" in text:
            return text
        return text + " (default: %(default)s)"


class SizeAction(argparse.Action):
    """``--size 512x1024`` or ``--size 512 1024`` -> (512, 1024); a ``choices`` word (e.g.
    ``eval``) passes through."""

    def __init__(self, option_strings, dest, words: tuple[str, ...] = (), **kwargs):
        self.words = words
        super().__init__(option_strings, dest, nargs="+", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) == 1 and values[0] in self.words:
            setattr(namespace, self.dest, values[0])
            return
        try:
            setattr(namespace, self.dest, parse_size(values, option_string or self.dest))
        except ValueError as exc:
            parser.error(str(exc))


def add_size(parser, flag: str = "--size", *, help: str, default=None, words: tuple[str, ...] = ()) -> None:
    parser.add_argument(flag, action=SizeAction, words=words, default=default, metavar="HxW", help=help)


def add_device(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")


def add_batch_size(parser, default: int = 1, what: str = "images per forward pass") -> None:
    parser.add_argument("--batch-size", type=positive_int, default=default, help=what)


def add_overwrite(parser, what: str = "existing output files") -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_progress(parser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")


def add_out(parser, default: str | None, what: str) -> None:
    parser.add_argument("--out", default=default, help=what)


def output_folder(out: str | None, default: str, option: str = "--out"):
    """The folder a command writes into: ``out`` checked as a folder (an existing file or a file
    name such as ``out.png`` is refused: eseg.rundir.check_output_folder), else the first free
    of ``default``, ``default-2``, ..."""
    from pathlib import Path

    from ..rundir import check_output_folder, next_free

    return check_output_folder(out, option) if out else next_free(Path(default))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_inference(parser) -> None:
    """The Segmenter options shared by ``eseg val`` and ``eseg predict``."""
    from ..inference.modes import MODES

    group = parser.add_argument_group("inference")
    group.add_argument("--mode", choices=MODES, default="whole", help="whole image, sliding window, or multi-scale+flip TTA")
    add_size(group, help="resize to HxW before inference ('eval': the model's eval size); logits are resized back",
             words=("eval",))
    add_size(group, "--crop", help="slide mode window (default: the model's train crop)")
    add_size(group, "--stride", help="slide mode stride (default: 2/3 of the crop)")
    group.add_argument("--scales", type=float, nargs="+", help="scales to average (tta default: 0.5 0.75 1.0 1.25 1.5 1.75)")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="also average horizontally flipped inputs (tta default: on)")
    add_batch_size(group)
    add_device(group)
    group.add_argument("--amp", action="store_true", help="fp16 autocast (torch backend on CUDA)")
    group.add_argument("--backend", default=None, help="torch, onnxruntime or openvino (default: from the model file)")


def segmenter_options(args: argparse.Namespace) -> dict:
    """Segmenter keyword arguments from the shared inference options."""
    return {"mode": args.mode, "size": args.size, "crop": args.crop, "stride": args.stride, "scales": args.scales,
            "flip": args.flip, "batch_size": args.batch_size}
