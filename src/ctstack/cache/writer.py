"""The cache writer: builds one entry in a private temp folder and commits it atomically.

Planes arrive in increasing z per level; full chunk-deep slabs go to one background thread
that writes their chunk files (raw little-endian bytes, the layout zarr itself would write)
while the caller decodes the next planes. The manifest is written last and the folder renamed
into place, so a kill or a full disk leaves either no entry or a whole one (a full disk is a
``CacheError`` saying "disk full" and naming the location; the build's folders are removed).

Concurrent builders of one key: the first rename wins and the others adopt its entry. A forced
rebuild (``commit(replace=True)``) replaces only the entry that was committed when the writer
was made (each manifest carries a random ``build`` id); an entry committed while it built wins,
so no process ever returns levels of an entry that another one of the same race removes.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CacheError
from .housekeeping import (
    evict_stale,
    is_owned,
    read_manifest,
    remove_marked_last,
    remove_tree,
    sweep_stale,
    write_temp_marker,
)
from .keys import (
    CHECKSUM_ALGORITHM,
    CHECKSUMS,
    LEVEL_TAG,
    MANIFEST,
    PYRAMID_VERSION,
    TEMP_MARKER,
    TMP_PREFIX,
    TRASH_PREFIX,
    ZARR_FORMAT,
    Shape3,
    chunk_digest,
    chunk_shape,
    entry_dirname,
    private_name,
)

if TYPE_CHECKING:
    import zarr

    from .store import PyramidCache

WRITE_QUEUE = 1  # full slabs waiting for the writer thread, at most (bounds memory)
COMMIT_ATTEMPTS = 8  # renames tried before giving up (each failure means another commit won)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def entry_identity(entry: os.PathLike[str] | str) -> str | None:
    """Which commit an entry folder holds: its manifest's build id ("" when it has none or the
    manifest is unreadable), None when there is no folder."""
    path = os.fspath(entry)
    if not os.path.isdir(path):
        return None
    from pathlib import Path

    m = read_manifest(Path(path)) or {}
    build = m.get("build")
    return build if isinstance(build, str) else ""


def write_error(where: os.PathLike[str] | str, what: str, exc: BaseException) -> CacheError:
    """A CacheError for an OSError while writing the cache; a full disk says so plainly."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        err = CacheError(f"{where}: disk full while {what}; nothing was cached (free some space)")
    else:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        err = CacheError(f"{where}: {what} failed ({detail})")
    err.__cause__ = exc
    return err


def _plain_layout(arr: Any, chunks: Shape3) -> bool:
    """Whether ``arr`` stores each chunk as its raw little-endian bytes under ``c/iz/iy/ix``.

    Then the writer writes the chunk files itself, which costs about half what zarr does;
    any other layout (a compressor, another key encoding) is written through zarr.
    """
    from zarr.codecs import BytesCodec

    meta = arr.metadata
    codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
    return (
        getattr(meta, "zarr_format", None) == 3
        and len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and (codecs[0].endian is None or codecs[0].endian.value == "little")
        and meta.encode_chunk_key((1, 2, 3)) == "c/1/2/3"
        and tuple(arr.chunks) == tuple(chunks)
        and chunks[2] == arr.shape[2]
    )


