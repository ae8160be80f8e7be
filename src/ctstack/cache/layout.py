"""The on-disk layout of a cache entry's levels, and the API cluster builds write entries with.

Layout (cache version 4)
------------------------
Each level ``k`` (1..n) of an entry is a zarr v3 array in ``<entry>/<k>/``. Its read unit, the
*inner chunk*, is today's read-friendly shape (``keys.chunk_shape``: <= 16 planes, <= 64 rows,
whole x rows, capped so a z-plane or xz-plane read touches <= 32 MiB). Its files are one of:

- **plain chunk files** ``(cz, cy, X)``, as before, when each is at least ``MIN_FILE_BYTES``
  (1 MiB) (or spans whole planes) and the level has at most ``MAX_FILES_PER_LEVEL`` of them:
  sharding would not pay there, and reads keep their measured speed;
- else **shards of whole planes** ``(z_depth, Y padded to the chunk rows, X)`` (zarr v3
  ``sharding_indexed``: inner chunks raw little-endian in zarr's Morton order, then the index
  of ``(offset, nbytes)`` uint64 pairs and its crc32c, at the end): one file per z-block.
  ``z_depth`` is the chunk depth, doubled until the level has at most ``MAX_FILES_PER_LEVEL``
  files. An 8000 x 4096^2 uint16 stack has 1000 files at level 1 (4 planes each), a
  10,000 x 8192^2 one 5000 (1 plane each), where chunk files were 1 and 20 million.

Either way files form a grid ``(iz, iy)`` named ``<k>/c/<iz>/<iy>/0``: ``iz`` the z-block
(``z0 // z_depth``), ``iy`` the chunk row for plain chunks (always 0 for shards). All bytes are
what zarr writes for the same array (tested). Every file is always written, with every inner
chunk that overlaps the level (fill value included), so each file's size is known in advance:
the manifest lists them (``"files"``: per level, sizes in ``file_keys()`` order) and opening an
entry costs one ``stat`` per file. Since every inner chunk is stored raw at an offset the layout
fixes, reads of a sharded level (``store.ShardedLevel``) ``pread`` the inner chunks they need
directly, and zarr's own reads get each shard index from the layout (``index_bytes``).

API (stable; the cluster build uses it)
---------------------------------------
``level_layout(level_shape, itemsize) -> LevelLayout``
    ``.chunks`` (inner chunk shape), ``.shard`` (file shape: shard or plain chunk),
    ``.sharded``, ``.z_depth`` (planes per file: z-blocks start at its multiples),
    ``.files()`` (file count), ``.z_files``/``.y_files`` (the grid), ``.file_key(iz, iy=0)``
    (``"c/<iz>/<iy>/0"``), ``.file_keys()``, ``.file_size(iz, iy=0)``, ``.sizes()``.
``create_levels(folder, level_shapes, dtype, key) -> list[LevelLayout]``
    Writes each level's ``zarr.json`` into ``folder/<k>/`` (``folder`` must exist; made once,
    by the client, before any task writes).
``write_block(folder, level, level_shape, dtype, z0, block) -> {relative path: checksum}``
    Writes every file of level ``level`` (1-based) covering planes ``[z0, z0 + len(block))``;
    ``z0`` and ``len(block)`` are multiples of ``z_depth``, except that the block may end at the
    level's last plane. Paths are relative to ``folder`` (``"1/c/0/0/0"``), checksums as in the
    sidecar (``keys.chunk_digest`` of the file's bytes). It never creates ``folder`` or the
    level folder: if they were removed (a cancelled build), it raises ``FileNotFoundError``
    instead of recreating them. Same input, same bytes, on any machine.
``commit_entry(cache, tmp, key, level_shapes, dtype, source, checksums, extra=None,
replace=False, replaces=None, drop=()) -> Committed``
    Commits a fully written temp folder as ``CacheWriter.commit`` does: checks every file's
    size against the layout, writes the checksum sidecar and the manifest (last), renames the
    folder into place (first commit wins; ``replace`` for a forced rebuild, replacing only
    the entry ``replaces`` = ``writer.entry_identity(...)`` seen before the build started),
    evicts this series' entries of other sources. ``drop`` names files in ``tmp`` (a ledger, a
    lock) removed before the rename. Returns ``Committed(levels, won, entry)``. On failure it
    raises ``CacheError`` and leaves ``tmp`` for the caller to remove.
``PARTIAL_PREFIX``, ``partial_path(location, key)``, ``make_partial(location, key)``
    A resumable build's folder ``.partial-<key>``: it carries ctstack's marker, the pid-based
    stale sweep leaves it alone, ``cache clean`` removes it, and so does any sweep once it is
    older than ``PARTIAL_MAX_AGE`` (7 days, by the newest mtime of the folder or its files).

``CacheWriter`` (the local build) uses these same functions, so local and cluster builds make
the same files.
"""

from __future__ import annotations

from .commit import Committed, commit_entry, entry_identity
from .files import create_levels, make_partial, write_block
from .grid import LevelLayout, level_layout
from .keys import (
    MAX_FILES_PER_LEVEL,
    MIN_FILE_BYTES,
    PARTIAL_MAX_AGE,
    PARTIAL_PREFIX,
    partial_path,
)

__all__ = [
    "MAX_FILES_PER_LEVEL",
    "MIN_FILE_BYTES",
    "PARTIAL_MAX_AGE",
    "PARTIAL_PREFIX",
    "Committed",
    "LevelLayout",
    "commit_entry",
    "create_levels",
    "entry_identity",
    "level_layout",
    "make_partial",
    "partial_path",
    "write_block",
]
