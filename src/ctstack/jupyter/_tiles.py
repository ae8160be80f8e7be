"""Tile geometry of the Jupyter viewer: planes of a view, level choice and visible tiles.

Pure arithmetic shared by the request server (checking what the browser asks for) and
:meth:`ctstack.jupyter.Viewer.plan` (what a view would fetch); ``viewer.js`` implements the same
rules. Plane of a view at level k: ``xy`` -> index z (rows y, cols x); ``xz`` -> index y (rows
z, cols x); ``yz`` -> index x (rows z, cols y). Level-k coordinates are level-0 ones // 2**k.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..errors import InvalidArgument

VIEWS = ("xy", "xz", "yz")
TILE = 256
"""Tile edge in pixels (the ``tile`` trait)."""
MAX_TILES = 1024
"""Tiles one request may ask for (a 4K screen of 256-pixel tiles needs under 200)."""

Shape3 = tuple[int, int, int]
_AXIS = {"xy": 0, "xz": 1, "yz": 2}


def check_view(view: object) -> str:
    """``view`` when it is one of VIEWS, else InvalidArgument."""
    if view not in _AXIS:
        raise InvalidArgument(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    return str(view)


def plane_axis(view: str) -> int:
    """The volume axis a view's plane index runs along (xy: z, xz: y, yz: x)."""
    return _AXIS[check_view(view)]


def plane_shape(shape: Sequence[int], view: str) -> tuple[int, int]:
    """``(rows, cols)`` of one plane of a ``(z, y, x)`` volume seen in ``view``."""
    z, y, x = (int(n) for n in shape)
    return {"xy": (y, x), "xz": (z, x), "yz": (z, y)}[check_view(view)]


def aspect(voxel: Sequence[float], view: str) -> float:
    """Physical height of a row over the width of a column in ``view`` (the vertical scale)."""
    dz, dy, dx = (float(v) for v in voxel)
    rows, cols = {"xy": (dy, dx), "xz": (dz, dx), "yz": (dz, dy)}[check_view(view)]
    ratio = rows / cols if cols > 0 else 1.0
    return ratio if math.isfinite(ratio) and ratio > 0 else 1.0


def grid(rows: int, cols: int, tile: int = TILE) -> tuple[int, int]:
    """Tile rows and columns covering a ``rows`` x ``cols`` plane (ceil division)."""
    return (-(-rows // tile), -(-cols // tile))


def tile_bounds(
    r: int, c: int, rows: int, cols: int, tile: int = TILE
) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of tile ``(r, c)``, half-open, cut at the plane's edge."""
    return (r * tile, min((r + 1) * tile, rows), c * tile, min((c + 1) * tile, cols))


def choose_level(zoom: float | None, n_levels: int, dpr: float = 1.0) -> int:
    """The coarsest level whose pixel spans at most one device pixel on screen.

    ``zoom`` is CSS px per level-0 pixel; ``k = floor(log2(1 / (zoom * dpr)))`` clamped to
    ``[0, n_levels - 1]``, so level 0 only when zoomed in to 1:1 or more (or with no pyramid).
    A zoom that is not a positive number gives the coarsest level.
    """
    last = max(int(n_levels) - 1, 0)
    scale = (zoom or 0.0) * dpr
    if not math.isfinite(scale) or scale <= 0:
        return 0 if math.isinf(scale) else last
    if scale >= 1:
        return 0
    return min(max(math.floor(math.log2(1.0 / scale) + 1e-9), 0), last)


def fit_zoom(plane: tuple[int, int], pane: tuple[float, float], vscale: float = 1.0) -> float:
    """The zoom that fits a ``(rows, cols)`` level-0 plane in a ``(width, height)`` CSS pane."""
    rows, cols = plane
    width, height = pane
    return min(width / max(cols, 1), height / max(rows * vscale, 1e-9))


def visible_tiles(
    level_plane: tuple[int, int],
    top: float,
    left: float,
    bottom: float,
    right: float,
    tile: int = TILE,
) -> list[tuple[int, int]]:
    """Tiles of a level-k plane of ``(rows, cols)`` that meet the rectangle ``[top, bottom) x
    [left, right)`` (level-k pixel edges: pixel i spans ``[i, i + 1)``), row by row."""
    rows, cols = level_plane
    r0, r1 = _span(top, bottom, rows, tile)
    c0, c1 = _span(left, right, cols, tile)
    return [(r, c) for r in range(r0, r1) for c in range(c0, c1)]


def _span(lo: float, hi: float, size: int, tile: int) -> tuple[int, int]:
    """Tile indices meeting ``[lo, hi)`` cut to ``[0, size)``: ``range(first, last)``."""
    if math.isnan(lo) or math.isnan(hi):
        return (0, 0)
    lo, hi = max(lo, 0.0), min(hi, float(size))
    if hi <= lo:
        return (0, 0)
    return (math.floor(lo / tile), math.ceil(hi / tile))


def level_range(level: int, plane: int, size0: int) -> range:
    """The level-0 indices a level-``level`` plane (or row) index covers along one axis."""
    return range(plane << level, min((plane + 1) << level, size0))


def check_tiles(
    tiles: Iterable[object], rows: int, cols: int, tile: int = TILE
) -> list[tuple[int, int]]:
    """The ``[[r, c], ...]`` of a request as ints inside the plane's grid, else InvalidArgument."""
    nr, nc = grid(rows, cols, tile)
    out: list[tuple[int, int]] = []
    for item in tiles:
        try:
            r, c = (int(v) for v in item)  # type: ignore[attr-defined]
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"a tile is [row, col], got {item!r}") from exc
        if not (0 <= r < nr and 0 <= c < nc):
            raise InvalidArgument(f"tile {[r, c]} is outside the {nr} x {nc} tile grid")
        out.append((r, c))
        if len(out) > MAX_TILES:
            raise InvalidArgument(f"a request may ask for at most {MAX_TILES} tiles")
    return out
