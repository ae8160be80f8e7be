"""A multiscale OME-Zarr image of the region: NGFF 0.4 on zarr v2 (default) or 0.5 on zarr v3.

Level 0 is the exported region; further levels come from the same 2x2x2 cascade as the
pyramid (``ctstack.pyramid.make_cascade``), fed one plane at a time, so memory stays bounded
(one chunk-deep slab per level). Axes carry units; datasets carry scale and translation.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import UnsupportedExport
from ..pyramid import DEFAULT_MAX_SIZE, level_shapes, make_cascade
from .regions import Region

if TYPE_CHECKING:
    import zarr

VERSIONS = ("0.4", "0.5")
CHUNK = (16, 256, 256)
NGFF_UNITS = ("nanometer", "micrometer", "millimeter", "centimeter")


def shapes(region: Region, max_size: int) -> list[tuple[int, int, int]]:
    """Shapes of the stored levels: the region, then halvings until max_size is reached."""
    return [region.shape, *level_shapes(region.shape, max_size)]


def estimate_bytes(region: Region, dtype: np.dtype, max_size: int) -> int:
    """Uncompressed size of every level (the worst case for the free-space check)."""
    return sum(int(np.prod(s)) for s in shapes(region, max_size)) * np.dtype(dtype).itemsize


def multiscales(region: Region, n: int, name: str, version: str) -> dict[str, Any]:
    """The NGFF ``multiscales`` entry: axes with units, per-level scale and translation."""
    unit = region.unit if region.unit in NGFF_UNITS else None
    axes = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
    datasets = []
    for m in range(n):
        f = 1 << m
        scale = [v * f for v in region.voxel_size]
        shift = [o + (f - 1) / 2 * v for o, v in zip(region.origin, region.voxel_size, strict=True)]
        datasets.append(
            {
                "path": str(m),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": shift},
                ],
            }
        )
    ms = {
        "name": name,
        "axes": axes,
        "datasets": datasets,
        "type": "mean",
        "metadata": {"method": "ctstack 2x2x2 mean (partial blocks at odd edges)"},
    }
    if version == "0.4":
        ms = {"version": "0.4", **ms}
    return ms


def _create(
    root: Path, shapes_: list[tuple[int, int, int]], dtype: np.dtype, version: str
) -> tuple[zarr.Group, list[zarr.Array[Any]]]:
    """The group and its level arrays (metadata only); ``root`` is the staged folder."""
    import zarr

    fmt: Literal[2, 3] = 2 if version == "0.4" else 3
    group = zarr.open_group(str(root), mode="a", zarr_format=fmt)
    arrays = []
    for m, shape in enumerate(shapes_):
        chunks = tuple(min(c, n) for c, n in zip(CHUNK, shape, strict=True))
        if fmt == 2:
            from numcodecs import Blosc

            extra = {
                "compressors": Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),
                "chunk_key_encoding": {"name": "v2", "separator": "/"},
            }
        else:
            from zarr.codecs import BloscCodec

            extra = {
                "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
                "dimension_names": ["z", "y", "x"],
            }
        arrays.append(
            group.create_array(
                str(m), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **extra
            )
        )
    return group, arrays


class _ChunkFiles:
    """Encodes and writes one level's chunk files as zarr would (byte for byte), directly.

    zarr's own ``__setitem__`` keeps writing the other chunks of a slab after one write fails
    (its event loop runs them concurrently), and can recreate folders after the cleanup. Here
    every write is a task of our own pool: after a failure no new task starts, and ``close``
    joins the pool before anyone removes the folder. Chunks that hold only the fill value are
    not written, as zarr does by default.
    """

    def __init__(self, root: Path, arr: zarr.Array[Any]) -> None:
        from numcodecs import Blosc

        self.root = root / arr.path
        self.arr = arr
        self.blosc = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE, blocksize=0)
        self.dtype = np.dtype(arr.dtype).newbyteorder("<")
        self.made: set[str] = set()

    def chunks_of(self, start: int, slab: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """(file path, full-size chunk) for every chunk of the slab starting at plane ``start``."""
        cz, cy, cx = self.arr.chunks
        _, ny, nx = self.arr.shape
        iz = start // cz
        for iy in range(-(-ny // cy)):
            for ix in range(-(-nx // cx)):
                block = slab[:, iy * cy : (iy + 1) * cy, ix * cx : (ix + 1) * cx]
                if not block.any():
                    continue
                if block.shape != (cz, cy, cx):  # edge chunks are stored padded to full size
                    full = np.zeros((cz, cy, cx), self.dtype)
                    full[: block.shape[0], : block.shape[1], : block.shape[2]] = block
                    block = full
                key = self.arr.metadata.encode_chunk_key((iz, iy, ix))
                yield os.path.join(self.root, key), block

    def write(self, path: str, block: np.ndarray) -> None:
        parent = os.path.dirname(path)
        if parent not in self.made:
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        data = self.blosc.encode(np.ascontiguousarray(block, self.dtype))
        with open(path, "wb") as fh:
            fh.write(data)


class _Slabs:
    """One chunk-deep buffer per level; a full buffer is written as whole chunk files.

    Chunks are encoded and written by two background threads (a bounded number in flight),
    so compression and file writes overlap with decoding and the cascade.
    """

    IN_FLIGHT = 16  # chunk writes queued at most

    def __init__(self, root: Path, arrays: list[zarr.Array[Any]]) -> None:
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="ctstack-zarr")
        self.files = [_ChunkFiles(root, a) for a in arrays]
        self.bufs = [np.zeros((a.chunks[0], *a.shape[1:]), a.dtype) for a in arrays]
        self.pending: deque[Future[None]] = deque()

    def put(self, level: int, z: int, plane: np.ndarray) -> None:
        buf, files = self.bufs[level], self.files[level]
        depth = buf.shape[0]
        buf[z % depth] = plane
        last = files.arr.shape[0] - 1
        if z % depth == depth - 1 or z == last:
            start = z - z % depth
            slab = buf[: z + 1 - start]
            for path, block in files.chunks_of(start, slab):
                while len(self.pending) >= self.IN_FLIGHT:
                    self.pending.popleft().result()
                self.pending.append(self.pool.submit(files.write, path, block))
            self.bufs[level] = np.zeros_like(buf)

    def close(self, ok: bool) -> None:
        """Wait for (ok) or drop (not ok) the writes in flight; errors surface here.

        Returns only when no writer thread runs any more, so the folder can be removed safely.
        """
        try:
            while self.pending:
                future = self.pending.popleft()
                if ok:
                    future.result()
                else:
                    future.cancel()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def write_ome_zarr(
    root: Path,
    planes: Iterator[np.ndarray],
    region: Region,
    dtype: np.dtype,
    prov: dict[str, Any],
    name: str,
    version: str = "0.4",
    max_size: int = DEFAULT_MAX_SIZE,
) -> int:
    """Write the image into the new folder ``root``; returns the number of levels stored."""
    if version not in VERSIONS:
        raise UnsupportedExport(f"OME-NGFF version must be one of {VERSIONS}, got {version!r}")
    dtype = np.dtype(dtype)
    stored = shapes(region, max_size)
    n_extra = len(stored) - 1
    group, arrays = _create(root, stored, dtype, version)
    slabs = _Slabs(root, arrays)
    cascade = make_cascade(region.shape[1], region.shape[2], n_extra, dtype) if n_extra else None
    outs = [np.empty(s, dtype) for s in cascade.level_shapes] if cascade else []

    def emit(done: list[tuple[int, int]]) -> None:
        for level, z in done:
            slabs.put(level, z, outs[level - 1])

    ok = False
    try:
        for z, plane in enumerate(planes):
            slabs.put(0, z, plane)
            if cascade is not None:
                emit(cascade.push(np.ascontiguousarray(plane), outs))
        if cascade is not None:
            emit(cascade.finish(outs))
        ok = True
    finally:
        slabs.close(ok)
    ms = multiscales(region, len(stored), name, version)
    if version == "0.4":
        group.attrs.update({"multiscales": [ms], "ctstack": prov})
    else:
        group.attrs.update({"ome": {"version": "0.5", "multiscales": [ms]}, "ctstack": prov})
    return len(stored)