def _write_file(path: str, blocks: list[np.ndarray]) -> int:
    """Write ``blocks`` (C-contiguous arrays) one after the other as the file ``path``;
    returns the checksum of what was written (``keys.chunk_digest``, computed from memory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        views = [memoryview(b.data).cast("B") for b in blocks]
        digest = chunk_digest(views)
        total = sum(len(v) for v in views)
        done = os.writev(fd, views)
        if done < total:  # a short write: finish block by block (raises if the disk is full)
            data = b"".join(views)[done:]
            while data:
                data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    return digest


class CacheWriter:
    """Builds one entry from z-planes arriving in increasing z per level; commit or abort.

    Full chunk-depth slabs go to one background thread that writes their chunk files while
    the caller decodes the next planes; ``commit()`` waits for it and raises its error.
    Memory is bounded: one slab being filled per level plus at most WRITE_QUEUE + 1 in the
    writer's hands. Used as a context manager, leaving the block without ``commit()`` (an
    exception, a cancel) aborts.
    """

    def __init__(
        self,
        cache: PyramidCache,
        key: str,
        level_shapes: Sequence[Sequence[int]],
        dtype: Any,
        source: str | None = None,
    ) -> None:
        import zarr

        self.cache = cache
        self.key = key
        self.source = source or key  # without a source fingerprint, the key stands for it
        shapes = [tuple(int(n) for n in s) for s in level_shapes]
        if not shapes or any(len(s) != 3 or min(s) < 1 for s in shapes):
            raise CacheError(f"bad level shapes for the cache: {level_shapes!r}")
        self.level_shapes: list[Shape3] = [(s[0], s[1], s[2]) for s in shapes]
        self.dtype = np.dtype(dtype)
        self.won: bool | None = None  # after commit: True if our build became the entry
        self.build_id = secrets.token_hex(8)  # in the manifest: which commit an entry holds
        self.extra: dict[str, Any] = {}  # more manifest fields (the bad-slice record)
        self.before_rename: Callable[[], None] | None = None  # test hook, called in commit()
        self._state = "open"
        location = cache.location
        self.tmp = location / private_name(TMP_PREFIX)
        self._made: list[str] = []  # folders this writer created above tmp (removed if empty)
        # the entry a forced rebuild may replace: the one committed before this writer started
        self.replaces = entry_identity(cache.entry_path(key))
        if os.path.islink(location):
            raise CacheError(f"{location} is a symbolic link; ctstack does not write through it")
        try:
            self._make_location(location)
            sweep_stale(location)
            self.tmp.mkdir()
            write_temp_marker(self.tmp)
        except OSError as exc:
            self._state = "aborted"
            remove_marked_last(self.tmp)
            self._remove_made()
            raise write_error(location, "creating the pyramid cache", exc) from exc
        self._arrays = []
        self._buffers: list[np.ndarray | None] = []  # the slab being filled, per level
        self._free: list[list[np.ndarray]] = []  # slabs the writer thread has handed back
        self._direct: list[bool] = []  # chunk files written by us, else through zarr
        self._start = [0] * len(self.level_shapes)  # first z held in each buffer
        self._count = [0] * len(self.level_shapes)  # planes held in each buffer
        self._made_dirs: set[str] = set()
        self._sums: dict[str, int] = {}  # chunk file (relative to the entry) -> checksum
        # (level index, first z, planes, slab) per full slab; None ends the writer thread
        self._queue: queue.Queue[tuple[int, int, int, np.ndarray] | None] = queue.Queue(
            maxsize=WRITE_QUEUE
        )
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # the writer thread's first failure
        self._stop = False
        try:
            for i, shape in enumerate(self.level_shapes, start=1):
                chunks = chunk_shape(shape, self.dtype.itemsize)
                arr = zarr.create_array(
                    store=str(self.tmp / str(i)),
                    shape=shape,
                    chunks=chunks,
                    dtype=self.dtype,
                    fill_value=0,
                    compressors=None,
                    filters=None,
                    zarr_format=ZARR_FORMAT,
                    config={"write_empty_chunks": True},
                    attributes={LEVEL_TAG: {"key": key, "level": i}},
                )
                self._arrays.append(arr)
                self._direct.append(_plain_layout(arr, chunks))
                self._free.append([])
                self._buffers.append(None)
        except OSError as exc:
            self.abort()
            raise write_error(location, "creating the pyramid cache", exc) from exc
        except BaseException:
            self.abort()
            raise

    def _make_location(self, location: os.PathLike[str]) -> None:
        """``mkdir -p`` the location, remembering which folders were made here."""
        missing = []
        path = os.fspath(location)
        while not os.path.isdir(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
            except FileExistsError:
                continue
            self._made.append(folder)

    def _remove_made(self) -> None:
        """Remove the folders this writer created, if they are empty (another build's are not)."""
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except OSError:
                break
        self._made = []

    def _slab(self, i: int) -> np.ndarray:
        """A slab buffer for level ``i`` that nobody else holds: handed back, or new.

        Chunk-padded in y (the padding rows are zero and never written) and little-endian, so
        each chunk file is the slab's rows as they lie in memory.
        """
        if self._free[i]:
            return self._free[i].pop()
        shape = self.level_shapes[i]
        cz, cy, _cx = self._arrays[i].chunks
        rows = -(-shape[1] // cy) * cy
        return np.zeros((cz, rows, shape[2]), self.dtype.newbyteorder("<"))

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state != "committed":
            self.abort()

    def write_plane(self, level: int, z: int, plane: np.ndarray) -> None:
        """Add plane ``z`` of ``level`` (1-based); planes must come in order z = 0, 1, 2, ..."""
        if self._state != "open":
            raise CacheError(f"cache writer is {self._state}; cannot write more planes")
        if not 1 <= level <= len(self.level_shapes):
            raise CacheError(f"level {level} is outside 1..{len(self.level_shapes)}")
        i = level - 1
        shape = self.level_shapes[i]
        expected = self._start[i] + self._count[i]
        if z != expected:
            raise CacheError(f"level {level}: got plane z={z}, expected z={expected}")
        plane = np.asarray(plane)
        if plane.shape != shape[1:] or plane.dtype != self.dtype:
            raise CacheError(
                f"level {level} plane is {plane.shape} {plane.dtype}, "
                f"expected {shape[1:]} {self.dtype}"
            )
        if self._error is not None:
            raise self._failure()
        buf = self._buffers[i]
        if buf is None:
            buf = self._buffers[i] = self._slab(i)
        buf[self._count[i], : shape[1]] = plane
        self._count[i] += 1
        if self._count[i] == len(buf) or z == shape[0] - 1:
            self._flush(i)

    def _flush(self, i: int) -> None:
        """Hand the level's filled slab to the writer thread (blocks while the queue is full)."""
        n, z0, buf = self._count[i], self._start[i], self._buffers[i]
        if not n or buf is None:
            return
        if n < len(buf):
            buf[n:] = 0  # an edge chunk is written whole, padded with the fill value
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_loop, name=f"ctstack-cache-{self.tmp.name}", daemon=True
            )
            self._thread.start()
        self._buffers[i] = None  # the writer thread owns it now
        self._queue.put((i, z0, n, buf))
        self._start[i], self._count[i] = z0 + n, 0

    def _write_loop(self) -> None:
        """The writer thread: write queued slabs until the None sentinel; keeps the first error."""
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                i, z0, n, buf = item
                if self._error is None and not self._stop:
                    try:
                        self._write_slab(i, z0, n, buf)
                    except BaseException as exc:
                        self._error = exc
                self._free[i].append(buf)
            finally:
                self._queue.task_done()

    def _write_slab(self, i: int, z0: int, n: int, buf: np.ndarray) -> None:
        arr = self._arrays[i]
        shape = self.level_shapes[i]
        if not self._direct[i]:
            arr[z0 : z0 + n] = buf[:n, : shape[1]]
            return
        cz, cy, _cx = arr.chunks
        level_dir = self.tmp / str(i + 1)
        iz = z0 // cz
        for iy in range(-(-shape[1] // cy)):
            path = os.path.join(level_dir, arr.metadata.encode_chunk_key((iz, iy, 0)))
            parent = os.path.dirname(path)
            if parent not in self._made_dirs:
                os.makedirs(parent, exist_ok=True)
                self._made_dirs.add(parent)
            # one contiguous block of rows per plane: written as they are, no copy
            crc = _write_file(path, [buf[k, iy * cy : (iy + 1) * cy] for k in range(cz)])
            self._sums[os.path.relpath(path, self.tmp).replace(os.sep, "/")] = crc

    def drain(self) -> None:
        """Wait until every slab handed over so far is on disk; raises the writer's error."""
        self._queue.join()
        if self._error is not None:
            raise self._failure()

    def _failure(self) -> CacheError:
        exc = self._error
        assert exc is not None
        return write_error(self.cache.location, "writing the pyramid cache", exc)

    def _stop_thread(self, discard: bool) -> None:
        """Let the writer thread finish (or, with ``discard``, skip) what is queued, then end it."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop = self._stop or discard
        self._queue.put(None)
        thread.join()

    def complete(self) -> bool:
        """Whether every plane of every level has been written."""
        return all(
            s + c == shape[0]
            for s, c, shape in zip(self._start, self._count, self.level_shapes, strict=True)
        )

    def commit(self, replace: bool = False) -> list[zarr.Array[Any]]:
        """Make the build the cache entry (atomic rename, manifest written last); return levels.

        If another process committed the same key first, ours is discarded and theirs returned,
        unless ``replace`` (a forced rebuild): then theirs is removed and ours takes its place.
        Afterwards, entries of the same series built from another source are removed;
        those of the same source (other level shapes, i.e. other ``max_size`` values) stay.
        """
        if self._state != "open":
            raise CacheError(f"cache writer is {self._state}; cannot commit")
        if not self.complete():
            missing = [
                f"level {i + 1} has {s + c}/{shape[0]} planes"
                for i, (s, c, shape) in enumerate(
                    zip(self._start, self._count, self.level_shapes, strict=True)
                )
                if s + c != shape[0]
            ]
            raise CacheError("cannot commit an incomplete pyramid: " + ", ".join(missing))
        try:
            for i in range(len(self._arrays)):
                self._flush(i)
            self._stop_thread(discard=False)
            if self._error is not None:
                raise self._failure()
            self._buffers, self._free = [], []
            try:
                self._write_manifest()
            except OSError as exc:
                raise write_error(self.cache.location, "writing the cache manifest", exc) from exc
            if self.before_rename is not None:
                self.before_rename()
            levels = self._rename_into_place(replace)
        except BaseException:
            self.abort()
            raise
        self._remove_older()
        return levels

    def _write_manifest(self) -> None:
        """Write the manifest, the entry's last file. Nothing is fsync-ed (that cost about 2 s
        per 600 MB): a torn entry is caught when it is opened, by ``store._chunks_intact``."""
        manifest = {
            "key": self.key,
            "source": self.source,
            "name": self.cache.name,
            "root": str(self.cache.root.resolve()),
            "levels": [list(s) for s in self.level_shapes],
            "chunks": [list(a.chunks) for a in self._arrays],
            "dtype": self.dtype.str,
            "version": PYRAMID_VERSION,
            "zarr_format": ZARR_FORMAT,
            "created": time.time(),
            "build": self.build_id,
            **self.extra,
        }
        sums = {"algorithm": CHECKSUM_ALGORITHM, "chunks": dict(sorted(self._sums.items()))}
        with open(self.tmp / CHECKSUMS, "w") as f:  # read only by `ctstack cache verify`
            json.dump(sums, f, separators=(",", ":"))
        part = self.tmp / (MANIFEST + ".part")
        with open(part, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(part, self.tmp / MANIFEST)
        os.unlink(self.tmp / TEMP_MARKER)  # the manifest marks it now; entries hold no marker

    def _rename_into_place(self, replace: bool) -> list[zarr.Array[Any]]:
        """Rename the build into place. If an entry is there already: adopt it, unless it does
        not open (corrupt) or ``replace`` and it is the one committed before we started; then
        move it aside and try again. Returns the levels of whichever entry ends up in place."""
        final = self.cache.entry_path(self.key)
        for _attempt in range(COMMIT_ATTEMPTS):
            try:
                os.rename(self.tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise write_error(final, "committing the pyramid cache", exc) from exc
                theirs_id = entry_identity(final)
                if theirs_id is None:
                    continue  # removed meanwhile: try again
                theirs = self.cache._open_entry(final, self.key)
                if theirs is not None and not (replace and theirs_id == self.replaces):
                    self.won = False  # committed by another build (while we built): it wins
                    self.abort()
                    self._state = "committed"
                    return theirs
                self._move_aside(final, theirs_id)
                continue
            self.won = True
            self._state = "committed"
            levels = self.cache._open_entry(final, self.key)
            if levels is None:
                raise CacheError(f"{final}: committed entry does not open")
            return levels
        raise CacheError(f"{final}: another build keeps taking this name")

    def _move_aside(self, final: Any, identity: str) -> None:
        """Remove the entry at ``final`` if it still is the commit ``identity``: renamed to a
        trash name first; a different entry that slipped in between is put back."""
        from pathlib import Path

        final = Path(final)
        if not is_owned(final):
            raise CacheError(f"{final}: a folder that is not ctstack's holds this entry's name")
        trash = final.with_name(private_name(TRASH_PREFIX))
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise write_error(final, "replacing the pyramid cache entry", exc) from exc
        if entry_identity(trash) != identity:  # another commit took the name meanwhile: it wins
            try:
                os.rename(trash, final)
                return
            except OSError:
                pass  # yet another one is in place: this duplicate goes
        remove_tree(trash)

    def _remove_older(self) -> None:
        """Drop this series' entries of stale sources, so the cache does not grow without bound."""
        keep = entry_dirname(self.cache.name, self.key)
        evict_stale(self.cache.location, self.cache.name, self.source, keep)

    def abort(self) -> None:
        """Remove the private temp folder; safe to call any number of times."""
        if self._state == "open":
            self._state = "aborted"
        self._stop_thread(discard=True)  # before the removal: it must not recreate folders
        self._buffers, self._free = [], []
        remove_marked_last(self.tmp)  # a kill midway leaves a folder still marked as ours
        if self.won is not True:
            self._remove_made()
