"""The level-of-detail pyramid: one streaming pass over the slices, cached on disk.

Slices are decoded in order by a small thread pool into reused buffers and fed to the cascade
(Rust ``ctstack._core.Cascade``, or its numpy twin), which emits every level's planes as soon
as they are complete while holding one accumulator plane per level. The planes go straight to
a private cache entry that is committed atomically (``ctstack.cache``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import core
from ._numpy_kernel import NumpyCascade
from .errors import Cancelled

if TYPE_CHECKING:
    from .stack import Stack

Progress = Callable[[int, int], Any]
PlaneSink = Callable[[int, int, np.ndarray], None]

DEFAULT_MAX_SIZE = 512
READ_THREADS = 2  # decoding is I/O and memcpy bound: two readers keep one cascade busy
READ_AHEAD = 4  # slices in flight; each needs one reused buffer


def level_shapes(shape: tuple[int, int, int], max_size: int = DEFAULT_MAX_SIZE) -> list:
    """Shapes of levels 1..n: halve (rounding up) until the largest axis is at most max_size."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    shapes = []
    current = tuple(int(n) for n in shape)
    while max(current) > max_size:
        current = tuple((n + 1) // 2 for n in current)
        shapes.append(current)
    return shapes


def make_cascade(height: int, width: int, n_levels: int, dtype: np.dtype):
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
    buffers = deque(np.empty((ny, nx), dtype=dtype) for _ in range(READ_AHEAD))

    def emit(done: list[tuple[int, int]]) -> None:
        for level, z in done:
            sink(level, offsets[level - 1] + z, outs[level - 1])

    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="ctstack-read") as pool:
        pending: deque[tuple[Future, np.ndarray]] = deque()
        next_z = start
        try:
            for done_count in range(1, total + 1):
                while next_z < stop and buffers:
                    buf = buffers.popleft()
                    pending.append((pool.submit(read_slice, next_z, buf), buf))
                    next_z += 1
                future, buf = pending.popleft()
                plane = future.result()
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"pyramid build cancelled after {done_count - 1} of {total}")
                emit(cascade.push(plane, outs))
                buffers.append(buf)
                if progress is not None:
                    progress(done_count, total)
            emit(cascade.finish(outs))
        finally:
            for future, _buf in pending:
                future.cancel()


def cached_levels(
    stack: Stack, max_size: int = DEFAULT_MAX_SIZE, cache_dir: str | Path | None = None
) -> list | None:
    """Levels 0..n when no build is needed (valid cache, small stack, OME-Zarr), else None.

    Reads no pixel; sets ``stack.levels`` when it returns levels. The napari reader uses it
    to decide between showing the multiscale image at once and building in the background.
    """
    import dask.array as da

    from .cache import PyramidCache, fingerprint

    stored = getattr(stack, "stored_levels", None)
    if stored:  # an OME-Zarr source carries its own levels
        stack.levels = [stack.data, *stored]
        return stack.levels
    shapes = level_shapes(stack.shape, max_size)
    if not shapes:
        stack.levels = [stack.data]
        return stack.levels
    cache = PyramidCache(stack.root, stack.name, cache_dir=cache_dir)
    arrays = cache.load(fingerprint(stack.sources(), stack.shape, stack.dtype, shapes))
    if arrays is None:
        return None
    stack.levels = [stack.data, *(da.from_zarr(a) for a in arrays)]
    stack.cache_location = cache.location
    return stack.levels


def build_pyramid(
    stack: Stack,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    rebuild: bool = False,
    cache_dir: str | Path | None = None,
) -> list:
    """Levels 0..n of a stack as dask arrays: from a valid cache, else built in one pass.

    Sets ``stack.levels``. ``progress(done, total)`` counts source slices (once with
    ``done == total`` on a cache hit); a set ``cancel`` event raises ``Cancelled`` within a
    slice or two and leaves no cache entry behind.
    """
    import dask.array as da

    from .cache import PyramidCache, fingerprint

    total = stack.shape[0]
    if not rebuild or not level_shapes(stack.shape, max_size):
        levels = cached_levels(stack, max_size, cache_dir)
        if levels is not None:
            _report(progress, total)
            return levels
    shapes = level_shapes(stack.shape, max_size)
    cache = PyramidCache(stack.root, stack.name, cache_dir=cache_dir)
    key = fingerprint(stack.sources(), stack.shape, stack.dtype, shapes)
    with cache.writer(key, shapes, stack.dtype) as writer:

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
        arrays = writer.commit(replace=rebuild)
    stack.levels = [stack.data, *(da.from_zarr(a) for a in arrays)]
    stack.cache_location = cache.location
    return stack.levels


def _report(progress: Progress | None, total: int) -> None:
    if progress is not None:
        progress(total, total)
