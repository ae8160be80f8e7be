"""``ctstack mesh PATH [PATH ...] OUT.stl``: an iso-surface mesh (STL, PLY or OBJ) in world units.

The threshold is --threshold T, or --threshold auto (Otsu on the coarsest level). Several PATHs
(or a folder of stack folders) run as a batch; then OUT is a folder and --format picks the
mesh type. Vertices are (x, y, z) in the stack's physical units, region origin included.
"""

from __future__ import annotations

import argparse
import sys

from .export import add_common, open_for, region_of, result_json, run_batch_cli, split_paths
from .jsonout import dumps
from .progress import ProgressBar


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "mesh",
        help="iso-surface mesh (STL/PLY/OBJ) of a region",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument(
        "--threshold",
        "-t",
        default="auto",
        help="iso-value, or 'auto' for Otsu on the coarsest level (default)",
    )
    parser.add_argument(
        "--invert", action="store_true", help="the object is darker than the threshold"
    )
    parser.add_argument(
        "--format",
        "-f",
        choices=("stl", "ply", "obj"),
        default="stl",
        help="mesh type for a batch (one stack: from OUT's extension)",
    )
    parser.set_defaults(func=run)


def _threshold(text: str) -> float | None:
    from ..errors import InvalidArgument

    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise InvalidArgument(f"--threshold is a number or 'auto', got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    from .._mesh import mesh
    from ..roi import suggest

    inputs, out, batch = split_paths(args)
    threshold = _threshold(args.threshold)
    if batch:
        if threshold is None and args.roi is None:
            args.roi = "auto"
        return run_batch_cli(
            args, inputs, out, args.format, threshold=threshold, invert=args.invert
        )
    stack = open_for(args, inputs[0])
    region = region_of(args, stack)
    chosen = region.pop("_selection", None)
    if threshold is None:
        found = chosen if chosen is not None and chosen.threshold is not None else suggest(stack)
        if found.threshold is None:
            from ..errors import InvalidArgument

            raise InvalidArgument(f"no automatic threshold: {found.roi.reason}; give --threshold")
        threshold = found.threshold
        print(f"threshold {threshold:g} (Otsu on the coarsest level)", file=sys.stderr)
    made = mesh(
        stack,
        out,
        threshold,
        level=args.level,
        invert=args.invert,
        overwrite=args.overwrite,
        progress=ProgressBar("mesh"),
        **region,
    )
    result = made.result
    if result is None:  # not reached: a mesh written to OUT has a result
        from ..errors import CTStackError

        raise CTStackError(f"{out}: the mesh was not written")
    if args.json:
        print(dumps(result_json(result), indent=1))
    else:
        ex = result.extra
        print(f"{result.summary()}: {ex['vertices']} vertices, {ex['faces']} faces")
    return 0
