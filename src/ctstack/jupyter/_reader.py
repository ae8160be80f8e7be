"""Reading tiles of a stack's planes for the Jupyter viewer, at any pyramid level.

Level 0 comes from the stack's slice reader (``Stack.read_slice``: bad slices read as zeros and
are recorded); levels 1..n from the cache's zarr arrays (``Pyramid.stores``), or the stack's
dask levels when the source carries its own (OME-Zarr). Tiles are sent as uint8, uint16 or
int16 when the stack has that type, else float32. Runs on the request server's thread only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgument
from . import _tiles

if TYPE_CHECKING:
    from ..stack import Stack

SENT_DTYPES = ("uint8", "uint16", "int16", "float32")
PLANE_CACHE = 2  # decoded level-0 xy slices kept (coarse then fine requests of one plane)


def sent_dtype(dtype: Any) -> np.dtype:
    """What a stack of ``dtype`` is sent as: itself if uint8/uint16/int16, else float32;
    little-endian, as the browser reads it."""
    name = np.dtype(dtype).name
    return np.dtype(name if name in SENT_DTYPES else "float32").newbyteorder("<")


@dataclass(frozen=True)
class Tile:
    """One tile of a reply: position, size, whether it covers a missing/bad slice, pixels."""

    r: int
    c: int
    h: int
    w: int
    missing: bool
    data: np.ndarray  # (h, w) C-contiguous in the sent dtype

    def header(self) -> dict[str, Any]:
        return {"r": self.r, "c": self.c, "h": self.h, "w": self.w, "missing": self.missing}


class TileReader:
    """Reads tiles of one stack from the levels it was given (see :meth:`set_levels`)."""

    def __init__(self, stack: Stack, tile: int = _tiles.TILE) -> None:
        self.stack = stack
        self.tile = tile
        self.dtype = sent_dtype(stack.dtype)
        self._lock = threading.Lock()
        self._planes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._arrays: list[Any] = []
        self.set_levels()

    def set_levels(self) -> list[tuple[int, int, int]]:
        """Take the stack's current levels (after a build); returns their shapes."""
        stack = self.stack
        levels = list(stack.levels)
        stores = list(stack.pyramid.stores) if stack.pyramid is not None else []
        arrays: list[Any] = [None]  # level 0: the slice reader
        for k, level in enumerate(levels[1:], start=1):
            store = stores[k - 1] if len(stores) >= k else None
            fits = store is not None and tuple(store.shape) == tuple(level.shape)
            arrays.append(store if fits else level)
        with self._lock:
            self._arrays = arrays
        return self._shapes(arrays)

    def level_array(self, level: int) -> Any:
        """The array-like served for ``level`` >= 1 (a cache store or the stack's level)."""
        with self._lock:
            return self._arrays[level]

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """``(z, y, x)`` of each level being served, level 0 first."""
        with self._lock:
            return self._shapes(self._arrays)

    def _shapes(self, arrays: list[Any]) -> list[tuple[int, int, int]]:
        out = [self.stack.shape]
        out.extend((int(a.shape[0]), int(a.shape[1]), int(a.shape[2])) for a in arrays[1:])
        return out

    def read(self, view: Any, level: Any, plane: Any, tiles: Any) -> list[Tile]:
        """The tiles ``[[r, c], ...]`` of plane ``plane`` of ``view`` at ``level`` (values as
        the browser sent them). Reads the smallest region holding them all, once; bad input is
        InvalidArgument."""
        view = _tiles.check_view(view)
        if not isinstance(tiles, list | tuple):
            raise InvalidArgument(f"tiles is a list of [row, col], got {tiles!r}")
        with self._lock:
            arrays = list(self._arrays)
        if not _is_int(level) or not 0 <= level < len(arrays):
            raise InvalidArgument(f"level must be 0..{len(arrays) - 1}, got {level!r}")
        shape = self._shapes(arrays)[level]
        count = shape[_tiles.plane_axis(view)]
        if not _is_int(plane) or not 0 <= plane < count:
            raise InvalidArgument(f"{view} plane must be 0..{count - 1} at level {level}")
        rows, cols = _tiles.plane_shape(shape, view)
        wanted = _tiles.check_tiles(tiles, rows, cols, self.tile)
        if not wanted:
            return []
        bounds = [_tiles.tile_bounds(r, c, rows, cols, self.tile) for r, c in wanted]
        r0, r1 = min(b[0] for b in bounds), max(b[1] for b in bounds)
        c0, c1 = min(b[2] for b in bounds), max(b[3] for b in bounds)
        if level == 0:
            region = self._level0(view, plane, r0, r1, c0, c1)
        else:
            region = _region(arrays[level], view, plane, r0, r1, c0, c1)
        bad = self._bad_z()
        out = []
        for (r, c), (a0, a1, b0, b1) in zip(wanted, bounds, strict=True):
            data = np.ascontiguousarray(region[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0], self.dtype)
            zs = _z_range(view, level, plane, a0, a1, self.stack.shape[0])
            out.append(Tile(r, c, a1 - a0, b1 - b0, any(z in bad for z in zs), data))
        return out

    def _bad_z(self) -> set[int]:
        return set(self.stack.missing) | {b.z for b in self.stack.bad_slices}

    def _level0(self, view: str, plane: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        stack = self.stack
        if view == "xy":
            return self._slice(plane)[r0:r1, c0:c1]
        if stack.stored_levels:  # OME-Zarr: chunked level 0, read just the region
            return _region(stack.data, view, plane, r0, r1, c0, c1)
        out = np.empty((r1 - r0, c1 - c0), stack.dtype)
        buf = np.empty(stack.shape[1:], stack.dtype)
        for z in range(r0, r1):
            cached = self._planes.get(z)
            src = cached if cached is not None else stack.read_slice(z, out=buf)
            out[z - r0] = src[plane, c0:c1] if view == "xz" else src[c0:c1, plane]
        return out

    def _slice(self, z: int) -> np.ndarray:
        found = self._planes.get(z)
        if found is None:
            found = self.stack.read_slice(z)
            self._planes[z] = found
            while len(self._planes) > PLANE_CACHE:
                self._planes.popitem(last=False)
        else:
            self._planes.move_to_end(z)
        return found


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _region(array: Any, view: str, plane: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Rows r0:r1, cols c0:c1 of one plane of a (z, y, x) array (zarr or dask)."""
    if view == "xy":
        part = array[plane, r0:r1, c0:c1]
    elif view == "xz":
        part = array[r0:r1, plane, c0:c1]
    else:
        part = array[r0:r1, c0:c1, plane]
    return np.asarray(part)


def _z_range(view: str, level: int, plane: int, row0: int, row1: int, nz: int) -> range:
    """Level-0 z indices behind a tile (rows row0:row1 of a level-``level`` plane)."""
    if view == "xy":
        return _tiles.level_range(level, plane, nz)
    return range(row0 << level, min(row1 << level, nz))
