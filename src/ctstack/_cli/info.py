"""``ctstack info PATH``: what a path opens as (series, shape, dtype, voxel size, problems)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", help="describe the stack a path opens as", description=__doc__
    )
    parser.add_argument(
        "path", help="slice folder, slice file, multi-page TIFF, DICOM folder, or OME-Zarr image"
    )
    parser.add_argument("--pattern", help='glob picking one series, e.g. "rec_*.bmp"')
    parser.add_argument(
        "--voxel-size", type=float, nargs="+", metavar="V", help="override: one value or z y x"
    )
    parser.add_argument("--unit", help="override the unit (nm, um, mm, cm)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def _quiet(message: str) -> None:
    """A reporter that says nothing now: ``info`` prints every note at the end."""


def run(args: argparse.Namespace) -> int:
    from ..stack import open_stack

    voxel = args.voxel_size
    if voxel is not None and len(voxel) == 1:
        voxel = voxel[0]
    stack = open_stack(
        args.path,
        pattern=args.pattern,
        voxel_size=voxel,
        unit=args.unit,
        report=_quiet,  # the notes are printed below from stack.warnings, once each
    )
    info = stack.summary()
    if args.json:
        from .jsonout import dumps

        print(dumps(info, indent=2))  # strict JSON: a NaN or infinity is null
        return 0
    z, y, x = stack.shape
    vz, vy, vx = stack.voxel_size
    lines = [
        f"path:        {stack.path}",
        f"series:      {stack.pattern or stack.name} ({info['format']})",
        f"count:       {len(stack.files)} file{'s' if len(stack.files) != 1 else ''}",
        f"shape:       {z} x {y} x {x} (z, y, x)",
        f"dtype:       {stack.dtype}",
        f"voxel size:  {vz:g} x {vy:g} x {vx:g} {stack.unit} (z, y, x; from "
        f"{stack.metadata.get('voxel_size_source')})",
        f"missing:     {_ranges(stack.missing) if stack.missing else 'none'}",
        f"bad slices:  {len(stack.bad_slices) or 'none'}",
    ]
    lines += [f"  z={b.z}: {b.reason}" for b in stack.bad_slices]
    if stack.other_series:
        lines.append(f"other series ({len(stack.other_series)}; choose with --pattern):")
        lines += [f"  {s}" for s in stack.other_series]
    if len(stack.levels) > 1:
        lines.append(
            "levels:      " + ", ".join(" x ".join(map(str, lv.shape)) for lv in stack.levels)
        )
    print("\n".join(lines))
    for message in stack.warnings:
        print(f"warning: {message}", file=sys.stderr)
    return 0
