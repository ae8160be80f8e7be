"""A multiscale OME-Zarr image of the region: NGFF 0.4 on zarr v2 (default) or 0.5 on zarr v3.

Level 0 is the exported region; further levels come from the same 2x2x2 cascade as the
pyramid (``ctstack.pyramid.make_cascade``), fed one plane at a time, so memory stays bounded
(a few chunk-deep slabs per level). Axes carry units; datasets carry scale and translation.

Chunk files are written directly, byte for byte as zarr writes them (tested): chunks of
``CHUNK`` = (16, 256, 256), compressed with ``compression`` = "lz4" (blosc-lz4, byte shuffle,
level 5: the default), "zstd" (blosc-zstd level 1: smaller, slower) or "none"; all-zero chunks
are not written (zarr's default). With ``shard=True`` (NGFF 0.5 only), chunks are gathered
into zarr v3 shards of up to ``SHARD_CHUNKS`` x ``SHARD_CHUNKS`` chunks of one chunk layer.
Encoding (numcodecs' Blosc releases the GIL) and file writes run in a small thread pool that
overlaps with reading and the cascade.

API for writing an image region by region (a cluster task writes its own chunks)
--------------------------------------------------------------------------------
``create_image(root, shapes, dtype, version, compression="lz4", shard=False)``
    The group and the level arrays' metadata (no pixel), in the existing folder ``root``;
    ``shapes`` from ``shapes(region, max_size)``. Returns the level arrays.
``write_chunks(root, arr, start, slab)``
    Writes every chunk (or shard) file of level array ``arr`` (from ``create_image``, or
    ``zarr.open_group(root)[str(m)]``) holding planes ``[start, start + len(slab))``:
    ``slab`` is ``(n, Y, X)``, ``start`` a multiple of ``z_depth(arr)`` and ``n`` either that
    depth or what is left of the level. The encoding is read from the array's own metadata,
    so the files are those a local export writes for the same planes: two tasks owning
    disjoint z-blocks produce together exactly the local export's files.
``finish_image(root, region, levels, name, version, prov)``
    The group's ``multiscales`` and ``ctstack`` attributes, written last, as locally.
``z_depth(arr)``
    Planes per chunk (and shard) layer of a level array: the z alignment of its files.
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
SHARD_CHUNKS = 8  # chunks per shard along y and x, at most (one chunk layer deep)
NGFF_UNITS = ("nanometer", "micrometer", "millimeter", "centimeter")
COMPRESSIONS = {"none": None, "lz4": ("lz4", 5), "zstd": ("zstd", 1)}
"""``compression`` -> blosc (cname, clevel), byte shuffle; "none" stores raw chunks."""
WORKERS = max(2, min(4, os.cpu_count() or 2))  # encoding and writing threads
SLAB_BYTES = 256 << 20  # slabs handed to the writers and not yet written, at most (bytes)
MAX_UINT64 = (1 << 64) - 1


def shapes(region: Region, max_size: int) -> list[tuple[int, int, int]]:
    """Shapes of the stored levels: the region, then halvings until max_size is reached."""
    return [region.shape, *level_shapes(region.shape, max_size)]


def estimate_bytes(region: Region, dtype: np.dtype, max_size: int) -> int:
    """Uncompressed size of every level (the worst case for the free-space check)."""
    return sum(int(np.prod(s)) for s in shapes(region, max_size)) * np.dtype(dtype).itemsize


def check_options(version: str, compression: str, shard: bool) -> None:
    """Raise ``UnsupportedExport`` for an unknown version or compression, or sharding on 0.4."""
    if version not in VERSIONS:
        raise UnsupportedExport(f"OME-NGFF version must be one of {VERSIONS}, got {version!r}")
    if compression not in COMPRESSIONS:
        raise UnsupportedExport(
            f"compression must be one of {tuple(COMPRESSIONS)}, got {compression!r}"
        )
    if shard and version != "0.5":
        raise UnsupportedExport("sharding needs OME-NGFF 0.5 (zarr v3): use ngff_version='0.5'")


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


def create_image(
    root: Path,
    shapes_: list[tuple[int, int, int]],
    dtype: np.dtype,
    version: str,
    compression: str = "lz4",
    shard: bool = False,
) -> list[zarr.Array[Any]]:
    """The group and its level arrays (metadata only) in the staged folder ``root``."""
    return _create(root, shapes_, dtype, version, compression, shard)[1]


def _create(
    root: Path,
    shapes_: list[tuple[int, int, int]],
    dtype: np.dtype,
    version: str,
    compression: str = "lz4",
    shard: bool = False,
) -> tuple[zarr.Group, list[zarr.Array[Any]]]:
    import zarr

    check_options(version, compression, shard)
    codec = COMPRESSIONS[compression]
    fmt: Literal[2, 3] = 2 if version == "0.4" else 3
    group = zarr.open_group(str(root), mode="a", zarr_format=fmt)
    arrays = []
    for m, shape in enumerate(shapes_):
        chunks = tuple(min(c, n) for c, n in zip(CHUNK, shape, strict=True))
        extra: dict[str, Any]
        if fmt == 2:
            from numcodecs import Blosc

            compressor = None if codec is None else Blosc(*codec, shuffle=Blosc.SHUFFLE)
            extra = {
                "compressors": compressor,
                "chunk_key_encoding": {"name": "v2", "separator": "/"},
            }
        else:
            from zarr.codecs import BloscCodec

            compressor = (
                None
                if codec is None
                else BloscCodec(cname=codec[0], clevel=codec[1], shuffle="shuffle")  # type: ignore[arg-type]
            )
            extra = {"compressors": compressor, "dimension_names": ["z", "y", "x"]}
            if shard:
                extra["shards"] = (
                    chunks[0],
                    chunks[1] * min(SHARD_CHUNKS, -(-shape[1] // chunks[1])),
                    chunks[2] * min(SHARD_CHUNKS, -(-shape[2] // chunks[2])),
                )
        arrays.append(
            group.create_array(
                str(m), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **extra
            )
        )
    return group, arrays


def finish_image(
    root: Path, region: Region, levels: int, name: str, version: str, prov: dict[str, Any]
) -> None:
    """Write the group's ``multiscales`` (with ``ome`` on 0.5) and ``ctstack`` attributes."""
    import zarr

    fmt: Literal[2, 3] = 2 if version == "0.4" else 3
    group = zarr.open_group(str(root), mode="a", zarr_format=fmt)
    ms = multiscales(region, levels, name, version)
    if version == "0.4":
        group.attrs.update({"multiscales": [ms], "ctstack": prov})
    else:
        group.attrs.update({"ome": {"version": "0.5", "multiscales": [ms]}, "ctstack": prov})


