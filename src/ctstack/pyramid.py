"""The level-of-detail pyramid: one streaming pass over the slices, cached on disk.

Slices are decoded in order by a small thread pool into reused buffers and fed to the cascade
(Rust ``ctstack._core.Cascade``, or its numpy twin), which emits every level's planes as soon
as they are complete while holding one accumulator plane per level. The planes go straight to
a private cache entry that is committed atomically (``ctstack.cache``).

The result is a :class:`Pyramid`: levels, where they are cached, whether this call built them,
and the settings they were made with. A Stack adopts it in one place (``stack.pyramid``,
``stack.levels``, ``stack.cache_location``); nothing here sets attributes on a Stack.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import core
from ._numpy_kernel import NumpyCascade
from ._readahead import ReadAhead, ahead_within
from ._types import Progress, StrPath
from .errors import Cancelled, CTStackError, InvalidArgument

if TYPE_CHECKING:
    import dask.array as da
    import zarr

    from ._core import Cascade
    from .stack import Stack

PlaneSink = Callable[[int, int, np.ndarray], None]

DEFAULT_MAX_SIZE = 512
"""The default largest axis of the last level: it fits a 3D GPU texture on any machine."""
READ_THREADS = 2  # decoding is I/O and memcpy bound: two readers keep one cascade busy
READ_AHEAD = 4  # slices in flight; each needs one reused buffer


def level_shapes(
    shape: tuple[int, int, int], max_size: int = DEFAULT_MAX_SIZE
) -> list[tuple[int, int, int]]:
    """Shapes of levels 1..n: halve (rounding up) until the largest axis is at most max_size."""
    check_max_size(max_size)
    shapes = []
    z, y, x = (int(n) for n in shape)
    while max(z, y, x) > max_size:
        z, y, x = (z + 1) // 2, (y + 1) // 2, (x + 1) // 2
        shapes.append((z, y, x))
    return shapes


def make_cascade(height: int, width: int, n_levels: int, dtype: np.dtype) -> Cascade | NumpyCascade:
    """The Rust cascade when the extension is active, else the numpy one (same results)."""
    mod = core()
    maker = mod.Cascade if mod is not None else NumpyCascade
    return maker(height, width, n_levels, np.dtype(dtype).name)


def stream_levels(
    read_slice: Callable[[int, np.ndarray], np.ndarray],
    shape: tuple[int, int, int],
    dtype: np.dtype,
    n_levels: int,
    sink: PlaneSink,
    start: int = 0,
    stop: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Decodes slices ``start..stop`` in order and passes each finished ``(level, z, plane)``.

    ``start`` must be a multiple of ``2**n_levels`` (or the slab must reach the end of the
    stack) for the slab's planes to join exactly with its neighbours'; z indices passed to the
    sink are global. The sink must copy the plane: the buffer is reused.
    """
    nz, ny, nx = shape
    stop = nz if stop is None else stop
    if start % (1 << n_levels) and stop != nz:
        raise ValueError(f"slab start {start} is not a multiple of 2**{n_levels}")
    cascade = make_cascade(ny, nx, n_levels, dtype)
    outs = [np.empty(s, dtype=dtype) for s in cascade.level_shapes]
    offsets = [start >> level for level in range(1, n_levels + 1)]
    total = stop - start
    ahead = ahead_within(READ_AHEAD, ny * nx * np.dtype(dtype).itemsize)  # bounded in bytes too
    buffers = deque(np.empty((ny, nx), dtype=dtype) for _ in range(ahead))

    def jobs() -> Iterator[tuple[int, np.ndarray]]:
        for z in range(start, stop):  # taken only when a slot, and so a buffer, is free
            yield z, buffers.popleft()

    def read(job: tuple[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        z, buf = job
        return read_slice(z, buf), buf

    def check(done: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"pyramid build cancelled after {done} of {total}")

    def emit(done: list[tuple[int, int]]) -> None:
        for level, z in done:
            sink(level, offsets[level - 1] + z, outs[level - 1])

    with ReadAhead(read, threads=READ_THREADS, ahead=ahead, name="ctstack-read") as pool:
        for done_count, (plane, buf) in enumerate(pool.map(jobs()), start=1):
            check(done_count - 1)
            emit(cascade.push(plane, outs))
            buffers.append(buf)
            if progress is not None:
                progress(done_count, total)
        emit(cascade.finish(outs))


@dataclass(frozen=True)
class PyramidSettings:
    """What a pyramid was asked for: the largest axis of its last level, and the cache dir."""

    max_size: int = DEFAULT_MAX_SIZE
    cache_dir: Path | None = None


@dataclass(frozen=True)
class Pyramid:
    """The levels of one stack and how they came to be; ``Stack.pyramid`` holds the latest.

    ``levels`` are dask arrays, level 0 (``stack.data``) first. ``built`` is True when this
    call read the slices and wrote a cache entry, False when the levels were reused (a valid
    cache entry, the source's own levels, or a stack that needs none). ``location`` is the
    cache location holding levels 1..n (None when nothing is cached).
    """

    levels: tuple[da.Array, ...]
    settings: PyramidSettings
    built: bool = False
    location: Path | None = None
    stores: tuple[Any, ...] = ()  # the read-only zarr arrays behind levels 1..n, when cached

    @property
    def reused(self) -> bool:
        return not self.built

    @property
    def shapes(self) -> tuple[tuple[int, int, int], ...]:
        """The ``(z, y, x)`` shape of every level, level 0 first."""
        return tuple((int(a.shape[0]), int(a.shape[1]), int(a.shape[2])) for a in self.levels)


def check_max_size(max_size: Any) -> int:
    """``max_size`` as an int of at least 1, else ``InvalidArgument`` naming the value."""
    if isinstance(max_size, bool) or not isinstance(max_size, int | np.integer):
        raise InvalidArgument(f"max_size must be a whole number of voxels, got {max_size!r}")
    if max_size < 1:
        raise InvalidArgument(
            f"max_size must be at least 1 (the largest axis of the last level), got {max_size}"
        )
    return int(max_size)


def _settings(max_size: int, cache_dir: StrPath | None) -> PyramidSettings:
    check_max_size(max_size)
    return PyramidSettings(int(max_size), None if cache_dir is None else Path(cache_dir))


def load_pyramid(
    stack: Stack, max_size: int = DEFAULT_MAX_SIZE, cache_dir: StrPath | None = None
) -> Pyramid | None:
    """The pyramid when no build is needed (valid cache, small stack, OME-Zarr), else None.

    Reads no pixel and changes nothing (``stack.pyramid`` included): a face that wants the
    result kept passes it on through ``cached_levels`` or ``stack.build_pyramid``.
    """
    settings = _settings(max_size, cache_dir)
    if stack.stored_levels:  # an OME-Zarr source carries its own levels
        return Pyramid((stack.data, *stack.stored_levels), settings)
    shapes = level_shapes(stack.shape, max_size)
    if not shapes:
        return Pyramid((stack.data,), settings)
    from .cache import PyramidCache, fingerprint
    from .cache.keys import bad_record_holds

    sources = stack.sources()
    bad_now = [b.path for b in stack.bad_slices]
    cache = PyramidCache(stack.root, stack.name, cache_dir=cache_dir)
    found = cache.load_entry(
        fingerprint(sources, stack.shape, stack.dtype, shapes),
        accept=lambda m: bad_record_holds(m.get("bad"), sources, bad_now),
    )
    if found is None:
        return None
    entry, arrays = found
    return Pyramid(
        _levels(stack, arrays), settings, built=False, location=entry.parent, stores=tuple(arrays)
    )


def halved_shape(shape: tuple[int, int, int], level: int) -> tuple[int, int, int]:
    """The shape of level ``level`` of a stack of ``shape`` (halved, rounding up, k times)."""
    z, y, x = (int(n) for n in shape)
    for _ in range(level):
        z, y, x = (z + 1) // 2, (y + 1) // 2, (x + 1) // 2
    return (z, y, x)


def max_size_for_level(shape: tuple[int, int, int], level: int) -> int | None:
    """The ``max_size`` whose pyramid ends exactly at level ``level``, None if it cannot exist
    (level ``level - 1`` is a single voxel already)."""
    if level < 1 or max(halved_shape(shape, level - 1)) <= 1:
        return None
    return max(halved_shape(shape, level))


def load_pyramid_with_level(
    stack: Stack, level: int, cache_dir: StrPath | None = None
) -> Pyramid | None:
    """A valid cached pyramid of the stack that has level ``level``, whatever ``max_size`` it
    was built with (the one with the fewest levels), else None. Reads no pixel."""
    if stack.stored_levels or level < 1:
        return None
    from .cache import PyramidCache, list_location, source_fingerprint

    cache = PyramidCache(stack.root, stack.name, cache_dir=cache_dir)
    try:
        source = source_fingerprint(stack.sources(), stack.shape, stack.dtype)
    except CTStackError:
        return None
    sizes = set()
    for location in cache.read_locations:
        for item in list_location(location):
            shapes = item.get("levels") or []
            if (
                item["kind"] == "entry"
                and item.get("complete")
                and item.get("name") == stack.name
                and item.get("source") == source
                and len(shapes) >= level
            ):
                sizes.add(max(int(n) for n in shapes[-1]))
    for size in sorted(sizes, reverse=True):  # the largest max_size: the fewest levels
        found = load_pyramid(stack, size, cache_dir)
        if found is not None and len(found.levels) > level:
            return found
    return None


def make_pyramid(
    stack: Stack,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    rebuild: bool = False,
    cache_dir: StrPath | None = None,
) -> Pyramid:
    """The pyramid of a stack: from a valid cache, else built in one pass (``built=True``).

    Changes nothing on the stack. ``progress(done, total)`` counts source slices (once with
    ``done == total`` when reused); a set ``cancel`` event raises ``Cancelled`` within a slice
    or two and leaves no cache entry behind. ``rebuild`` ignores (and replaces) a valid entry.
    """
    settings = _settings(max_size, cache_dir)
    total = stack.shape[0]
    shapes = level_shapes(stack.shape, max_size)
    if not rebuild or not shapes:
        found = load_pyramid(stack, max_size, cache_dir)
        if found is not None:
            _report(progress, total)
            return found
    from .cache import PyramidCache, entry_key, source_fingerprint
    from .cache.keys import bad_record

    cache = PyramidCache(stack.root, stack.name, cache_dir=cache_dir)
    source = source_fingerprint(stack.sources(), stack.shape, stack.dtype)
    key = entry_key(source, shapes)
    # an entry that is there now was refused (corrupt, or a bad slice changed): replace it
    replace = rebuild or cache.entry_path(key).is_dir()
    with cache.writer(key, shapes, stack.dtype, source=source) as writer:

        def read(z: int, buf: np.ndarray) -> np.ndarray:
            return stack.read_slice(z, out=buf)

        stream_levels(
            read,
            stack.shape,
            stack.dtype,
            len(shapes),
            writer.write_plane,
            progress=progress,
            cancel=cancel,
        )
        writer.extra["bad"] = bad_record(stack.sources(), [b.path for b in stack.bad_slices])
        arrays = writer.commit(replace=replace)
    return Pyramid(
        _levels(stack, arrays), settings, built=True, location=cache.location, stores=tuple(arrays)
    )


def cached_levels(
    stack: Stack, max_size: int = DEFAULT_MAX_SIZE, cache_dir: StrPath | None = None
) -> list[da.Array] | None:
    """Levels 0..n when no build is needed (valid cache, small stack, OME-Zarr), else None.

    Reads no pixel; when it returns levels, the stack has adopted them (``stack.pyramid``).
    The napari reader uses it to decide between showing the multiscale image at once and
    building in the background.
    """
    found = load_pyramid(stack, max_size, cache_dir)
    return None if found is None else stack._adopt(found)


def build_pyramid(
    stack: Stack,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    rebuild: bool = False,
    cache_dir: StrPath | None = None,
) -> list[da.Array]:
    """Levels 0..n of a stack as dask arrays (``make_pyramid``), adopted by the stack."""
    made = make_pyramid(stack, progress, cancel, max_size, rebuild, cache_dir)
    return stack._adopt(made)


def _levels(stack: Stack, arrays: list[zarr.Array[Any]]) -> tuple[da.Array, ...]:
    import dask.array as da

    return (stack.data, *(da.from_zarr(a) for a in arrays))


def _report(progress: Progress | None, total: int) -> None:
    if progress is not None:
        progress(total, total)
