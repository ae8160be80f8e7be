"""Export a region of a stack, at any pyramid level, as TIFF/PNG/BMP slices, one multi-page
TIFF, or a multiscale OME-Zarr image.

``ctstack.export(stack, out, ...)`` is :func:`export` re-exported from the package root.
Every export streams planes in bounded memory, reports ``progress(done, total)``, honours a
``cancel`` event, checks free disk space first, writes under a temporary name and renames it
into place, never overwrites without ``overwrite=True``, and removes partial output on failure.

``plan_export`` says what an export would write (shape, file count, bytes, output path) without
reading a pixel: the napari export and batch widgets and ``ctstack export --dry-run`` show it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._types import AxisRange, Progress, StrPath
from ..errors import LevelNotAvailable, NotEnoughSpace, OutputExists, UnsupportedExport
from ..pyramid import DEFAULT_MAX_SIZE
from .guard import check_parent, check_prefix, check_target
from .planes import PlaneReader, check_window, iter_planes, out_dtype, resolve
from .provenance import record
from .regions import Region, make_region
from .writing import (
    ExportResult,
    Staging,
    check_space,
    human_bytes,
    ome_zarr_result,
    tree_bytes,
)

if TYPE_CHECKING:
    from ..stack import Stack

FORMATS = ("tiff", "png", "bmp", "tiff-stack", "ome-zarr")
SLICE_FORMATS = ("tiff", "png", "bmp")
EXTENSIONS = {
    "tiff-stack": ".tif",
    "ome-zarr": ".ome.zarr",
    "stl": ".stl",
    "ply": ".ply",
    "obj": ".obj",
}
"""The suffix each output format adds to an output name (slice folders add none)."""
_NAME_SUFFIXES = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif")

__all__ = [
    "FORMATS",
    "ExportPlan",
    "ExportResult",
    "LevelNotAvailable",
    "NotEnoughSpace",
    "OutputExists",
    "Region",
    "UnsupportedExport",
    "export",
    "level_shapes",
    "make_region",
    "output_name",
    "plan_export",
]


@dataclass(frozen=True)
class ExportPlan:
    """What an export would write, found without reading a pixel."""

    out: Path
    format: str
    level: int
    region: Region
    dtype: str
    files: int
    bytes: int  # pixel bytes (the files' headers and an OME-Zarr's extra levels come on top)
    built: bool  # False: the level does not exist yet and the export builds the pyramid first

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.region.shape

    def summary(self) -> str:
        """``12 x 27 x 30 voxels at level 0, uint16: 12 files, about 18.98 KiB``."""
        shape = " x ".join(map(str, self.shape))
        files = f"{self.files} file{'s' if self.files != 1 else ''}"
        built = "" if self.built else " (the pyramid is built first)"
        return (
            f"{shape} voxels at level {self.level}, {self.dtype}: {files}, "
            f"about {human_bytes(self.bytes)}{built}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "format": self.format,
            "level": self.level,
            "region": self.region.describe(),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "files": self.files,
            "bytes": self.bytes,
            "built": self.built,
        }


def output_name(name: str, format: str) -> str:
    """An output name for ``format``: ``name`` without a container suffix (``.tif``,
    ``.ome.zarr``, ...), plus the format's own (none for slice folders)."""
    stem = str(name)
    for suffix in _NAME_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return (stem or "stack") + EXTENSIONS.get(str(format).lower(), "")


