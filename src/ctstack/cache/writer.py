"""The cache writer: builds one entry in a private temp folder and commits it atomically.

Planes arrive in increasing z per level and are placed straight into a buffer laid out as the
level's next file (``files.FileBuffer``: a zarr shard, or a plain chunk, byte for byte as zarr
writes it; see ``cache.layout``); full files go to one background thread that writes them
while the caller decodes the next planes. The commit (``commit.commit_entry``, the one the
cluster build uses too) writes the manifest last and renames the folder into place, so a kill
or a full disk leaves either no entry or a whole one (a full disk is a ``CacheError`` saying
"disk full" and naming the location; the build's folders are removed).
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CacheError
from .commit import COMMIT_ATTEMPTS, DISK_FULL, commit_entry, entry_identity, write_error
from .files import FileBuffer, create_levels, write_files
from .grid import LevelLayout
from .housekeeping import remove_marked_last, sweep_stale, write_temp_marker
from .keys import TMP_PREFIX, Shape3, private_name

if TYPE_CHECKING:
    import zarr

    from .store import PyramidCache

WRITE_QUEUE = 1  # full files waiting for the writer thread, at most (bounds memory)

__all__ = [
    "COMMIT_ATTEMPTS",
    "DISK_FULL",
    "WRITE_QUEUE",
    "CacheWriter",
    "entry_identity",
    "write_error",
]


class CacheWriter:
    """Builds one entry from z-planes arriving in increasing z per level; commit or abort.

    Full files (``z_depth`` planes of a level) go to one background thread that writes them
    while the caller decodes the next planes; ``commit()`` waits for it and raises its error.
    Memory is bounded: one file buffer being filled per level plus at most WRITE_QUEUE + 1 in
    the writer's hands. Used as a context manager, leaving the block without ``commit()`` (an
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
        self.layouts: list[LevelLayout] = []
        self._buffers: list[FileBuffer | None] = []  # the file being filled, per level
        self._free: list[list[FileBuffer]] = []  # buffers the writer thread has handed back
        self._start = [0] * len(self.level_shapes)  # first z held in each buffer
        self._count = [0] * len(self.level_shapes)  # planes held in each buffer
        self._made_dirs: set[str] = set()
        self._sums: dict[str, int] = {}  # file (relative to the entry) -> checksum
        # (level index, first z, planes, buffer) per full file; None ends the writer thread
        self._queue: queue.Queue[tuple[int, int, int, FileBuffer] | None] = queue.Queue(
            maxsize=WRITE_QUEUE
        )
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # the writer thread's first failure
        self._stop = False
        try:
            self.layouts = create_levels(self.tmp, self.level_shapes, self.dtype, key)
            self._free = [[] for _ in self.layouts]
            self._buffers = [None for _ in self.layouts]
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

    def _buffer(self, i: int) -> FileBuffer:
        """A file buffer for level ``i`` that nobody else holds: handed back, or new."""
        if self._free[i]:
            return self._free[i].pop()
        return FileBuffer(self.layouts[i], self.dtype)

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
            buf = self._buffers[i] = self._buffer(i)
        buf.put(self._count[i], plane)
        self._count[i] += 1
        if self._count[i] == self.layouts[i].z_depth or z == shape[0] - 1:
            self._flush(i)

    def _flush(self, i: int) -> None:
        """Hand the level's filled file to the writer thread (blocks while the queue is full)."""
        n, z0, buf = self._count[i], self._start[i], self._buffers[i]
        if not n or buf is None:
            return
        buf.clear(n)  # a level's last chunk is written whole, padded with the fill value
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_loop, name=f"ctstack-cache-{self.tmp.name}", daemon=True
            )
            self._thread.start()
        self._buffers[i] = None  # the writer thread owns it now
        self._queue.put((i, z0, n, buf))
        self._start[i], self._count[i] = z0 + n, 0

    def _write_loop(self) -> None:
        """The writer thread: write queued files until the None sentinel; keeps the first error."""
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                i, z0, _n, buf = item
                if self._error is None and not self._stop:
                    try:
                        iz = z0 // self.layouts[i].z_depth
                        level_dir = os.path.join(self.tmp, str(i + 1))
                        for key, digest in write_files(level_dir, buf, iz, self._made_dirs).items():
                            self._sums[f"{i + 1}/{key}"] = digest
                    except BaseException as exc:
                        self._error = exc
                self._free[i].append(buf)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every file handed over so far is on disk; raises the writer's error."""
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
        """Make the build the cache entry (``commit.commit_entry``); return the levels.

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
            for i in range(len(self.layouts)):
                self._flush(i)
            self._stop_thread(discard=False)
            if self._error is not None:
                raise self._failure()
            self._buffers, self._free = [], []
            done = commit_entry(
                self.cache,
                self.tmp,
                self.key,
                self.level_shapes,
                self.dtype,
                self.source,
                self._sums,
                extra=self.extra,
                replace=replace,
                replaces=self.replaces,
                build_id=self.build_id,
                before_rename=self.before_rename,
            )
        except BaseException:
            self.abort()
            raise
        self.won = done.won
        self._state = "committed"
        if not done.won:
            self._remove_made()
        return done.levels

    def abort(self) -> None:
        """Remove the private temp folder; safe to call any number of times."""
        if self._state == "open":
            self._state = "aborted"
        self._stop_thread(discard=True)  # before the removal: it must not recreate folders
        self._buffers, self._free = [], []
        remove_marked_last(self.tmp)  # a kill midway leaves a folder still marked as ours
        if self.won is not True:
            self._remove_made()