def z_depth(arr: zarr.Array[Any]) -> int:
    """Planes per chunk (and shard) layer of a level array: its files' z alignment."""
    return int(arr.chunks[0])


def _encoder(arr: zarr.Array[Any]) -> Any:
    """The numcodecs Blosc that zarr would use for ``arr``'s chunks, or None (raw bytes)."""
    from numcodecs import Blosc

    meta = arr.metadata
    if meta.zarr_format == 2:
        comp = meta.compressor
        if comp is not None and not isinstance(comp, Blosc):
            raise UnsupportedExport(f"unexpected compressor {comp!r} for a direct chunk write")
        return comp
    comps = arr.compressors
    if not comps:
        return None
    from zarr.codecs import BloscCodec

    (codec,) = comps
    if not isinstance(codec, BloscCodec):
        raise UnsupportedExport(f"unexpected codec {codec!r} for a direct chunk write")
    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[codec.shuffle.value]
    return Blosc(
        cname=codec.cname.value,
        clevel=codec.clevel,
        shuffle=shuffle,
        blocksize=codec.blocksize,
        typesize=codec.typesize,
    )


class _ChunkFiles:
    """Encodes and writes one level's chunk (or shard) files as zarr would, byte for byte.

    ``chunks_of`` says which files a slab makes (cheap views, on the caller's thread);
    ``write`` does the work (padding, emptiness check, encoding, the file write) and can run
    in any thread. zarr's own ``__setitem__`` keeps writing the other chunks of a slab after
    one write fails and can recreate folders after the cleanup; here every write is a task of
    our own, so the caller decides what runs after a failure. Chunks that hold only the fill
    value are not written, as zarr does by default; a shard without any chunk is not written.
    """

    def __init__(self, root: Path, arr: zarr.Array[Any]) -> None:
        self.root = Path(root) / arr.path
        self.arr = arr
        self.codec = _encoder(arr)
        self.dtype = np.dtype(arr.dtype).newbyteorder("<")
        cz, cy, cx = (int(c) for c in arr.chunks)
        self.chunks = (cz, cy, cx)
        shards = arr.shards if arr.metadata.zarr_format == 3 else None
        self.shards: tuple[int, ...] | None = tuple(int(s) for s in shards) if shards else None
        self.per_shard = (1, 1, 1)
        if self.shards is not None:
            self.per_shard = (1, self.shards[1] // cy, self.shards[2] // cx)
        self.made: set[str] = set()

    def chunks_of(self, start: int, slab: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """(file path, block) for every file of the slab ``(n, Y, X)`` starting at plane
        ``start``: the chunk's (or, sharded, the shard's) voxels, a view, not yet padded."""
        cz, cy, cx = self.shards or self.chunks
        _, ny, nx = self.arr.shape
        iz = start // cz
        for iy in range(-(-ny // cy)):
            for ix in range(-(-nx // cx)):
                block = slab[:, iy * cy : (iy + 1) * cy, ix * cx : (ix + 1) * cx]
                yield self.path(iz, iy, ix), block

    def path(self, iz: int, iy: int, ix: int) -> str:
        """The file of chunk (or shard) ``(iz, iy, ix)``."""
        return os.path.join(self.root, self.arr.metadata.encode_chunk_key((iz, iy, ix)))

    def _split(self, block: np.ndarray) -> np.ndarray:
        """A region ``(n, h, w)`` as whole chunks, padded: ``(rows, cols, cz, cy, cx)``."""
        cz, cy, cx = self.chunks
        n, h, w = block.shape
        rows, cols = -(-h // cy), -(-w // cx)
        out = np.zeros((rows, cols, cz, cy, cx), self.dtype)
        for r in range(rows):
            for c in range(cols):
                part = block[:, r * cy : (r + 1) * cy, c * cx : (c + 1) * cx]
                out[r, c, :n, : part.shape[1], : part.shape[2]] = part
        return out

    def _encode(self, chunk: np.ndarray) -> bytes | memoryview | None:
        """One whole chunk's stored bytes, None when it holds only the fill value."""
        if not chunk.any():
            return None
        chunk = np.ascontiguousarray(chunk, self.dtype)
        if self.codec is None:
            return memoryview(chunk.data).cast("B")
        return self.codec.encode(chunk)

    def _parts(self, chunks: np.ndarray) -> list[bytes | memoryview] | None:
        """The file's bytes from its whole chunks ``(rows, cols, cz, cy, cx)`` (those of a
        shard that lie inside the level): one chunk, or a shard's chunks in zarr's Morton
        order followed by the index and its crc32c. None when nothing but fill is there."""
        if self.shards is None:
            data = self._encode(chunks[0, 0])
            return None if data is None else [data]
        import google_crc32c
        from zarr.core.indexing import morton_order_iter

        index = np.full((*self.per_shard, 2), MAX_UINT64, dtype="<u8")
        parts: list[bytes | memoryview] = []
        offset = 0
        for c in morton_order_iter(self.per_shard):
            if c[1] >= chunks.shape[0] or c[2] >= chunks.shape[1]:
                continue  # outside the level: zarr leaves it out
            data = self._encode(chunks[c[1], c[2]])
            if data is None:
                continue
            index[tuple(c)] = (offset, len(data))
            offset += len(data)
            parts.append(data)
        if not parts:
            return None
        raw = index.tobytes()
        parts.append(raw + int(google_crc32c.value(raw)).to_bytes(4, "little"))
        return parts

    def write(self, path: str, block: np.ndarray) -> None:
        """Encode ``block`` and write it as the file ``path`` (nothing when it holds only the
        fill value). ``block`` is a region ``(n, h, w)`` (from ``chunks_of``) or, from the
        local writer, whole chunks already: ``(cz, cy, cx)`` or ``(rows, cols, cz, cy, cx)``."""
        if block.ndim == 5:
            chunks = block
        elif block.shape == self.chunks:
            chunks = block[None, None]
        else:
            chunks = self._split(block)
        parts = self._parts(chunks)
        if parts is None:
            return
        parent = os.path.dirname(path)
        if parent not in self.made:
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        with open(path, "wb") as fh:
            for part in parts:
                fh.write(part)


def write_chunks(root: Path, arr: zarr.Array[Any], start: int, slab: np.ndarray) -> None:
    """Write every file of level ``arr`` holding planes ``[start, start + len(slab))`` (see the
    module docstring); the same bytes the local export writes for them."""
    depth = z_depth(arr)
    n = len(slab)
    if start % depth or not 0 < n <= depth or (n < depth and start + n != arr.shape[0]):
        raise UnsupportedExport(
            f"planes [{start}, {start + n}) are not one chunk layer of {depth} planes"
        )
    files = _ChunkFiles(root, arr)
    for path, block in files.chunks_of(start, slab):
        files.write(path, block)


class _ChunkSlab:
    """One chunk layer of a level held as whole chunks, ``(rows, cols, cz, cy, cx)``: every
    chunk is contiguous, so it is encoded (or written raw) without another copy."""

    def __init__(self, files: _ChunkFiles) -> None:
        cz, cy, cx = files.chunks
        _, ny, nx = files.arr.shape
        self.files = files
        self.data = np.zeros((-(-ny // cy), -(-nx // cx), cz, cy, cx), files.dtype)
        self.fr, self.rr = divmod(ny, cy)
        self.fc, self.rc = divmod(nx, cx)

    def put(self, k: int, plane: np.ndarray) -> None:
        """Scatter plane ``k`` of the layer into its chunks (padding stays zero)."""
        _cz, cy, cx = self.files.chunks
        d, fr, rr, fc, rc = self.data, self.fr, self.rr, self.fc, self.rc
        if fr and fc:
            d[:fr, :fc, k] = plane[: fr * cy, : fc * cx].reshape(fr, cy, fc, cx).swapaxes(1, 2)
        if rr and fc:
            d[fr, :fc, k, :rr] = plane[fr * cy :, : fc * cx].reshape(rr, fc, cx).swapaxes(0, 1)
        if fr and rc:
            d[:fr, fc, k, :, :rc] = plane[: fr * cy, fc * cx :].reshape(fr, cy, rc)
        if rr and rc:
            d[fr, fc, k, :rr, :rc] = plane[fr * cy :, fc * cx :]

    def jobs(self, iz: int, n: int) -> Iterator[tuple[str, np.ndarray]]:
        """(path, whole chunks) of every file of layer ``iz`` holding ``n`` planes."""
        if n < self.data.shape[2]:
            self.data[:, :, n:] = 0  # the level's last layer: fill past its end
        files = self.files
        _, ky, kx = files.per_shard
        rows, cols = self.data.shape[:2]
        for sy in range(-(-rows // ky)):
            for sx in range(-(-cols // kx)):
                if files.shards is None:
                    block = self.data[sy, sx]
                else:
                    block = self.data[sy * ky : (sy + 1) * ky, sx * kx : (sx + 1) * kx]
                yield files.path(iz, sy, sx), block


class _Slabs:
    """One chunk layer per level being filled; a full layer's files go to writer threads.

    Layers are reused once every file of theirs is written; at most ``SLAB_BYTES`` of them
    (and at least two) are in the writers' hands, so memory stays bounded while encoding and
    file writes overlap with decoding and the cascade. After a failure no new write starts.
    """

    def __init__(self, root: Path, arrays: list[zarr.Array[Any]], workers: int = WORKERS) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ctstack-zarr")
        self.files = [_ChunkFiles(root, a) for a in arrays]
        self.depth = [z_depth(a) for a in arrays]
        self.current: list[_ChunkSlab | None] = [None] * len(arrays)
        self.free: list[list[_ChunkSlab]] = [[] for _ in arrays]
        self.flight: deque[tuple[int, _ChunkSlab, list[Future[None]]]] = deque()
        self.failed: BaseException | None = None

    def put(self, level: int, z: int, plane: np.ndarray) -> None:
        slab = self.current[level]
        if slab is None:
            free = self.free[level]
            slab = self.current[level] = free.pop() if free else _ChunkSlab(self.files[level])
        depth = self.depth[level]
        slab.put(z % depth, plane)
        files = self.files[level]
        if z % depth == depth - 1 or z == files.arr.shape[0] - 1:
            self.current[level] = None
            self._make_room(slab.data.nbytes)
            futures = [
                self.pool.submit(self._write, files, path, block)
                for path, block in slab.jobs(z // depth, z % depth + 1)
            ]
            self.flight.append((level, slab, futures))

    def _write(self, files: _ChunkFiles, path: str, block: np.ndarray) -> None:
        if self.failed is not None:
            return  # a write failed: no new file is started
        try:
            files.write(path, block)
        except BaseException as exc:
            self.failed = self.failed or exc
            raise

    def _make_room(self, nbytes: int) -> None:
        """Wait for the oldest layers until the new one fits in ``SLAB_BYTES`` (raises the
        first write error)."""
        while len(self.flight) >= 2 and (
            sum(s.data.nbytes for _, s, _ in self.flight) + nbytes > SLAB_BYTES
        ):
            self._retire()

    def _retire(self) -> None:
        level, slab, futures = self.flight.popleft()
        for f in futures:
            f.result()
        self.free[level].append(slab)

    def close(self, ok: bool) -> None:
        """Wait for (ok) or drop (not ok) the writes in flight; errors surface here.

        Returns only when no writer thread runs any more, so the folder can be removed safely.
        """
        try:
            if ok:
                while self.flight:
                    self._retire()
            else:
                self.failed = self.failed or RuntimeError("export stopped")
                for _, _, futures in self.flight:
                    for f in futures:
                        f.cancel()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.flight.clear()


def write_ome_zarr(
    root: Path,
    planes: Iterator[np.ndarray],
    region: Region,
    dtype: np.dtype,
    prov: dict[str, Any],
    name: str,
    version: str = "0.4",
    max_size: int = DEFAULT_MAX_SIZE,
    compression: str = "lz4",
    shard: bool = False,
) -> int:
    """Write the image into the new folder ``root``; returns the number of levels stored."""
    check_options(version, compression, shard)
    dtype = np.dtype(dtype)
    stored = shapes(region, max_size)
    n_extra = len(stored) - 1
    arrays = create_image(root, stored, dtype, version, compression, shard)
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
    finish_image(root, region, len(stored), name, version, prov)
    return len(stored)
