"""Stream the planes of a region in z order, a few slices ahead, in bounded memory.

Level 0 is decoded slice by slice through ``stack.read_slice``; level k > 0 is read from the
pyramid (``stack.levels[k]``). A ``window=(low, high)`` maps intensities linearly to uint8.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._readahead import ReadAhead
from .._types import AxisRange, Progress
from ..errors import Cancelled, LevelNotAvailable, UnsupportedExport
from .regions import Region, make_region

if TYPE_CHECKING:
    import dask.array as da

    from ..stack import Stack

READ_AHEAD = 4  # planes in flight
READ_THREADS = 2


def level_array(
    stack: Stack,
    level: int,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> da.Array:
    """Level ``level`` of the stack, else LevelNotAvailable naming the command that makes it.

    In order: the stack's adopted pyramid; any valid cached pyramid of the stack that has the
    level, whatever ``max_size`` built it; a build with the default ``max_size`` when that
    makes the level.
    """
    from ..pyramid import (
        DEFAULT_MAX_SIZE,
        level_shapes,
        load_pyramid_with_level,
        max_size_for_level,
    )

    if level < 0:
        raise LevelNotAvailable(f"{stack.path}: level must be 0 or more, got {level}")
    if level == 0:
        return stack.data
    if len(stack.levels) <= level:
        found = load_pyramid_with_level(stack, level)
        if found is not None:
            stack._adopt(found)
    if len(stack.levels) <= level and len(level_shapes(stack.shape, DEFAULT_MAX_SIZE)) >= level:
        stack.build_pyramid(progress=progress, cancel=cancel)
    if len(stack.levels) <= level:
        have = ", ".join(
            f"{i}: {' x '.join(map(str, a.shape))}" for i, a in enumerate(stack.levels)
        )
        size = None if stack.stored_levels else max_size_for_level(stack.shape, level)
        how = (
            f"; `ctstack pyramid {stack.path} --max-size {size}` makes it"
            if size is not None
            else ""
        )
        raise LevelNotAvailable(
            f"{stack.path}: level {level} does not exist; this stack has levels 0.."
            f"{len(stack.levels) - 1} ({have}){how}"
        )
    return stack.levels[level]


def resolve(
    stack: Stack,
    z: AxisRange,
    y: AxisRange,
    x: AxisRange,
    level: int,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Region:
    """The region placed on its level, building the pyramid first when level k needs it."""
    arr = level_array(stack, level, progress, cancel)
    nz, ny, nx = (int(n) for n in arr.shape)
    return make_region(stack, z, y, x, level, (nz, ny, nx))


def check_window(window: Any) -> tuple[float, float] | None:
    """``(low, high)`` as floats with low < high, or None."""
    if window is None:
        return None
    try:
        low, high = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise UnsupportedExport(f"window must be (low, high), got {window!r}") from exc
    if not high > low:
        raise UnsupportedExport(f"window low ({low:g}) must be below high ({high:g})")
    return (low, high)


def apply_window(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """uint8 = round(clip((v - low) / (high - low), 0, 1) * 255); NaN becomes 0."""
    low, high = window
    scaled = (plane.astype(np.float64) - low) * (255.0 / (high - low))
    np.clip(scaled, 0, 255, out=scaled)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.floor(scaled + 0.5).astype(np.uint8)


def out_dtype(stack: Stack, window: tuple[float, float] | None) -> np.dtype:
    return np.dtype(np.uint8) if window is not None else np.dtype(stack.dtype)


class PlaneReader:
    """Reads plane ``i`` (0-based within the region) of a region at its level."""

    def __init__(self, stack: Stack, region: Region, window: tuple[float, float] | None) -> None:
        self.stack = stack
        self.region = region
        self.window = window
        self.array = stack.data if region.level == 0 else stack.levels[region.level]
        (self.z0, _), ys, xs = region.ranges
        self.yx = (slice(*ys), slice(*xs))
        # what one read holds in memory: a whole source slice at level 0, else the region plane
        shape = stack.shape[1:] if region.level == 0 else region.shape[1:]
        self.plane_bytes = int(shape[0]) * int(shape[1]) * stack.dtype.itemsize

    def __call__(self, i: int) -> np.ndarray:
        z = self.z0 + i
        if self.region.level == 0:
            plane = self.stack.read_slice(z)[self.yx]
        else:
            # synchronous: this already runs on a read-ahead thread, and dask's threaded
            # scheduler would leave a pool per calling thread behind (a slow leak in soaks)
            plane = np.asarray(self.array[(z, *self.yx)].compute(scheduler="synchronous"))
        if self.window is not None:
            return apply_window(plane, self.window)
        return np.ascontiguousarray(plane, dtype=self.stack.dtype)


def iter_planes(
    reader: Callable[[int], np.ndarray],
    count: int,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    what: str = "export",
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, plane)`` for i in 0..count-1 in order, decoding a few planes ahead.

    Checks ``cancel`` before every plane (raising Cancelled) and reports ``progress(i+1, count)``
    after the consumer has handled plane i.
    """

    def check(i: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{what} cancelled after {i} of {count} slices")

    item_bytes = int(getattr(reader, "plane_bytes", 0))  # read-ahead is bounded in bytes too
    with ReadAhead(
        reader, threads=READ_THREADS, ahead=READ_AHEAD, name="ctstack-export", item_bytes=item_bytes
    ) as pool:
        for i, plane in enumerate(pool.map(range(count), before_wait=check)):
            yield i, plane
            if progress is not None:
                progress(i + 1, count)
