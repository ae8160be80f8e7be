"""Exports written by region tasks on a dask.distributed cluster, byte-identical to local ones.

The client stages the output exactly as a local export does (``_export.writing.Staging``: a
hidden sibling of ``out``, the export marker, an atomic rename at the end) and plans the
region's planes in slabs (``plan.plan_slabs``):

- slice folders (TIFF, PNG, BMP): each task writes the files of its planes with the local
  ``SliceWriter`` (one file per plane, so every file has one owner);
- OME-Zarr: the client creates the group and the level arrays (metadata only), each slab task
  reads its planes, runs the cascade for the levels it can build whole and writes their chunk
  files with the local export's chunk writer (``_export.ome_zarr``); one top task builds the
  levels above from the written slab level; the client writes the group's ``multiscales``
  metadata last, as the local writer does.

A cancel or a failure stops every task before the staged folder is removed.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._types import Progress
from .plan import LevelSpec, Slab, SlabPlan, plan_slabs
from .runner import TaskRunner
from .tasks import CancelFlag, TaskResult

if TYPE_CHECKING:
    from distributed import Client

    from .._export.regions import Region
    from .._export.writing import ExportResult
    from ..stack import Stack

SLICES_PER_TASK = 64  # planes per slice-folder task
OME_ZARR_SLAB = 64  # planes per OME-Zarr slab task aimed at


def ensure_level(
    stack: Stack,
    level: int,
    client: Client,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Make level ``level`` available before an export reads it: an adopted or cached
    pyramid that has it, else a build on the cluster (the default ``max_size``)."""
    from ..pyramid import DEFAULT_MAX_SIZE, level_shapes, load_pyramid_with_level

    if level < 1 or len(stack.levels) > level:
        return
    found = load_pyramid_with_level(stack, level)
    if found is not None:
        stack._adopt(found)
    elif len(level_shapes(stack.shape, DEFAULT_MAX_SIZE)) >= level:
        stack.build_pyramid(progress=progress, cancel=cancel, client=client)


def export_on_cluster(
    client: Client,
    stack: Stack,
    out: Path,
    fmt: str,
    region: Region,
    window: tuple[float, float] | None,
    prov: dict[str, Any],
    prefix: str | None,
    overwrite: bool,
    version: str,
    max_size: int,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    compression: str = "lz4",
    shard: bool = False,
) -> ExportResult:
    """Write the export with region tasks on ``client``'s cluster; same result as locally
    (``compression`` and ``shard``: the OME-Zarr options of the local export)."""
    from .._export.planes import out_dtype
    from .._export.writing import (
        ExportResult,
        Staging,
        check_space,
        ome_zarr_result,
        tree_bytes,
    )
    from .checks import check_workers

    dtype = out_dtype(stack, window)
    nbytes = int(np.prod(region.shape)) * dtype.itemsize
    if fmt == "ome-zarr":
        from .._export.ome_zarr import estimate_bytes

        check_space(out.parent, estimate_bytes(region, dtype, max_size))
    else:
        check_space(out.parent, nbytes + region.shape[0] * 4096)
    with Staging(out, overwrite, folder=True, fmt=fmt, prov=prov) as stage:
        sources = stack.sources()
        check_workers(client, [stack.path, *sources[:1], *sources[-1:]], stage.tmp)
        with TaskRunner(client, cancel) as runner:
            from .build import _shared_stack

            remote = _shared_stack(client, stack)
            if fmt == "ome-zarr":
                from .._export.ome_zarr import finish_image

                options = {
                    "version": version,
                    "max_size": max_size,
                    "compression": compression,
                    "shard": shard,
                }
                extra = _ome_zarr(
                    runner, remote, stage.tmp, region, dtype, window, options, progress
                )
                finish_image(stage.tmp, region, extra["levels"], stack.name, version, prov)
            else:
                extra = _slices(
                    runner, remote, stage.tmp, fmt, region, window, prefix, prov, progress
                )
            remote.release()
        _count(progress, region.shape[0])
        stage.commit()
    if fmt == "ome-zarr":
        return ome_zarr_result(
            out, stage.elapsed(), extra["levels"], version, compression, shard, tasks=extra["tasks"]
        )
    from .._export.slices import naming

    name = naming(stack, region, fmt, prefix)
    files = [out / name(i) for i in range(region.shape[0])]
    return ExportResult(
        out, fmt, files, tree_bytes(out), stage.elapsed(), extra={"tasks": extra["tasks"]}
    )