def plan_export(
    stack: Stack,
    out: StrPath,
    z: AxisRange = None,
    y: AxisRange = None,
    x: AxisRange = None,
    level: int = 0,
    format: str = "tiff",
    window: tuple[float, float] | None = None,
    pyramid_max_size: int | None = None,
) -> ExportPlan:
    """What ``export(stack, out, z, y, x, level, format, window)`` would write: shape at the
    level, dtype, file count, bytes and the output path, without reading a pixel.

    A level the pyramid does not have yet is planned with the shapes a build with
    ``pyramid_max_size`` (default: the stack's pyramid settings, else the default) would
    give; ``built`` says so.
    Raises what the export would raise for an unknown format, a bad region or window, an
    ``out`` below a file, or a level that no build makes.
    """
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise UnsupportedExport(f"unknown export format {format!r}; choose from {FORMATS}")
    level = int(level)
    if level < 0:
        raise LevelNotAvailable(f"{stack.path}: level must be 0 or more, got {level}")
    built = len(stack.levels)
    shapes = level_shapes(stack, pyramid_max_size) if level >= built else _built_shapes(stack)
    if level >= len(shapes):
        raise LevelNotAvailable(
            f"{stack.path}: level {level} does not exist; this stack has levels 0.."
            f"{len(shapes) - 1}"
        )
    region = make_region(stack, z, y, x, level, shapes[level])
    check_parent(Path(out).expanduser())
    dtype = out_dtype(stack, check_window(window))
    if fmt in ("png", "bmp"):
        from .slices import check_dtype

        check_dtype(fmt, dtype)
    return ExportPlan(
        out=Path(out),
        format=fmt,
        level=level,
        region=region,
        dtype=dtype.name,
        files=region.shape[0] if fmt in SLICE_FORMATS else 1,
        bytes=int(np.prod(region.shape)) * dtype.itemsize,
        built=level < built,
    )


def level_shapes(stack: Stack, pyramid_max_size: int | None = None) -> list[tuple[int, int, int]]:
    """Shapes of the levels an export can use: the built ones, else those a build with
    ``pyramid_max_size`` (default: the stack's pyramid settings, else the default) makes."""
    from ..pyramid import DEFAULT_MAX_SIZE
    from ..pyramid import level_shapes as planned

    built = _built_shapes(stack)
    size = pyramid_max_size or _pyramid_max_size(stack) or DEFAULT_MAX_SIZE
    would = [_shape3(stack.shape), *(_shape3(s) for s in planned(_shape3(stack.shape), size))]
    return built if len(built) >= len(would) else would


def _shape3(shape: Any) -> tuple[int, int, int]:
    z, y, x = (int(n) for n in shape)
    return (z, y, x)


def _built_shapes(stack: Stack) -> list[tuple[int, int, int]]:
    return [_shape3(a.shape) for a in stack.levels]


def _pyramid_max_size(stack: Stack) -> int | None:
    """The max_size of the stack's pyramid when the engine records it (``stack.pyramid``)."""
    pyramid = getattr(stack, "pyramid", None)
    settings = getattr(pyramid, "settings", None)
    size = getattr(settings, "max_size", None)
    return int(size) if size else None


