"""The ``ctstack`` command: one sub-command per module in ``ctstack._cli``.

Every sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Errors from the engine become one line on stderr and exit code 2;
Ctrl-C exits with 130 after the sub-command has cleaned up. ``args.report`` is the command's
reporter for a stack's notes (``open_stack(..., report=args.report)``): tidy ``warning:`` lines,
at most ten, then one ``... and N more``; Python warnings go through it too.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

SUBCOMMANDS = ("demo", "info", "pyramid", "cache", "export", "mesh")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctstack", description="Open, view, crop and export large CT slice stacks."
    )
    parser.add_argument("--version", action="version", version=f"ctstack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"ctstack._cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ctstack._cli.{name}":
                continue  # sub-command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from ._cli.report import CliReporter
    from .errors import CTStackError

    args.report = CliReporter()
    try:
        if args.command == "demo":  # napari's own warnings stay napari's
            return int(args.func(args) or 0)
        with args.report.capture():
            return int(args.func(args) or 0)
    except CTStackError as exc:
        print(f"ctstack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ctstack {args.command}: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