def _count(progress: Progress | None, total: int, done: int | None = None) -> None:
    if progress is not None:
        progress(total if done is None else done, total)


def _collect(
    runner: TaskRunner, futures: list[Any], total: int, progress: Progress | None = None
) -> None:
    count = [0]

    def one(result: TaskResult) -> None:
        count[0] += result.planes
        _count(progress, total, min(count[0], total))

    runner.collect(futures, one)


# --- slice folders ------------------------------------------------------------------------------


def _slices(
    runner: TaskRunner,
    stack: Any,
    tmp: Path,
    fmt: str,
    region: Region,
    window: tuple[float, float] | None,
    prefix: str | None,
    prov: dict[str, Any],
    progress: Progress | None,
) -> dict[str, Any]:
    plan = plan_slabs(region.shape[0], [LevelSpec(0, region.shape[0], 1)], SLICES_PER_TASK, 0)
    plan.prove()
    futures = [
        runner.submit(
            slice_task,
            stack,
            str(tmp),
            fmt,
            region,
            window,
            prefix,
            prov,
            s,
            key=f"slices-{s.index}",
        )
        for s in plan.slabs
    ]
    _collect(runner, futures, region.shape[0], progress)
    return {"tasks": len(futures)}


def slice_task(
    stack: Stack,
    tmp: str,
    fmt: str,
    region: Region,
    window: tuple[float, float] | None,
    prefix: str | None,
    prov: dict[str, Any],
    slab: Slab,
    cancel: str | None,
) -> TaskResult:
    """Write the files of planes ``slab.start..slab.stop`` of the region into ``tmp``."""
    from .._export.planes import PlaneReader
    from .._export.slices import SliceWriter, naming

    flag = CancelFlag(cancel)
    result = TaskResult(slab.index)
    reader = PlaneReader(stack, region, window)
    writer = SliceWriter(Path(tmp), fmt, region, naming(stack, region, fmt, prefix), prov)
    for i in range(slab.start, slab.stop):
        if flag.is_set():
            result.stopped = True
            return result
        writer.write(i, reader(i))
        result.planes += 1
    return result


# --- OME-Zarr -----------------------------------------------------------------------------------


def ome_zarr_plan(arrays: list[Any], target: int = OME_ZARR_SLAB) -> SlabPlan:
    """The slab plan of an OME-Zarr export from its level arrays (``create_image``): level 0
    is the region, each level's files are aligned to its chunk (or shard) layer depth."""
    from .._export.ome_zarr import z_depth

    specs = [LevelSpec(m, int(a.shape[0]), z_depth(a)) for m, a in enumerate(arrays)]
    return plan_slabs(specs[0].depth, specs, target, min_slab_levels=0)


def _ome_zarr(
    runner: TaskRunner,
    stack: Any,
    tmp: Path,
    region: Region,
    dtype: np.dtype,
    window: tuple[float, float] | None,
    options: dict[str, Any],
    progress: Progress | None,
) -> dict[str, Any]:
    """Create the arrays, run the slab tasks, then the top task; returns levels and tasks."""
    from .._export.ome_zarr import create_image, shapes

    stored = shapes(region, options["max_size"])
    arrays = create_image(
        tmp, stored, dtype, options["version"], options["compression"], options["shard"]
    )
    plan = ome_zarr_plan(arrays)
    lite = dataclasses.replace(plan, slabs=())
    futures = [
        runner.submit(
            ome_slab_task, stack, str(tmp), region, window, lite, s, key=f"ome-zarr-{s.index}"
        )
        for s in plan.slabs
    ]
    _collect(runner, futures, region.shape[0], progress)
    if plan.top_written:
        top = runner.submit(ome_top_task, str(tmp), lite, dtype.str, key="ome-zarr-top")
        _collect(runner, [top], region.shape[0])
    return {"levels": len(stored), "tasks": plan.tasks}