def export(
    stack: Stack | StrPath,
    out: StrPath,
    z: AxisRange = None,
    y: AxisRange = None,
    x: AxisRange = None,
    level: int = 0,
    format: str = "tiff",
    overwrite: bool = False,
    window: tuple[float, float] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    prefix: str | None = None,
    ngff_version: str = "0.4",
    max_size: int = DEFAULT_MAX_SIZE,
    client: Any = None,
    compression: str = "lz4",
    shard: bool = False,
) -> ExportResult:
    """Write the level-0 region ``z, y, x`` (slices or (start, stop) pairs) at ``level``.

    ``format``: "tiff" / "png" / "bmp" (a folder of slices, ``prefix`` overrides the source
    prefix), "tiff-stack" (one file), "ome-zarr" (``ngff_version`` "0.4" or "0.5"; levels
    halve until ``max_size``; ``compression`` "lz4" (blosc-lz4, the default), "zstd" or "none";
    ``shard=True`` gathers chunks into zarr v3 shards, NGFF 0.5 only).
    ``window=(low, high)`` writes uint8 scaled from that window.
    ``progress(done, total)`` counts exported planes (and source slices while a missing
    pyramid is built for level > 0). Returns an ExportResult (files, bytes, seconds).
    With a ``distributed.Client``, slice folders and OME-Zarr are written by region tasks on
    its cluster (``ctstack._cluster.export``), byte-identical to a local export; a
    "tiff-stack" (one file) is written here.
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
    zarr_options = _zarr_options(fmt, ngff_version, compression, shard)
    out = check_target(Path(out), overwrite, stack, fmt)
    if client is not None and fmt != "tiff-stack":
        from .._cluster.export import ensure_level, export_on_cluster

        ensure_level(stack, int(level), client, progress, cancel)
        region = resolve(stack, z, y, x, int(level), progress, cancel)
        prov = record(stack, region, fmt, win)
        result = export_on_cluster(
            client, stack, out, fmt, region, win, prov, prefix, overwrite, ngff_version,
            max_size, progress, cancel, **zarr_options,
        )  # fmt: skip
        result.shape, result.dtype = region.shape, dtype.name
        result.level, result.region = region.level, region.describe()
        return result
    region = resolve(stack, z, y, x, int(level), progress, cancel)
    prov = record(stack, region, fmt, win)
    reader = PlaneReader(stack, region, win)
    planes = iter_planes(reader, region.shape[0], progress, cancel)
    nbytes = int(np.prod(region.shape)) * dtype.itemsize
    if fmt in SLICE_FORMATS:
        result = _slices(stack, out, fmt, region, planes, prov, prefix, overwrite, nbytes)
    elif fmt == "tiff-stack":
        result = _tiff_stack(out, region, planes, dtype, prov, overwrite, nbytes)
    else:
        result = _ome_zarr(
            stack, out, region, planes, dtype, prov, overwrite, ngff_version, max_size,
            compression, shard,
        )  # fmt: skip
    result.shape, result.dtype = region.shape, dtype.name
    result.level, result.region = region.level, region.describe()
    return result


Planes = Iterator[tuple[int, np.ndarray]]


def _slices(
    stack: Stack,
    out: Path,
    fmt: str,
    region: Region,
    planes: Planes,
    prov: dict[str, Any],
    prefix: str | None,
    overwrite: bool,
    nbytes: int,
) -> ExportResult:
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


def _tiff_stack(
    out: Path,
    region: Region,
    planes: Planes,
    dtype: np.dtype,
    prov: dict[str, Any],
    overwrite: bool,
    nbytes: int,
) -> ExportResult:
    from .tiff_stack import write_stack

    check_space(out.parent, nbytes + region.shape[0] * 4096)
    with Staging(out, overwrite, folder=False, fmt="tiff-stack") as stage:
        kind = write_stack(stage.tmp, (p for _, p in planes), region, dtype, prov)
        stage.commit()
    return ExportResult(
        out, "tiff-stack", [out], out.stat().st_size, stage.elapsed(), extra={"flavour": kind}
    )


def _zarr_options(fmt: str, version: str, compression: str, shard: bool) -> dict[str, Any]:
    """Check the OME-Zarr options up front (before any pixel is read); return the non-default
    ones (for the cluster export). Other formats take only the defaults."""
    if fmt != "ome-zarr":
        if compression != "lz4" or shard:
            raise UnsupportedExport("compression= and shard= apply to format='ome-zarr' only")
        return {}
    from .ome_zarr import check_options

    check_options(version, compression, shard)
    return {"compression": compression, "shard": shard} if compression != "lz4" or shard else {}


def _ome_zarr(
    stack: Stack,
    out: Path,
    region: Region,
    planes: Planes,
    dtype: np.dtype,
    prov: dict[str, Any],
    overwrite: bool,
    version: str,
    max_size: int,
    compression: str = "lz4",
    shard: bool = False,
) -> ExportResult:
    from .ome_zarr import estimate_bytes, write_ome_zarr

    check_space(out.parent, estimate_bytes(region, dtype, max_size))
    with Staging(out, overwrite, folder=True, fmt="ome-zarr", prov=prov) as stage:
        n = write_ome_zarr(
            stage.tmp, (p for _, p in planes), region, dtype, prov, stack.name, version,
            max_size, compression, shard,
        )  # fmt: skip
        stage.commit()
    return ome_zarr_result(out, stage.elapsed(), n, version, compression, shard)
