"""The ``eseg`` command line. Each subcommand lives in its own module, imported only when used.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from collections.abc import Sequence

from .errors import ConfigError, ESegError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "models": ("eseg.models.summary", "list the registered ESeg variants with params and GMACs"),
    "train": ("eseg.engine.train", "train a model from a YAML config"),
    "val": ("eseg.engine.evaluate", "evaluate a model on a dataset: per-class IoU table, results JSON and charts"),
    "predict": ("eseg.inference", "segment images, folders, globs or videos into masks, color masks and overlays"),
    "data": ("eseg.data.commands", "dataset tools: synth (write the embedded synthetic dataset to disk)"),
    "export": ("eseg.export", "export a model to ONNX (dynamic or fixed size, fp16, int8) and check parity with PyTorch"),
    "benchmark": ("eseg.benchmark", "time ESeg variants against torchvision and smp peers side by side"),
    "reproduce": ("eseg.reproduce", "train and evaluate the paper's claims in miniature (max level, BiFPN vs FPN, vs DeepLabV3+)"),
}


def parse_size(text: str | Sequence[int]) -> tuple[int, int]:
    """'512x1024' (H x W) or (H, W) -> (H, W). A ValueError, so argparse reports it as a bad value."""
    if isinstance(text, str):
        parts = text.lower().replace("*", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            size = ()
    else:
        size = tuple(int(v) for v in text)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"size must be HxW with positive integers, e.g. 512x1024; got {text!r}")
    return size  # type: ignore[return-value]


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eseg",
        description="ESeg: fast semantic segmentation (EfficientNet + P2-P9 BiFPN).",
        epilog="Run 'eseg COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = _top_parser()
        if argv and not argv[0].startswith("-"):
            parser.error(f"unknown command '{argv[0]}'; choose from {', '.join(SUBCOMMANDS)}")
        parser.parse_args(argv)
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"eseg {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except ESegError as exc:
        print(f"eseg {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"eseg {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