class RegionChunks:
    """Collects planes per OME-Zarr level into chunk-layer-deep slabs and writes each with
    ``_export.ome_zarr.write_chunks``: the bytes a local export writes for those planes."""

    def __init__(self, root: Path, levels: tuple[LevelSpec, ...]) -> None:
        import zarr

        group = zarr.open_group(str(root), mode="r")
        self.root = root
        self.arrays: dict[int, Any] = {}
        self.bufs: dict[int, np.ndarray] = {}
        for spec in levels:
            arr = group[str(spec.level)]
            assert isinstance(arr, zarr.Array)
            self.arrays[spec.level] = arr
            self.bufs[spec.level] = np.zeros((spec.z_depth, *arr.shape[1:]), arr.dtype)

    def put(self, level: int, z: int, plane: np.ndarray) -> None:
        """Plane ``z`` of ``level``; a full chunk layer (or the level's end) is written."""
        from .._export.ome_zarr import write_chunks

        if level not in self.arrays:
            return
        buf, arr = self.bufs[level], self.arrays[level]
        depth = buf.shape[0]
        buf[z % depth] = plane
        if z % depth == depth - 1 or z == arr.shape[0] - 1:
            start = z - z % depth
            write_chunks(self.root, arr, start, buf[: z + 1 - start])


def ome_slab_task(
    stack: Stack,
    tmp: str,
    region: Region,
    window: tuple[float, float] | None,
    plan: SlabPlan,
    slab: Slab,
    cancel: str | None,
) -> TaskResult:
    """Read region planes ``slab.start..slab.stop``, write level 0 and the cascade's levels
    up to ``plan.slab_levels`` (whole chunks only: the plan makes them this slab's)."""
    from .._export.planes import PlaneReader, out_dtype
    from ..pyramid import make_cascade

    flag = CancelFlag(cancel)
    result = TaskResult(slab.index)
    reader = PlaneReader(stack, region, window)
    sink = RegionChunks(Path(tmp), plan.slab_written)
    k = plan.slab_levels
    dtype = out_dtype(stack, window)
    cascade = make_cascade(region.shape[1], region.shape[2], k, dtype) if k else None
    outs = [np.empty(s, dtype) for s in cascade.level_shapes] if cascade else []
    offsets = [slab.start >> m for m in range(1, k + 1)]

    def emit(done: list[tuple[int, int]]) -> None:
        for level, z in done:
            sink.put(level, offsets[level - 1] + z, outs[level - 1])

    for i in range(slab.start, slab.stop):
        if flag.is_set():
            result.stopped = True
            return result
        plane = np.ascontiguousarray(reader(i))
        sink.put(0, i, plane)
        if cascade is not None:
            emit(cascade.push(plane, outs))
        result.planes += 1
    if cascade is not None:
        emit(cascade.finish(outs))
    return result


def ome_top_task(tmp: str, plan: SlabPlan, dtype: str, cancel: str | None) -> TaskResult:
    """Build the levels above ``plan.slab_levels`` from that level's written chunks."""
    import zarr

    from ..pyramid import make_cascade

    flag = CancelFlag(cancel)
    result = TaskResult(-1)
    k = plan.slab_levels
    source = zarr.open_group(tmp, mode="r")[str(k)]
    assert isinstance(source, zarr.Array)
    nz, ny, nx = source.shape
    sink = RegionChunks(Path(tmp), plan.top_written)
    top = plan.top_written[-1].level
    cascade = make_cascade(ny, nx, top - k, np.dtype(dtype))
    outs = [np.empty(s, np.dtype(dtype)) for s in cascade.level_shapes]

    def emit(done: list[tuple[int, int]]) -> None:
        for level, z in done:
            sink.put(k + level, z, outs[level - 1])

    step = int(source.chunks[0])
    for z0 in range(0, nz, step):
        if flag.is_set():
            result.stopped = True
            return result
        for plane in np.asarray(source[z0 : z0 + step]):
            emit(cascade.push(np.ascontiguousarray(plane), outs))
    emit(cascade.finish(outs))
    return result
