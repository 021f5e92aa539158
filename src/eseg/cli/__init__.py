"""The ``eseg`` command line: one module per subcommand, shared options in :mod:`.options`.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int`` and is imported
only when used; nothing here imports torch, so ``eseg --help`` and ``eseg COMMAND --help`` are
instant. The core library never imports this package.

Exit codes: 0 ok, 1 partial (some inputs failed; the others are done), 2 usage or data error,
130 interrupted (Ctrl-C or SIGTERM; ``eseg train`` saved ``checkpoints/last`` and printed the
command that resumes it).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..engine.interrupt import EXIT_INTERRUPTED
from ..errors import ESegError

# name -> one-line help; the module is eseg.cli.<name>
SUBCOMMANDS: dict[str, str] = {
    "models": "list the registered models with params and GMACs",
    "train": "train a model from a YAML config",
    "val": "evaluate a model on a dataset: per-class IoU table, results JSON and charts",
    "predict": "segment images, folders, globs or videos into masks, color masks and overlays",
    "export": "export a model to ONNX or OpenVINO (fixed or dynamic size, fp16/bf16/int8) and check parity",
    "benchmark": "time ESeg models against torchvision and smp peers side by side, on any backend",
    "reproduce": "train and evaluate the paper's claims in miniature (max level, BiFPN vs FPN, vs DeepLabV3+)",
    "data": "dataset tools: synth (write the embedded synthetic dataset), convert (VOC, CVAT, COCO to eseg's folder layout)",
}
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eseg", description="ESeg: fast semantic segmentation "
                                     "(EfficientNet + a P2-P9 pyramid + BiFPN).",
                                     epilog="Run 'eseg COMMAND --help' for a command's options. Exit codes: 0 ok, "
                                            "1 some inputs failed, 2 usage or data error, 130 interrupted (a "
                                            "training run saved checkpoints/last and printed the resume command).")
    parser.add_argument("--version", action="version", version=f"eseg {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def command_parser(name: str):
    """(module, parser) of a subcommand."""
    from .options import HelpFormatter

    module = importlib.import_module(f"eseg.cli.{name}")
    parser = argparse.ArgumentParser(prog=f"eseg {name}", description=SUBCOMMANDS[name], formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return module, parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = top_parser()
        if argv and not argv[0].startswith("-"):
            parser.error(f"unknown command '{argv[0]}'; choose from {', '.join(SUBCOMMANDS)}")
        parser.parse_args(argv)
        parser.print_help()
        return EXIT_OK if argv else EXIT_USAGE
    module, parser = command_parser(argv[0])
    args = parser.parse_args(argv[1:])
    formatwarning, warnings.formatwarning = warnings.formatwarning, _plain_warnings(argv[0], warnings.formatwarning)
    try:
        return int(module.run(args) or EXIT_OK)
    except ESegError as exc:
        print(f"eseg {argv[0]}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"eseg {argv[0]}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.formatwarning = formatwarning


def _plain_warnings(command: str, original):
    """A ``warnings.formatwarning`` that shows eseg's own warnings as ``eseg COMMAND: warning:
    ...``: their message names the file and the fix, and the source line Python would add is
    eseg's, not the user's. Recorded warnings (``catch_warnings(record=True)``) are unchanged."""

    def format_warning(message, category, filename, lineno, line=None):
        if category.__module__.split(".")[0] != "eseg":
            return original(message, category, filename, lineno, line)
        return f"eseg {command}: warning: {message}\n"

    return format_warning


if __name__ == "__main__":
    sys.exit(main())
