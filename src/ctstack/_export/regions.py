"""Regions: half-open level-0 (z, y, x) index ranges, mapped onto a pyramid level.

Level k of a region covers ``[floor(start / 2**k), ceil(stop / 2**k))`` (DESIGN.md Conventions).
World coordinates put voxel ``i`` of level k at the centre of the level-0 voxels it averages:
``origin + (i * 2**k + (2**k - 1) / 2) * voxel_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedExport

if TYPE_CHECKING:
    from ..stack import Stack

Range = tuple[int, int]


def as_range(value: Any, size: int, axis: str) -> Range:
    """A half-open ``(start, stop)`` within ``[0, size)`` from a slice, a pair or None."""
    if value is None:
        return (0, size)
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise UnsupportedExport(f"region {axis}: a step ({value.step}) is not supported")
        start, stop, _ = value.indices(size)
    else:
        try:
            start, stop = (int(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise UnsupportedExport(f"region {axis}: expected a slice or (start, stop)") from exc
        if start < 0 or stop > size:
            raise UnsupportedExport(
                f"region {axis}={start}:{stop} lies outside the stack (0:{size})"
            )
    if stop <= start:
        raise UnsupportedExport(f"region {axis}={start}:{stop} is empty (stack is 0:{size})")
    return (start, stop)


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
        return tuple(b - a for a, b in self.ranges)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in self.ranges)

    def describe(self) -> str:
        """``z 120:860, y 0:512, x 0:512 (level 0)``, level-0 indices."""
        parts = ", ".join(f"{n} {a}:{b}" for n, (a, b) in zip("zyx", self.full, strict=False))
        return f"{parts} (level {self.level})"


def level_range(r: Range, level: int, size: int) -> Range:
    """The level-k footprint of a level-0 range, clipped to the level's size."""
    f = 1 << level
    return (r[0] // f, min(-(-r[1] // f), size))


def make_region(
    stack: Stack,
    z: Any = None,
    y: Any = None,
    x: Any = None,
    level: int = 0,
    level_shape: tuple[int, int, int] | None = None,
) -> Region:
    """Validate a level-0 region against the stack and place it on level ``level``."""
    full = tuple(as_range(v, n, a) for v, n, a in zip((z, y, x), stack.shape, "zyx", strict=False))
    shape = level_shape or stack.shape
    ranges = tuple(level_range(r, level, n) for r, n in zip(full, shape, strict=False))
    f = 1 << level
    voxel = tuple(v * f for v in stack.voxel_size)
    origin = tuple(
        o + (r[0] * f + (f - 1) / 2) * v
        for o, r, v in zip(stack.origin, ranges, stack.voxel_size, strict=False)
    )
    return Region(full, level, ranges, voxel, origin, stack.unit)
