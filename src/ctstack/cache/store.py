"""Reading the cache: a stack's ``PyramidCache`` (where it lives) and opening its entries.

An entry opens from metadata alone: its manifest, each level's zarr metadata and a stat of every
chunk file (each must exist with its exact uncompressed size). That check stands in for fsync-ing
every chunk: after a power loss the committed rename may survive while delayed data blocks did
not, which shows as short or missing files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._types import StrPath
from ..locations import cache_location, read_locations, stack_folder
from .housekeeping import clean_location, list_location, read_manifest, remove_tree
from .keys import PYRAMID_VERSION, entry_dirname
from .writer import CacheWriter

if TYPE_CHECKING:
    import zarr


def _open_levels(entry: Path, manifest: dict[str, Any]) -> list[zarr.Array[Any]]:
    """Open levels 1..n read-only from metadata only; raises if anything disagrees."""
    import zarr

    levels = []
    dtype = np.dtype(manifest["dtype"])
    for i, shape in enumerate(manifest["levels"], start=1):
        arr = zarr.open_array(
            store=str(entry / str(i)), mode="r", zarr_format=manifest.get("zarr_format", 3)
        )
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

    def load(self, key: str) -> list[zarr.Array[Any]] | None:
        """The committed levels for ``key`` as read-only zarr arrays, or None; reads no pixel."""
        found = self.load_entry(key)
        return None if found is None else found[1]

    def load_entry(self, key: str) -> tuple[Path, list[zarr.Array[Any]]] | None:
        """``(entry folder, levels)`` for ``key``, or None: ``load`` plus where it was found
        (the written location, or a location only read, such as a read-only ``.ctstack``)."""
        for location in self._read_locations:
            entry = location / entry_dirname(self.name, key)
            if not entry.is_dir():
                continue
            levels = self._open_entry(entry, key)
            if levels is not None:
                return entry, levels
            if location == self.location:
                with contextlib.suppress(OSError):
                    remove_tree(entry)  # corrupt and ours: make room for a rebuild
        return None

    def _open_entry(self, entry: Path, key: str) -> list[zarr.Array[Any]] | None:
        m = read_manifest(entry)
        if not m or m.get("key") != key or m.get("version") != PYRAMID_VERSION:
            return None
        if m.get("name") != self.name:
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
