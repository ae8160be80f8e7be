"""``ctstack export PATH [PATH ...] OUT``: write a region as slices, a TIFF stack or OME-Zarr.

One PATH exports one stack to OUT; several PATHs (or a folder whose sub-folders are stacks)
run as a batch into the folder OUT, each stack with its own ROI (--roi saved|auto|full).
Regions are level-0 z/y/x index ranges, half-open: --z 120:860 exports slices 120..859.
--dry-run prints what would be written (shape, files, bytes, output) and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..pyramid import DEFAULT_MAX_SIZE
from .jsonout import dumps
from .progress import ProgressBar
from .report import CliReporter

if TYPE_CHECKING:
    from .._export.writing import ExportResult
    from ..batch import BatchEvent, BatchItem
    from ..stack import Stack

FORMATS = ("tiff", "png", "bmp", "tiff-stack", "ome-zarr")


def parse_range(text: str) -> tuple[int | None, int | None]:
    """``"A:B"``, ``"A:"`` or ``":B"`` as a half-open range (None for an open end)."""
    from ..errors import InvalidArgument

    try:
        a, b = text.split(":")
        return (int(a) if a.strip() else None, int(b) if b.strip() else None)
    except ValueError as exc:
        raise InvalidArgument(f"a range is A:B with integers, got {text!r}") from exc


def parse_window(text: str | None) -> tuple[float, float] | str | None:
    """``--window``: ``LOW:HIGH`` as two floats, or a preset name of ``ctstack.windows``."""
    from ..errors import InvalidArgument
    from ..windows import preset

    if text is None:
        return None
    if ":" not in text:
        return preset(text).name  # an unknown name lists the presets
    try:
        a, b = text.split(":")
        return (float(a), float(b))
    except ValueError as exc:
        raise InvalidArgument(f"--window is LOW:HIGH or a preset name, got {text!r}") from exc


def add_common(parser: argparse.ArgumentParser) -> None:
    """Arguments export and mesh share: paths, region, level, ROI, overwrite."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="stack(s) to read, then OUT (a folder when several stacks)",
    )
    for axis in "zyx":
        parser.add_argument(
            f"--{axis}", metavar="A:B", help=f"level-0 {axis} index range, half-open (default: all)"
        )
    parser.add_argument("--level", type=int, default=0, help="pyramid level (0 = full size)")
    parser.add_argument(
        "--roi",
        choices=("saved", "auto", "full"),
        default=None,
        help="region when --z/--y/--x are not given (batch default: saved)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def reporter(args: argparse.Namespace) -> Callable[[str], Any]:
    """The command's reporter for a stack's notes (``ctstack.cli.main`` sets ``args.report``:
    tidy ``warning:`` lines, a bounded number); a fresh one when ``run`` is called directly."""
    found = getattr(args, "report", None)
    if found is None:
        found = args.report = CliReporter()
    return cast("Callable[[str], Any]", found)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a region (slices, TIFF, OME-Zarr)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--format", "-f", choices=FORMATS, default="tiff")
    parser.add_argument(
        "--window",
        metavar="LOW:HIGH|PRESET",
        help="write 8-bit scaled from this window (use --window=-1000:3000) or a preset: "
        "0.5-99.5, 1-99, min-max (percentiles of the stack), bone, soft-tissue, lung, "
        "brain (Hounsfield: DICOM CT only)",
    )
    parser.add_argument("--prefix", help="file name prefix for slice folders (default: source)")
    parser.add_argument(
        "--ngff",
        choices=("0.4", "0.5"),
        default="0.4",
        help="OME-NGFF version for --format ome-zarr",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        help="OME-Zarr: add levels until the largest axis is at most this",
    )
    parser.add_argument(
        "--compression",
        choices=("none", "lz4", "zstd"),
        default="lz4",
        help="OME-Zarr chunks: blosc-lz4 (default, fast), blosc-zstd (smaller, slower) or none",
    )
    parser.add_argument(
        "--shard",
        action="store_true",
        help="OME-Zarr: gather chunks into zarr v3 shards (fewer files; needs --ngff 0.5)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be written (one stack) and write nothing",
    )
    from .._cluster.connect import cluster_arguments

    cluster_arguments(parser, "OUT")  # --scheduler / --workers: region tasks on a cluster
    parser.set_defaults(func=run)


def split_paths(args: argparse.Namespace) -> tuple[list[str], Path, bool]:
    """(inputs, OUT, batch?) from the positional paths."""
    from ..batch import find_stacks
    from ..errors import InvalidArgument

    if len(args.paths) < 2:
        raise InvalidArgument("give at least one PATH and the OUT path")
    inputs, out = args.paths[:-1], Path(args.paths[-1])
    batch = len(inputs) > 1 or find_stacks(inputs) != [Path(inputs[0])]
    if batch and any(getattr(args, a) for a in "zyx"):
        raise InvalidArgument("--z/--y/--x apply to one stack; for a batch use --roi")
    return inputs, out, batch


def region_of(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    """The region for one stack: --z/--y/--x if given, else the --roi choice (default full);
    with a --roi choice, ``"_selection"`` holds the ROI and its saved or automatic threshold."""
    from .._export.regions import as_range
    from ..roi import resolve_selection

    if any(getattr(args, a) for a in "zyx"):
        region: dict[str, Any] = {}
        for axis, size in zip("zyx", stack.shape, strict=True):
            text = getattr(args, axis)
            if text:  # the engine's rule, with the error quoting what was typed
                start, stop = parse_range(text)
                a, b = as_range(slice(start, stop), size, axis, given=f"--{axis} {text}")
                region[axis] = slice(a, b)
            else:
                region[axis] = None
        return region
    selection = resolve_selection(stack, args.roi or "full")
    roi = selection.roi
    if (roi.reason and roi.source != "full") or args.roi == "auto":
        print(f"ROI: {roi.reason}", file=sys.stderr)
    return {**roi.slices, "_selection": selection}


def open_for(args: argparse.Namespace, path: str) -> Stack:
    from .._export.planes import level_array
    from ..stack import open_stack

    stack = open_stack(path, report=reporter(args))
    on_cluster = getattr(args, "scheduler", None) or getattr(args, "workers", None)
    if args.level > 0 and len(stack.levels) <= args.level and not on_cluster:
        level_array(stack, args.level, ProgressBar("pyramid"))  # else built on the cluster
    return stack


def run_batch_cli(
    args: argparse.Namespace, inputs: list[str], out: Path, fmt: str, **options: Any
) -> int:
    """Run the batch with a bar per stack; print the summary; exit 1 if any stack failed."""
    from ..batch import run_batch

    bars: dict[int, ProgressBar] = {}

    def on_event(event: BatchEvent) -> None:
        if event.kind == "start":
            print(f"[{event.index + 1}/{event.count}] {event.path}", file=sys.stderr)
            name = "" if event.path is None else event.path.name  # a start names its stack
            bars[event.index] = ProgressBar(f"  {name}")
        elif event.kind == "progress":
            bars[event.index](event.done, event.total)
        elif event.kind == "failed":
            print(f"  failed: {event.message}", file=sys.stderr)

    summary = run_batch(
        inputs,
        out,
        format=fmt,
        roi=args.roi or "saved",
        level=args.level,
        overwrite=args.overwrite,
        on_event=on_event,
        cancel=threading.Event(),
        report=reporter(args),
        **options,
    )
    if args.json:
        print(dumps([_item_json(i) for i in summary.items], indent=1))
    else:
        print(summary.text())
    return 1 if summary.failed else 0


def result_json(result: ExportResult) -> dict[str, Any]:
    return {
        "path": str(result.path),
        "format": result.format,
        "files": len(result.files),
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "shape": list(result.shape),
        "dtype": result.dtype,
        "level": result.level,
        "region": result.region,
        **result.extra,
    }


def _item_json(item: BatchItem) -> dict[str, Any]:
    return {
        "path": str(item.path),
        "ok": item.ok,
        "error": item.error,
        "result": None if item.result is None else result_json(item.result),  # None: not ok
    }


def run(args: argparse.Namespace) -> int:
    from .._export import export, plan_export
    from ..batch import stack_window
    from ..errors import InvalidArgument

    inputs, out, batch = split_paths(args)
    window = parse_window(args.window)
    options = {
        "window": window,
        "prefix": args.prefix,
        "ngff_version": args.ngff,
        "max_size": args.max_size,
        "compression": args.compression,
        "shard": args.shard,
    }
    if batch:
        if args.scheduler or args.workers:
            raise InvalidArgument("--scheduler/--workers export one stack; a batch runs here")
        if args.dry_run:
            raise InvalidArgument("--dry-run plans one stack; give one PATH and OUT")
        return run_batch_cli(args, inputs, out, args.format, **options)
    stack = open_for(args, inputs[0])
    window = options["window"] = stack_window(stack, window)
    region = region_of(args, stack)
    region.pop("_selection", None)
    plan = plan_export(stack, out, level=args.level, format=args.format, window=window, **region)
    if args.dry_run:
        text = dumps(plan.to_dict(), indent=1) if args.json else f"{plan.summary()} -> {out}"
        print(text)
        return 0
    from .._cluster.connect import cluster_client

    with cluster_client(args.scheduler, args.workers) as client:
        result = export(
            stack,
            out,
            level=args.level,
            format=args.format,
            overwrite=args.overwrite,
            progress=ProgressBar("export"),
            client=client,
            **region,
            **options,
        )
    print(dumps(result_json(result), indent=1) if args.json else result.summary())
    return 0
