"""Regions: half-open level-0 (z, y, x) index ranges, mapped onto a pyramid level.

Level k of a region covers ``[floor(start / 2**k), ceil(stop / 2**k))`` (docs/export.md,
"Regions, levels and coordinates").
World coordinates put voxel ``i`` of level k at the centre of the level-0 voxels it averages:
``origin + (i * 2**k + (2**k - 1) / 2) * voxel_size``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._types import AxisRange
from ..errors import UnsupportedExport

if TYPE_CHECKING:
    from ..stack import Stack

Range = tuple[int, int]


def as_range(value: Any, size: int, axis: str, given: str | None = None) -> Range:
    """A half-open ``(start, stop)`` within ``[0, size)`` from a slice, a pair or None.

    One rule for the API and the CLI: a range that reaches outside ``0:size`` (a negative index
    included: it does not count from the end) or is empty is refused, never clipped. The error
    quotes ``given`` (what the user typed, e.g. ``--z 5:900``), else the value as given.
    """
    if value is None:
        return (0, size)
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise UnsupportedExport(f"region {axis}: a step ({value.step}) is not supported")
        try:
            start = 0 if value.start is None else operator.index(value.start)
            stop = size if value.stop is None else operator.index(value.stop)
        except TypeError as exc:
            raise UnsupportedExport(f"region {axis}: slice bounds must be integers") from exc
        typed = f"{_bound(value.start)}:{_bound(value.stop)}"
    else:
        try:
            start, stop = (int(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise UnsupportedExport(f"region {axis}: expected a slice or (start, stop)") from exc
        typed = f"{start}:{stop}"
    what = given or f"region {axis}={typed}"
    if start < 0 or stop < 0:
        raise UnsupportedExport(
            f"{what} lies outside the stack ({axis} is 0:{size}; indices count from 0, a "
            "negative one does not count from the end)"
        )
    if stop > size or start > size:
        raise UnsupportedExport(f"{what} lies outside the stack ({axis} is 0:{size})")
    if stop <= start:
        raise UnsupportedExport(f"{what} is empty (the stack's {axis} is 0:{size})")
    return (start, stop)


def _bound(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Region:
    """A level-0 region and its footprint on one pyramid level."""

    full: tuple[Range, Range, Range]  # level-0 ranges, as asked
    level: int
    ranges: tuple[Range, Range, Range]  # level-k ranges actually exported
    voxel_size: tuple[float, float, float]  # of level k
    origin: tuple[float, float, float]  # world position of the first exported voxel's centre
    unit: str

    @property
    def shape(self) -> tuple[int, int, int]:
        (z0, z1), (y0, y1), (x0, x1) = self.ranges
        return (z1 - z0, y1 - y0, x1 - x0)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        (z0, z1), (y0, y1), (x0, x1) = self.ranges
        return (slice(z0, z1), slice(y0, y1), slice(x0, x1))

    def describe(self) -> str:
        """``z 120:860, y 0:512, x 0:512 (level 0)``, level-0 indices."""
        parts = ", ".join(f"{n} {a}:{b}" for n, (a, b) in zip("zyx", self.full, strict=True))
        return f"{parts} (level {self.level})"


def level_range(r: Range, level: int, size: int) -> Range:
    """The level-k footprint of a level-0 range, clipped to the level's size."""
    f = 1 << level
    return (r[0] // f, min(-(-r[1] // f), size))


def make_region(
    stack: Stack,
    z: AxisRange = None,
    y: AxisRange = None,
    x: AxisRange = None,
    level: int = 0,
    level_shape: tuple[int, int, int] | None = None,
) -> Region:
    """Validate a level-0 region against the stack and place it on level ``level``."""
    nz, ny, nx = stack.shape
    full = (as_range(z, nz, "z"), as_range(y, ny, "y"), as_range(x, nx, "x"))
    lz, ly, lx = level_shape or stack.shape
    ranges = (
        level_range(full[0], level, lz),
        level_range(full[1], level, ly),
        level_range(full[2], level, lx),
    )
    f = 1 << level
    vz, vy, vx = stack.voxel_size
    oz, oy, ox = stack.origin

    def centre(o: float, r: Range, v: float) -> float:
        return o + (r[0] * f + (f - 1) / 2) * v

    origin = (centre(oz, ranges[0], vz), centre(oy, ranges[1], vy), centre(ox, ranges[2], vx))
    return Region(full, level, ranges, (vz * f, vy * f, vx * f), origin, stack.unit)
