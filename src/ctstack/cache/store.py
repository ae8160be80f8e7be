"""Reading the cache: a stack's ``PyramidCache`` (where it lives) and opening its entries.

An entry opens from metadata alone: its manifest, each level's zarr metadata and a stat of every
chunk file (each must exist with its exact uncompressed size). That check stands in for fsync-ing
every chunk: after a power loss the committed rename may survive while delayed data blocks did
not, which shows as short or missing files. Opening writes and removes nothing (a read-only
cache opens as well); a corrupt entry is replaced when a build commits over it.

Every level array handed out reads through :class:`EntryStore`, the one level reader: every
chunk of an entry is always written, so a chunk that is missing when read means the entry was
removed (``cache clean``, a rebuild) while it was open; that raises ``CacheGone`` naming the
entry instead of reading zeros.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from zarr.storage import LocalStore

from .._types import StrPath
from ..errors import CacheGone
from ..locations import cache_location, read_locations, stack_folder
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
    missing chunk raises ``CacheGone`` (naming the entry) instead of reading as the fill value."""

    def __init__(self, root: Path | str, entry: Path | str, level: int) -> None:
        super().__init__(root, read_only=True)
        self.entry = str(entry)
        self.level = level

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and getattr(other, "entry", None) == self.entry

    def __hash__(self) -> int:
        return hash((type(self), str(self.root), self.entry))

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        buf = await super().get(key, prototype, byte_range)
        if buf is None and _is_chunk_key(key):
            raise CacheGone(
                f"{self.entry}: this pyramid cache entry is gone (cleaned or rebuilt by another "
                f"process while open; level {self.level}, chunk {key} missing); reopen the stack",
                entry=self.entry,
            )
        return buf


def open_level(entry: Path, level: int, zarr_format: Literal[2, 3] = 3) -> zarr.Array[Any]:
    """Level ``level`` of an entry, read-only, through the strict ``EntryStore``."""
    import zarr

    store = EntryStore(entry / str(level), entry, level)
    return zarr.open_array(store=store, mode="r", zarr_format=zarr_format)


def _open_levels(entry: Path, manifest: dict[str, Any]) -> list[zarr.Array[Any]]:
    """Open levels 1..n read-only from metadata only; raises if anything disagrees."""
    levels = []
    dtype = np.dtype(manifest["dtype"])
    for i, shape in enumerate(manifest["levels"], start=1):
        arr = open_level(entry, i, 2 if manifest.get("zarr_format", 3) == 2 else 3)
        if tuple(arr.shape) != tuple(shape) or np.dtype(arr.dtype) != dtype:
            raise ValueError(f"level {i} is {arr.shape} {arr.dtype}, manifest says {shape}")
        if not _chunks_intact(entry / str(i), arr.shape, arr.chunks, dtype.itemsize):
            raise ValueError(f"level {i} has missing or truncated chunk files")
        levels.append(arr)
    return levels


def _chunks_intact(
    level_dir: Path, shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int
) -> bool:
    """Every chunk file exists with its exact uncompressed size: a stat per file, no pixel read."""
    expected = int(np.prod([-(-n // c) for n, c in zip(shape, chunks, strict=True)]))
    size = int(np.prod(chunks)) * itemsize
    count = 0
    for dirpath, _dirs, files in os.walk(level_dir / "c"):
        for f in files:
            if os.stat(os.path.join(dirpath, f)).st_size != size:
                return False
            count += 1
    return count == expected


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
