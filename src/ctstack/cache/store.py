"""Reading the cache: a stack's ``PyramidCache`` (where it lives) and opening its entries.

An entry opens from metadata alone: its manifest, each level's zarr metadata and a stat of every
file (a shard of whole planes, ``cache.layout``: each must exist with the size the manifest
lists). That check stands in for fsync-ing
every chunk: after a power loss the committed rename may survive while delayed data blocks did
not, which shows as short or missing files. Opening writes and removes nothing (a read-only
cache opens as well); a corrupt entry is replaced when a build commits over it.

Every level array handed out reads through :class:`EntryStore`, the one level reader: every
chunk of an entry is always written, so a chunk that is missing when read means the entry was
removed (``cache clean``, a rebuild) while it was open; that raises ``CacheGone`` naming the
entry instead of reading zeros. A sharded level is a :class:`ShardedLevel`, a zarr array whose
basic selections (planes, xz-planes, blocks, the whole level) are read with ``pread`` straight
from the inner chunks, whose offsets the layout fixes, instead of through zarr's sharding codec
(an index read and an async pipeline per shard); same arrays, same ``CacheGone``. A
plain-chunk level is a :class:`PlainLevel`: the same, each chunk file read with ``pread``
(about half the CPU of zarr's codec pipeline for a 32 MB band, so background reads take less
from the thread that paints).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from .._types import StrPath
from ..errors import CacheGone
from ..locations import cache_location, read_locations, stack_folder
from .grid import LevelLayout, level_layout
from .housekeeping import clean_location, list_location, read_manifest
from .keys import PYRAMID_VERSION, entry_dirname
from .writer import CacheWriter

if TYPE_CHECKING:
    import zarr
    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype

Accept = Callable[[dict[str, Any]], bool]


def _is_chunk_key(key: str) -> bool:
    return key == "c" or key.startswith("c/") or key.startswith("c.")


class EntryStore(LocalStore):
    """The level reader of every cache entry: a read-only zarr store of one level in which a
    missing chunk raises ``CacheGone`` (naming the entry) instead of reading as the fill value.

    Reads of a sharded level (``cache.layout``) skip zarr's per-shard index read: a committed
    entry's shard indexes are fixed by its layout (every inner chunk is written, in zarr's
    order, at a known offset), so the index zarr asks for (a suffix read of the shard) is
    served from ``LevelLayout.index_bytes`` without touching the file. The inner chunk reads
    that follow still go to the file, so a shard that is gone still raises ``CacheGone``.
    Byte-range reads use one ``pread`` (zarr's own opens, seeks to the end, seeks, reads).
    """

    def __init__(self, root: Path | str, entry: Path | str, level: int) -> None:
        super().__init__(root, read_only=True)
        self.entry = str(entry)
        self.level = level
        self.layout: LevelLayout | None = None  # set by open_level for a sharded level
        self.plain: LevelLayout | None = None  # set by open_level for a plain-chunk level

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and getattr(other, "entry", None) == self.entry

    def __hash__(self) -> int:
        return hash((type(self), str(self.root), self.entry))

    def _gone(self, key: str) -> CacheGone:
        return CacheGone(
            f"{self.entry}: this pyramid cache entry is gone (cleaned or rebuilt by another "
            f"process while open; level {self.level}, chunk {key} missing); reopen the stack",
            entry=self.entry,
        )

    def _known_index(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """The shard index zarr asks for with a suffix read, from the layout (or None)."""
        layout = self.layout
        if layout is None or not isinstance(byte_range, SuffixByteRequest):
            return None
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "c" or parts[2:] != ["0", "0"]:
            return None
        iz = int(parts[1])
        if not 0 <= iz < layout.z_files:
            return None
        index = layout.index_bytes(iz)
        return index if byte_range.suffix == len(index) else None

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if _is_chunk_key(key):
            if prototype is None:
                prototype = default_buffer_prototype()
            index = self._known_index(key, byte_range)
            if index is not None:
                return prototype.buffer.from_bytes(index)
            if isinstance(byte_range, RangeByteRequest):
                path = os.path.join(self._base, key)
                try:
                    data = await asyncio.to_thread(_pread, path, byte_range)
                except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                    raise self._gone(key) from None
                return prototype.buffer.from_bytes(data)
        buf = await super().get(key, prototype, byte_range)
        if buf is None and _is_chunk_key(key):
            raise self._gone(key)
        return buf

    @functools.cached_property
    def _base(self) -> str:
        return os.fspath(self.root)


def _pread(path: str, byte_range: RangeByteRequest) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _pread_all(fd, byte_range.end - byte_range.start, byte_range.start)
    finally:
        os.close(fd)


def open_level(entry: Path, level: int, zarr_format: Literal[2, 3] = 3) -> zarr.Array[Any]:
    """Level ``level`` of an entry, read-only, through the strict ``EntryStore``."""
    import zarr

    store = EntryStore(entry / str(level), entry, level)
    arr = zarr.open_array(store=store, mode="r", zarr_format=zarr_format)
    if zarr_format != 3:
        return arr
    layout = level_layout(arr.shape, np.dtype(arr.dtype).itemsize)
    if arr.shards is not None:
        if (
            layout.sharded
            and tuple(arr.shards) == layout.shard
            and tuple(arr.chunks) == (layout.chunks)
        ):
            store.layout = layout
            return ShardedLevel(arr._async_array)
    elif not layout.sharded and tuple(arr.chunks) == layout.chunks and _raw_chunks(arr):
        store.plain = layout
        return PlainLevel(arr._async_array)
    return arr


def _raw_chunks(arr: zarr.Array[Any]) -> bool:
    """Whether each chunk of ``arr`` is stored as its raw little-endian bytes at the key
    ``LevelLayout.file_key`` names (no filter, no compressor, zarr's default key encoding)."""
    from zarr.codecs import BytesCodec

    meta = arr.metadata
    codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return False
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if endian not in (None, "little"):
        return False
    return bool(meta.encode_chunk_key((1, 2, 0)) == "c/1/2/0")


def _basic(selection: Any, shape: tuple[int, ...]) -> list[int | slice] | None:
    """``selection`` as one int or step-1 slice per axis (bounds resolved), or None when it
    is anything else (fancy, stepped, Ellipsis, fields...)."""
    if not isinstance(selection, tuple):
        selection = (selection,)
    if len(selection) > len(shape):
        return None
    out: list[int | slice] = []
    for i, n in enumerate(shape):
        sel = selection[i] if i < len(selection) else slice(None)
        if isinstance(sel, (int, np.integer)) and not isinstance(sel, bool):
            k = int(sel)
            k = k + n if k < 0 else k
            if not 0 <= k < n:
                return None  # zarr raises its own error
            out.append(k)
        elif isinstance(sel, slice):
            a, b, step = sel.indices(n)
            if step != 1:
                return None
            out.append(slice(a, max(a, b)))
        else:
            return None
    return out


def _zarr_base() -> type:
    import zarr

    return zarr.Array


class ShardedLevel(_zarr_base()):  # type: ignore[misc]
    """A sharded cache level (``cache.layout``) as a zarr array whose basic reads (ints and
    step-1 slices: z-planes, xz-planes, blocks, whole levels) bypass zarr's sharding codec.

    Every inner chunk of a committed entry is stored raw at an offset the layout fixes, so a
    read is one ``pread`` per run of needed inner chunks that are adjacent in a file, straight
    into the result, files read side by side by a small thread pool. zarr reads the index of
    each shard, then each inner chunk, one after another, each through its async pipeline.
    Any other selection is zarr's. A file that is gone raises ``CacheGone``, as zarr reads do.
    Stateless (each read opens its files), so thread-safe.
    """

    def __getitem__(self, selection: Any) -> Any:
        store = self._async_array.store_path.store
        layout = getattr(store, "layout", None)
        sel = _basic(selection, tuple(self.shape)) if layout is not None else None
        if sel is None or layout is None or self.dtype.byteorder == ">":
            return super().__getitem__(selection)
        return _read_sharded(store, layout, sel, np.dtype(self.dtype))


class PlainLevel(_zarr_base()):  # type: ignore[misc]
    """A plain-chunk cache level (``cache.layout``) as a zarr array whose basic reads (ints and
    step-1 slices, except a single voxel) ``pread`` the chunk files directly instead of going
    through zarr's codec pipeline (about half the CPU time and wall time for a 32 MB band).

    Each file is one chunk ``(cz, cy, X)``, raw little-endian and C-ordered, padded to the full
    chunk shape at the level's edges (as zarr writes it), so the planes a read needs are one
    contiguous byte run of the file (one plane: just its rows). Files are read side by side
    by the shared thread pool. Any other selection is zarr's. A file that is gone raises
    ``CacheGone``, as zarr reads do. Stateless (each read opens its files), so thread-safe.
    """

    def __getitem__(self, selection: Any) -> Any:
        store = self._async_array.store_path.store
        layout = getattr(store, "plain", None)
        sel = _basic(selection, tuple(self.shape)) if layout is not None else None
        if (
            sel is None
            or layout is None
            or self.dtype.byteorder == ">"
            or all(isinstance(s, int) for s in sel)  # one voxel: zarr's (nothing to gain)
        ):
            return super().__getitem__(selection)
        return _read_plain(store, layout, sel, np.dtype(self.dtype))


def _gather(
    sel: list[int | slice],
    dtype: np.dtype,
    zeros: bool,
    jobs_of: Callable[[int, int, int, int], list[tuple[int, ...]]],
    read: Callable[[np.ndarray, tuple[int, ...], list[tuple[int, int]]], None],
) -> Any:
    """Read the selection ``sel`` (see ``_basic``) file by file: ``jobs_of(z0, z1, y0, y1)``
    lists the files, ``read(out, job, bounds)`` copies one into ``out``, several side by side
    on the shared pool; ints in ``sel`` drop their axis, as numpy would."""
    bounds = [(s, s + 1) if isinstance(s, int) else (s.start, s.stop) for s in sel]
    (z0, z1), (y0, y1), (x0, x1) = bounds
    out = (np.zeros if zeros else np.empty)((z1 - z0, y1 - y0, x1 - x0), dtype)
    if out.size:
        jobs = jobs_of(z0, z1, y0, y1)

        def one(job: tuple[int, ...]) -> None:
            read(out, job, bounds)

        if len(jobs) > 1:
            for _ in _pool().map(one, jobs):
                pass
        else:
            one(jobs[0])
    squeeze = tuple(i for i, s in enumerate(sel) if isinstance(s, int))
    res = out.squeeze(axis=squeeze) if squeeze else out
    return res[()] if res.ndim == 0 else res


def _read_plain(
    store: EntryStore, layout: LevelLayout, sel: list[int | slice], dtype: np.dtype
) -> Any:
    """The selection ``sel`` (see ``_basic``) of a plain-chunk level, read with ``pread``."""
    cz, cy = layout.chunks[:2]
    base = os.fspath(store.root)

    def jobs(z0: int, z1: int, y0: int, y1: int) -> list[tuple[int, ...]]:
        zs, ys = range(z0 // cz, -(-z1 // cz)), range(y0 // cy, -(-y1 // cy))
        return [(iz, iy) for iz in zs for iy in ys]

    def read(out: np.ndarray, job: tuple[int, ...], bounds: list[tuple[int, int]]) -> None:
        _read_chunk(store, base, layout, out, job[0], job[1], bounds)

    return _gather(sel, dtype, False, jobs, read)


def _read_chunk(
    store: EntryStore,
    base: str,
    layout: LevelLayout,
    out: np.ndarray,
    iz: int,
    iy: int,
    bounds: list[tuple[int, int]],
) -> None:
    """Copy the part of chunk file ``(iz, iy)`` inside ``bounds`` into ``out``."""
    (z0, z1), (y0, y1), (x0, x1) = bounds
    cz, cy, cx = layout.chunks
    za, ya = iz * cz, iy * cy
    lz0, lz1 = max(z0, za) - za, min(z1, za + cz) - za
    ly0, ly1 = max(y0, ya) - ya, min(y1, ya + cy) - ya
    isz = out.dtype.itemsize
    if lz1 - lz0 == 1:  # one plane: just its rows
        offset, shape = (lz0 * cy + ly0) * cx * isz, (1, ly1 - ly0, cx)
        rows = slice(None)
    else:
        offset, shape = lz0 * cy * cx * isz, (lz1 - lz0, cy, cx)
        rows = slice(ly0, ly1)
    buf = np.empty(shape, out.dtype.newbyteorder("<"))
    key = layout.file_key(iz, iy)
    try:
        fd = os.open(os.path.join(base, key), os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        raise store._gone(key) from None
    try:
        if _preadv_all(fd, memoryview(buf.data).cast("B"), offset) != buf.nbytes:
            raise store._gone(key)
    finally:
        os.close(fd)
    out[za + lz0 - z0 : za + lz1 - z0, ya + ly0 - y0 : ya + ly1 - y0] = buf[:, rows, x0:x1]


def _preadv_all(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``fd`` at ``offset``; the bytes read (fewer only at end of file)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if not n:
            break
        done += n
    return done


_POOL: tuple[int, Any] | None = None  # (pid, executor): a forked child makes its own
_POOL_LOCK = threading.Lock()


def _pool() -> Any:
    """The threads that read the files of one selection side by side (shared, lazy)."""
    global _POOL
    pid = os.getpid()
    pool = _POOL
    if pool is None or pool[0] != pid:
        from concurrent.futures import ThreadPoolExecutor

        with _POOL_LOCK:
            pool = _POOL
            if pool is None or pool[0] != pid:
                pool = _POOL = (pid, ThreadPoolExecutor(4, thread_name_prefix="ctstack-level-read"))
    return pool[1]


def _read_sharded(
    store: EntryStore, layout: LevelLayout, sel: list[int | slice], dtype: np.dtype
) -> Any:
    """The selection ``sel`` (see ``_basic``) of a sharded level, read with ``pread``."""
    depth = layout.z_depth
    base = os.fspath(store.root)

    def jobs(z0: int, z1: int, y0: int, y1: int) -> list[tuple[int, ...]]:
        return [(iz,) for iz in range(z0 // depth, -(-z1 // depth))]

    def read(out: np.ndarray, job: tuple[int, ...], bounds: list[tuple[int, int]]) -> None:
        (z0, z1), (y0, y1), (x0, x1) = bounds
        _read_file(store, base, layout, out, job[0], z0, z1, y0, y1, x0, x1)

    return _gather(sel, dtype, True, jobs, read)


def _read_file(
    store: EntryStore,
    base: str,
    layout: LevelLayout,
    out: np.ndarray,
    iz: int,
    z0: int,
    z1: int,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
) -> None:
    """Copy the part of file ``iz`` inside ``[z0, z1) x [y0, y1) x [x0, x1)`` into ``out``."""
    cz, cy, cx = layout.chunks
    zf = iz * layout.z_depth
    slot = _slots(layout, iz)
    # inner chunks needed, by their offset in the file (slot order)
    need = []
    for j in range((max(z0, zf) - zf) // cz, -(-(min(z1, zf + layout.z_depth) - zf) // cz)):
        for r in range(y0 // cy, -(-y1 // cy)):
            need.append((slot[(j, r)], j, r))
    need.sort()
    key = layout.file_key(iz)
    path = os.path.join(base, key)
    nb = layout.chunk_bytes
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        raise store._gone(key) from None
    try:
        i = 0
        while i < len(need):
            k = i + 1
            while k < len(need) and need[k][0] == need[k - 1][0] + 1:
                k += 1
            first = need[i][0]
            buf = _pread_all(fd, (k - i) * nb, first * nb)
            if len(buf) != (k - i) * nb:
                raise store._gone(key)
            data = np.frombuffer(buf, out.dtype.newbyteorder("<")).reshape(k - i, cz, cy, cx)
            for n, (_, j, r) in enumerate(need[i:k]):
                za, ya = zf + j * cz, r * cy
                lz0, lz1 = max(z0, za), min(z1, za + cz, layout.shape[0])
                ly0, ly1 = max(y0, ya), min(y1, ya + cy)
                if lz1 <= lz0 or ly1 <= ly0:
                    continue
                out[lz0 - z0 : lz1 - z0, ly0 - y0 : ly1 - y0] = data[
                    n, lz0 - za : lz1 - za, ly0 - ya : ly1 - ya, x0:x1
                ]
            i = k
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=256)
def _slots(layout: LevelLayout, iz: int) -> dict[tuple[int, int], int]:
    """Inner chunk ``(layer, row)`` of file ``iz`` -> its position in the file."""
    return {(j, r): n for n, (j, r, _) in enumerate(layout.order(iz))}


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    while len(data) < n:  # a short read (rare): continue where it stopped
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def _open_levels(entry: Path, manifest: dict[str, Any]) -> list[zarr.Array[Any]]:
    """Open levels 1..n read-only from metadata only; raises if anything disagrees.

    Each level's chunk grid must be the layout ``cache.layout`` gives its shape, and every file
    must have the size the manifest lists: one stat per file, no pixel read.
    """
    levels = []
    dtype = np.dtype(manifest["dtype"])
    sizes = manifest["files"]
    if len(sizes) != len(manifest["levels"]):
        raise ValueError("the manifest lists files for another number of levels")
    for i, shape in enumerate(manifest["levels"], start=1):
        arr = open_level(entry, i, 2 if manifest.get("zarr_format", 3) == 2 else 3)
        if tuple(arr.shape) != tuple(shape) or np.dtype(arr.dtype) != dtype:
            raise ValueError(f"level {i} is {arr.shape} {arr.dtype}, manifest says {shape}")
        layout = level_layout(arr.shape, dtype.itemsize)
        shard = tuple(arr.shards) if arr.shards is not None else None
        if tuple(arr.chunks) != layout.chunks or shard != (
            layout.shard if layout.sharded else None
        ):
            raise ValueError(f"level {i} is not laid out as this version lays it out")
        if not _files_intact(entry / str(i), layout, sizes[i - 1]):
            raise ValueError(f"level {i} has missing or truncated files")
        levels.append(arr)
    return levels


def _files_intact(level_dir: Path, layout: LevelLayout, sizes: Any) -> bool:
    """Every file of the level exists with the size the manifest lists (which must be the
    layout's): a stat per file."""
    if not isinstance(sizes, list) or sizes != layout.sizes():
        return False
    base = os.fspath(level_dir)
    for key, size in zip(layout.file_keys(), sizes, strict=True):
        if os.stat(os.path.join(base, key)).st_size != size:
            return False
    return True


class PyramidCache:
    """The levels 1..n cache of one stack (folder ``root``, series ``name``)."""

    def __init__(self, root: Path | str, name: str, cache_dir: StrPath | None = None) -> None:
        self.root = stack_folder(root)
        self.name = name
        self.location = cache_location(self.root, cache_dir)
        self._read_locations = read_locations(self.root, cache_dir, written=self.location)

    def __repr__(self) -> str:
        return f"PyramidCache({str(self.root)!r}, {self.name!r}, location={str(self.location)!r})"

    def entry_path(self, key: str) -> Path:
        """Where the committed entry for ``key`` lives (whether or not it exists)."""
        return self.location / entry_dirname(self.name, key)

    @property
    def read_locations(self) -> list[Path]:
        """Where entries are looked for: the written location first, then one only read."""
        return list(self._read_locations)

    def load(self, key: str) -> list[zarr.Array[Any]] | None:
        """The committed levels for ``key`` as read-only zarr arrays, or None; reads no pixel."""
        found = self.load_entry(key)
        return None if found is None else found[1]

    def load_entry(
        self, key: str, accept: Accept | None = None
    ) -> tuple[Path, list[zarr.Array[Any]]] | None:
        """``(entry folder, levels)`` for ``key``, or None: ``load`` plus where it was found
        (the written location, or a location only read, such as a read-only ``.ctstack``).

        ``accept(manifest)`` may refuse an entry (e.g. a bad slice that has changed since).
        Writes and removes nothing: a corrupt entry is replaced by the next build's commit.
        """
        for location in self._read_locations:
            entry = location / entry_dirname(self.name, key)
            if not entry.is_dir():
                continue
            levels = self._open_entry(entry, key, accept)
            if levels is not None:
                return entry, levels
        return None

    def _open_entry(
        self, entry: Path, key: str, accept: Accept | None = None
    ) -> list[zarr.Array[Any]] | None:
        m = read_manifest(entry)
        if not m or m.get("key") != key or m.get("version") != PYRAMID_VERSION:
            return None
        if m.get("name") != self.name:
            return None
        if accept is not None and not accept(m):
            return None
        try:
            return _open_levels(entry, m)
        except Exception:  # any unreadable metadata means: not a usable cache
            return None

    def writer(
        self,
        key: str,
        level_shapes: Sequence[Sequence[int]],
        dtype: Any,
        source: str | None = None,
    ) -> CacheWriter:
        """Start building the entry for ``key`` in a private temp folder.

        ``source`` is the stack's source fingerprint: on commit, this series' entries of other
        sources are evicted (without it, the key stands for the source).
        """
        return CacheWriter(self, key, level_shapes, dtype, source)

    def entries(self) -> list[dict[str, Any]]:
        """Every entry and temp folder in this cache's location (all series names)."""
        return list_location(self.location)

    def clean(self, keep_roi: bool = True) -> int:
        """Remove this location's pyramid entries and stale temp folders; returns bytes freed."""
        return clean_location(self.location, keep_roi=keep_roi)
