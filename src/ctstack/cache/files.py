"""Writing a cache entry's level files directly, byte for byte as zarr would (``cache.layout``).

zarr's own write path costs about twice the file writes and keeps going after a failure; here
each file is assembled in one buffer laid out in the file's byte order (inner chunks one after
the other, in zarr's order) and written with one ``writev``, its checksum computed from memory.
Folders are made below an existing level folder only, so a write that comes late (after a
cancelled build removed its folder) fails instead of recreating it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheError
from ..locations import safe_name
from .grid import LevelLayout, level_layout
from .keys import LEVEL_TAG, TEMP_MARKER, ZARR_FORMAT, chunk_digest, partial_path

IOV_MAX = 512  # buffers per writev call, at most (Linux allows 1024)


class FileBuffer:
    """The planes of one z-block of a level (its files side by side), in the files' byte order.

    Shape ``(m, NY, cz, cy, X)`` (``m`` chunk layers per file, ``NY`` chunk rows of the level):
    inner chunk ``(j, row)`` is the contiguous block ``data[j, row]``. Padding rows (past the
    level's last row) are zero and stay zero, so the buffer can be reused for the next z-block.
    """

    def __init__(self, layout: LevelLayout, dtype: Any) -> None:
        self.layout = layout
        m = layout.per_shard[0]
        cz, cy, x = layout.chunks
        self.data = np.zeros((m, layout.chunk_rows, cz, cy, x), np.dtype(dtype).newbyteorder("<"))
        self._full, self._rem = divmod(layout.shape[1], cy)

    def put(self, k: int, plane: np.ndarray) -> None:
        """Place plane ``k`` of the z-block (0 <= k < z_depth)."""
        cz, cy, x = self.layout.chunks
        j, kk = divmod(k, cz)
        dest = self.data[j, :, kk]  # (ny, cy, X)
        full, rem = self._full, self._rem
        if full:
            dest[:full] = plane[: full * cy].reshape(full, cy, x)
        if rem:
            dest[full, :rem] = plane[full * cy :]

    def clear(self, n: int) -> None:
        """Zero the planes after the first ``n`` up to the end of their chunk layer (the fill
        value of a level's last, partial chunk)."""
        cz = self.layout.chunks[0]
        for k in range(n, -(-n // cz) * cz):
            j, kk = divmod(k, cz)
            self.data[j, :, kk] = 0

    def views(self, iz: int, iy: int = 0) -> list[memoryview]:
        """The bytes of file ``(iz, iy)``: its inner chunks in zarr's order, then (a shard) the
        index."""
        layout = self.layout
        rows = layout.chunk_rows
        per_y = layout.per_shard[1]
        flat = self.data.reshape(len(self.data) * rows, -1)
        runs: list[list[int]] = []
        for j, row, _ in layout.order(iz):
            i = j * rows + iy * per_y + row
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        out = [memoryview(flat[a:b].data).cast("B") for a, b in runs]
        if layout.sharded:
            out.append(memoryview(layout.index_bytes(iz)))
        return out


def _mkdirs(level_dir: str, parts: Sequence[str], made: set[str]) -> str:
    """``level_dir/parts...``, made one folder at a time below ``level_dir`` (which must exist:
    a removed build folder is never recreated)."""
    path = level_dir
    for part in parts:
        path = os.path.join(path, part)
        if path in made:
            continue
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        made.add(path)
    return path


def write_views(path: str, views: list[memoryview]) -> int:
    """Write ``views`` one after the other as the file ``path``; returns their checksum."""
    digest = chunk_digest(views)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        for start in range(0, len(views), IOV_MAX):
            batch = views[start : start + IOV_MAX]
            total = sum(len(v) for v in batch)
            done = os.writev(fd, batch)
            if done < total:  # a short write: finish byte by byte (raises if the disk is full)
                data = b"".join(batch)[done:]
                while data:
                    data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    return digest


def write_files(
    level_dir: Path | str, buf: FileBuffer, iz: int, made: set[str] | None = None
) -> dict[str, int]:
    """Write the files of z-block ``iz`` of a level from ``buf``; returns ``{key in the level
    folder: checksum}``."""
    layout = buf.layout
    made = made if made is not None else set()
    sums = {}
    for iy in range(layout.y_files):
        key = layout.file_key(iz, iy)
        parts = key.split("/")
        parent = _mkdirs(os.fspath(level_dir), parts[:-1], made)
        sums[key] = write_views(os.path.join(parent, parts[-1]), buf.views(iz, iy))
    return sums


def write_block(
    folder: Path | str,
    level: int,
    level_shape: Sequence[int],
    dtype: Any,
    z0: int,
    block: np.ndarray,
) -> dict[str, int]:
    """Write every file of level ``level`` (1-based) holding planes ``[z0, z0 + len(block))``.

    ``block`` is ``(n, Y, X)``; ``z0`` and ``n`` are multiples of the level's ``z_depth``,
    except that the block may end at the level's last plane. Returns ``{path relative to
    folder: checksum}`` for the checksum sidecar. Raises ``FileNotFoundError`` when the level
    folder is gone (see ``create_levels``) and ``CacheError`` for a misaligned block.
    """
    dtype = np.dtype(dtype)
    layout = level_layout(level_shape, dtype.itemsize)
    z, y, x = layout.shape
    n = len(block)
    depth = layout.z_depth
    if block.shape != (n, y, x) or block.dtype != dtype:
        raise CacheError(
            f"level {level} block is {block.shape} {block.dtype}, expected (n, {y}, {x}) {dtype}"
        )
    if z0 % depth or (n % depth and z0 + n != z) or z0 + n > z or n < 1:
        raise CacheError(
            f"level {level}: block [{z0}, {z0 + n}) is not aligned to files of {depth} planes "
            f"(level has {z} planes)"
        )
    level_dir = os.path.join(os.fspath(folder), str(level))
    if not os.path.isdir(level_dir):
        raise FileNotFoundError(2, "cache level folder is gone", level_dir)
    buf = FileBuffer(layout, dtype)
    made: set[str] = set()
    sums: dict[str, int] = {}
    for start in range(0, n, depth):
        planes = min(depth, n - start)
        for k in range(planes):
            buf.put(k, block[start + k])
        buf.clear(planes)
        for key, digest in write_files(level_dir, buf, (z0 + start) // depth, made).items():
            sums[f"{level}/{key}"] = digest
    return sums


def create_levels(
    folder: Path | str, level_shapes: Sequence[Sequence[int]], dtype: Any, key: str
) -> list[LevelLayout]:
    """Write the ``zarr.json`` of every level (1..n) into ``folder/<k>/`` through zarr itself
    (tagged with ctstack's ``LEVEL_TAG``); returns the levels' layouts. ``folder`` must exist."""
    import zarr

    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "cache build folder is gone", os.fspath(folder))
    dtype = np.dtype(dtype)
    layouts = []
    for i, shape in enumerate(level_shapes, start=1):
        layout = level_layout(shape, dtype.itemsize)
        zarr.create_array(
            store=os.path.join(os.fspath(folder), str(i)),
            shape=layout.shape,
            chunks=layout.chunks,
            shards=layout.shard if layout.sharded else None,
            dtype=dtype,
            fill_value=0,
            compressors=None,
            filters=None,
            zarr_format=ZARR_FORMAT,
            config={"write_empty_chunks": True},
            attributes={LEVEL_TAG: {"key": key, "level": i}},
        )
        layouts.append(layout)
    return layouts


def make_partial(location: Path | str, key: str) -> Path:
    """Create (or find) the resumable build folder ``.partial-<key>`` in ``location``, marked
    as ctstack's. An existing folder of that name is reused only if it carries the mark."""
    from .housekeeping import is_owned

    path = partial_path(location, key)
    try:
        path.mkdir()
    except FileExistsError:
        if not is_owned(path):
            raise CacheError(f"{path}: a folder that is not ctstack's holds this name") from None
        return path
    record = {
        "pid": os.getpid(),
        "host": safe_name(socket.gethostname()),
        "created": time.time(),
        "partial": key,
    }
    (path / TEMP_MARKER).write_text(json.dumps(record), encoding="utf-8")
    return path
