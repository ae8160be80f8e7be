"""Export a region of a stack, at any pyramid level, as TIFF/PNG/BMP slices, one multi-page
TIFF, or a multiscale OME-Zarr image.

``ctstack.export(stack, out, ...)`` is this module called as a function (the module is
callable, so ``import ctstack.export`` and the public name ``ctstack.export`` agree).
Every export streams planes in bounded memory, reports ``progress(done, total)``, honours a
``cancel`` event, checks free disk space first, writes under a temporary name and renames it
into place, never overwrites without ``overwrite=True``, and removes partial output on failure.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._callable import make_callable
from ..errors import LevelNotAvailable, NotEnoughSpace, OutputExists, UnsupportedExport
from .guard import check_prefix, check_target
from .planes import PlaneReader, check_window, iter_planes, out_dtype, resolve
from .provenance import record
from .regions import Region, make_region
from .writing import ExportResult, Staging, check_space, tree_bytes

if TYPE_CHECKING:
    from ..stack import Stack

FORMATS = ("tiff", "png", "bmp", "tiff-stack", "ome-zarr")

__all__ = [
    "FORMATS",
    "ExportResult",
    "LevelNotAvailable",
    "NotEnoughSpace",
    "OutputExists",
    "Region",
    "UnsupportedExport",
    "export",
    "make_region",
]


def export(
    stack: Stack | str | Path,
    out: str | Path,
    z: Any = None,
    y: Any = None,
    x: Any = None,
    level: int = 0,
    format: str = "tiff",
    overwrite: bool = False,
    window: tuple[float, float] | None = None,
    progress=None,
    cancel: threading.Event | None = None,
    prefix: str | None = None,
    ngff_version: str = "0.4",
    max_size: int = 512,
) -> ExportResult:
    """Write the level-0 region ``z, y, x`` (slices or (start, stop) pairs) at ``level``.

    ``format``: "tiff" / "png" / "bmp" (a folder of slices, ``prefix`` overrides the source
    prefix), "tiff-stack" (one file), "ome-zarr" (``ngff_version`` "0.4" or "0.5"; levels
    halve until ``max_size``). ``window=(low, high)`` writes uint8 scaled from that window.
    ``progress(done, total)`` counts exported planes (and source slices while a missing
    pyramid is built for level > 0). Returns an ExportResult (files, bytes, seconds).
    """
    from ..stack import Stack, open_stack

    if not isinstance(stack, Stack):
        stack = open_stack(stack)
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise UnsupportedExport(f"unknown export format {format!r}; choose from {FORMATS}")
    win = check_window(window)
    dtype = out_dtype(stack, win)
    if fmt in ("png", "bmp"):
        from .slices import check_dtype

        check_dtype(fmt, dtype)
    check_prefix(prefix)
    out = check_target(Path(out), overwrite, stack, fmt)
    region = resolve(stack, z, y, x, int(level), progress, cancel)
    prov = record(stack, region, fmt, win)
    reader = PlaneReader(stack, region, win)
    planes = iter_planes(reader, region.shape[0], progress, cancel)
    nbytes = int(np.prod(region.shape)) * dtype.itemsize
    if fmt in ("tiff", "png", "bmp"):
        result = _slices(stack, out, fmt, region, planes, prov, prefix, overwrite, nbytes)
    elif fmt == "tiff-stack":
        result = _tiff_stack(out, region, planes, dtype, prov, overwrite, nbytes)
    else:
        result = _ome_zarr(
            stack, out, region, planes, dtype, prov, overwrite, ngff_version, max_size
        )
    result.shape, result.dtype = region.shape, dtype.name
    result.level, result.region = region.level, region.describe()
    return result


def _slices(stack, out, fmt, region, planes, prov, prefix, overwrite, nbytes) -> ExportResult:
    from .slices import SliceWriter, naming

    check_space(out.parent, nbytes + region.shape[0] * 4096)
    with Staging(out, overwrite, folder=True, fmt=fmt, prov=prov) as stage:
        writer = SliceWriter(stage.tmp, fmt, region, naming(stack, region, fmt, prefix), prov)
        with writer:
            for i, plane in planes:
                writer.submit(i, plane)
        stage.commit()
    files = [out / writer.name(i) for i in range(region.shape[0])]
    return ExportResult(out, fmt, files, tree_bytes(out), stage.elapsed())


def _tiff_stack(out, region, planes, dtype, prov, overwrite, nbytes) -> ExportResult:
    from .tiff_stack import write_stack

    check_space(out.parent, nbytes + region.shape[0] * 4096)
    with Staging(out, overwrite, folder=False, fmt="tiff-stack") as stage:
        kind = write_stack(stage.tmp, (p for _, p in planes), region, dtype, prov)
        stage.commit()
    return ExportResult(
        out, "tiff-stack", [out], out.stat().st_size, stage.elapsed(), extra={"flavour": kind}
    )


def _ome_zarr(
    stack, out, region, planes, dtype, prov, overwrite, version, max_size
) -> ExportResult:
    from .ome_zarr import estimate_bytes, write_ome_zarr

    check_space(out.parent, estimate_bytes(region, dtype, max_size))
    with Staging(out, overwrite, folder=True, fmt="ome-zarr", prov=prov) as stage:
        n = write_ome_zarr(
            stage.tmp, (p for _, p in planes), region, dtype, prov, stack.name, version, max_size
        )
        stage.commit()
    return ExportResult(
        out,
        "ome-zarr",
        [out],
        tree_bytes(out),
        stage.elapsed(),
        extra={"levels": n, "ngff_version": version},
    )


make_callable(__name__, export)
