"""Light lazy arrays that napari slices for display: no dask graph per step, read-ahead at level 0.

napari indexes a level with the displayed tile first (``data[:, y0:y1, x0:x1]``), then with the
z point, then calls ``np.asarray``. :class:`DisplayArray` keeps slicing lazy (it composes the
slices as ``range`` objects per axis) and reads pixels only when an axis gets an integer index
or the view is converted to numpy. What it reads comes from a :class:`Source`:

- :class:`PlaneSource`, level 0, through the stack's own plane reader (``stack.read_slice``),
  with a small :class:`PlaneCache` that reads the next planes ahead in the direction of travel;
- :class:`ZarrSource`, a cached level, straight from its zarr array (``Pyramid.stores``), which
  raises ``CacheGone`` when a chunk is missing;
- :class:`ArraySource`, any other array (an OME-Zarr source's own levels), as a fallback.

Display only: ``stack.data`` and ``stack.levels`` stay dask arrays for users. No napari, no Qt.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._readahead import ReadAhead, ahead_within
from ..errors import CacheGone

if TYPE_CHECKING:
    from ..stack import Stack

Axis = int | range  # one axis of a view: a fixed index, or the base indices it still spans
Guard = Callable[[CacheGone], None]
Box = tuple[range, ...]  # a region of a level: one range per axis
Band = tuple[Box, np.ndarray]  # a region read from a cached level, and its pixels

MAX_PLANES = 8  # the read-ahead cache holds at most this many level-0 planes...
MAX_BYTES = 256 * 2**20  # ...and at most this many bytes
BULK_THREADS = 2  # threads decoding planes for a read of many z (an xz plane, a 3D volume)
BAND_BYTES = 64 * 2**20  # a cached level's chunk bands are this big at most...
BANDS_PER_AXIS = 2  # ...and it holds this many per fixed axis (the current one and the next)


class Source(Protocol):
    """Where a display array's pixels come from: a whole level, read one selection at a time."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def read(self, axes: Sequence[Axis]) -> np.ndarray:
        """The pixels at ``axes`` (one int or a non-empty range per base axis)."""
        ...


def as_slice(axis: Axis) -> int | slice:
    """A base-axis index as numpy takes it: an int, or the slice that walks the range."""
    if isinstance(axis, int):
        return axis
    stop: int | None = axis.stop if axis.stop >= 0 else None  # range(3, -1, -1): down to 0
    return slice(axis.start, stop, axis.step)


def _forward(axis: Axis) -> tuple[int | slice, bool]:
    """A positive-step slice covering the same indices (zarr takes no negative step), and
    whether the result must be reversed."""
    if isinstance(axis, int) or axis.step > 0:
        return as_slice(axis), False
    first, last = axis[-1], axis[0]  # the same indices walked upwards
    return slice(first, last + 1, -axis.step), True


class DisplayArray:
    """A lazy, read-only view of one level with the array surface napari needs.

    Slicing returns another view (the slices compose, steps and negative indices included);
    an integer index, or ``np.asarray``, reads the pixels from the source. With a ``guard``, a
    ``CacheGone`` during a read is handed to it and that one read shows zeros (the face then
    reloads the layer); without one it raises.
    """

    def __init__(
        self, source: Source, axes: tuple[Axis, ...] | None = None, guard: Guard | None = None
    ) -> None:
        self.source = source
        self.axes: tuple[Axis, ...] = (
            tuple(range(n) for n in source.shape) if axes is None else axes
        )
        self.guard = guard
        self.shape: tuple[int, ...] = tuple(len(a) for a in self.axes if isinstance(a, range))
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d display array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<DisplayArray {self.shape} {self.dtype} of {type(self.source).__name__}>"

    def __getitem__(self, key: Any) -> Any:
        keys = key if isinstance(key, tuple) else (key,)
        if not all(_basic(k) for k in keys):  # fancy indexing: read, then let numpy do it
            return np.asarray(self)[key]
        keys = _expand(keys, self.ndim)
        out: list[Axis] = []
        it = iter(keys)
        fixed = False
        for axis in self.axes:
            if isinstance(axis, int):
                out.append(axis)
                continue
            k = next(it)
            if isinstance(k, slice):
                out.append(axis[k])
            else:
                i = int(k)
                if not -len(axis) <= i < len(axis):
                    raise IndexError(f"index {i} is out of bounds for an axis of size {len(axis)}")
                out.append(axis[i])
                fixed = True
        view = DisplayArray(self.source, tuple(out), self.guard)
        return view.read() if fixed else view

    def read(self) -> np.ndarray:
        """The pixels of this view as a numpy array (read-only; may share the source's cache)."""
        if any(isinstance(a, range) and len(a) == 0 for a in self.axes):
            return np.empty(self.shape, self.dtype)
        try:
            return self.source.read(self.axes)
        except CacheGone as exc:
            if self.guard is None:
                raise
            self.guard(exc)
            return np.zeros(self.shape, self.dtype)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self.read()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr


def _basic(k: Any) -> bool:
    return k is Ellipsis or (isinstance(k, slice | int | np.integer) and not isinstance(k, bool))


def _expand(keys: tuple[Any, ...], ndim: int) -> tuple[Any, ...]:
    """Keys with the Ellipsis expanded and missing trailing axes filled with ``:``."""
    if keys.count(Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in keys:
        at = keys.index(Ellipsis)
        fill = ndim - (len(keys) - 1)
        keys = keys[:at] + (slice(None),) * fill + keys[at + 1 :]
    if len(keys) > ndim:
        raise IndexError(f"too many indices: the array is {ndim}-dimensional")
    return keys + (slice(None),) * (ndim - len(keys))


def _fill(axes: Sequence[Axis], plane: Callable[[int], np.ndarray], zs: range) -> np.ndarray:
    """Stack ``plane(z)[y, x]`` for every z of ``zs`` into one array (zs not empty)."""
    yx = tuple(as_slice(a) for a in axes[1:])
    first = plane(zs[0])[yx]
    out = np.empty((len(zs), *first.shape), first.dtype)
    out[0] = first
    for i, z in enumerate(zs[1:], 1):
        out[i] = plane(z)[yx]
    return out


class ZarrSource:
    """A cached level read straight from its zarr array; a missing chunk raises ``CacheGone``.

    zarr reads whole chunks, so a plane costs its chunks' depth in planes. A plane read (one
    axis fixed: a z step, an xz or yz step) therefore keeps the chunk-aligned band it came
    from (at most ``max_band_bytes``) and serves the neighbouring planes from memory; a step
    along an axis reads the next band in the direction of travel in the background (two bands
    per axis at most). When a band is too big (a yz plane cuts every chunk of whole-row
    chunks) the plane alone is kept, so views that slice it again on every step of another
    axis read it once.
    """

    def __init__(self, array: Any, max_band_bytes: int = BAND_BYTES) -> None:
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(c) for c in array.chunks)
        self.max_band_bytes = max_band_bytes
        self._lock = threading.Lock()
        self._bands: dict[int, list[Band]] = {}  # fixed axis -> bands held, newest first
        self._ahead: dict[int, tuple[Box, Future[Band]]] = {}  # fixed axis -> the next band
        self._last: dict[int, int] = {}  # fixed axis -> the index read last

    def read(self, axes: Sequence[Axis]) -> np.ndarray:
        fixed = [i for i, a in enumerate(axes) if isinstance(a, int)]
        if len(fixed) == 1:
            band = self._band(fixed[0], axes)
            if band is not None:
                box, data = band
                return data[tuple(_shifted(a, b.start) for a, b in zip(axes, box, strict=True))]
        return self._direct(axes)

    def _direct(self, axes: Sequence[Axis]) -> np.ndarray:
        picks = [_forward(a) for a in axes]
        arr = np.asarray(self.array[tuple(p for p, _ in picks)])
        flip = tuple(
            slice(None, None, -1) if rev else slice(None)
            for (p, rev) in picks
            if not isinstance(p, int)
        )
        return arr[flip] if any(rev for _, rev in picks) else arr

    def _band(self, axis: int, axes: Sequence[Axis]) -> Band | None:
        """The band of ``axis`` covering ``axes``: held, being read ahead, or read now (None:
        too big even as a single plane)."""
        need = tuple(_span(a, 1, n) for a, n in zip(axes, self.shape, strict=True))
        want = tuple(_span(a, c, n) for a, c, n in zip(axes, self.chunks, self.shape, strict=True))
        with self._lock:
            band = self._held(axis, need)
            ahead = self._ahead.get(axis)
        if band is None and ahead is not None and _inside(need, ahead[0]):
            try:
                band = ahead[1].result()
            except Exception:
                band = None  # read it here, so that its error (CacheGone) surfaces here
        if band is None:
            if self._nbytes(want) > self.max_band_bytes:  # too deep: hold the plane itself
                i = axes[axis]
                assert isinstance(i, int)
                want = (*want[:axis], range(i, i + 1), *want[axis + 1 :])
                if self._nbytes(want) > self.max_band_bytes:
                    return None
            band = self._read_band(axis, want)
        self._travel(axis, axes[axis], band)
        return band

    def _held(self, axis: int, need: Box) -> Band | None:
        """A held band of ``axis`` that covers ``need`` (lock held)."""
        return next((b for b in self._bands.get(axis, ()) if _inside(need, b[0])), None)

    def _read_band(self, axis: int, box: Box) -> Band:
        band = (box, np.asarray(self.array[tuple(slice(r.start, r.stop) for r in box)]))
        band[1].setflags(write=False)
        with self._lock:
            held = [b for b in self._bands.get(axis, ()) if b[0] != box]
            self._bands[axis] = [band, *held][:BANDS_PER_AXIS]
        return band

    def _travel(self, axis: int, index: Axis, band: Band) -> None:
        """After a step along ``axis``, read the next band in that direction in the background."""
        assert isinstance(index, int)
        box, chunk = band[0], self.chunks[axis]
        with self._lock:
            last, self._last[axis] = self._last.get(axis), index
            if last is None or index == last or abs(index - last) >= chunk or len(box[axis]) == 1:
                return  # no travel (a jump), or a single-plane band: nothing to read ahead
            start = box[axis].stop if index > last else box[axis].start - chunk
            if not 0 <= start < self.shape[axis]:
                return
            rng = range(start, min(self.shape[axis], start + chunk))
            nxt = (*box[:axis], rng, *box[axis + 1 :])
            pending = self._ahead.get(axis)
            if self._held(axis, nxt) is not None or (pending and not pending[1].done()):
                return
            self._ahead[axis] = (nxt, _pool().submit(self._read_band, axis, nxt))

    def _nbytes(self, box: Sequence[range]) -> int:
        return int(np.prod([len(r) for r in box], dtype=np.int64)) * self.dtype.itemsize


def _span(axis: Axis, chunk: int, size: int) -> range:
    """The chunk-aligned run of indices holding every index of ``axis`` (chunk 1: exactly
    from its lowest to its highest index)."""
    lo, hi = (axis, axis) if isinstance(axis, int) else (min(axis), max(axis))
    return range(lo // chunk * chunk, min(size, (hi // chunk + 1) * chunk))


def _inside(want: Box, held: Box) -> bool:
    """Whether every range of ``want`` lies within the matching range of ``held``."""
    return all(h.start <= w.start and w.stop <= h.stop for w, h in zip(want, held, strict=True))


def _shifted(axis: Axis, by: int) -> int | slice:
    """``axis`` as an index into a band that starts at ``by`` (every index is >= by)."""
    if isinstance(axis, int):
        return axis - by
    return as_slice(range(axis.start - by, axis.stop - by, axis.step))


class ArraySource:
    """Any array-like level (e.g. an OME-Zarr source's own levels, dask): indexed, then read on
    the calling thread (napari's slicing is already off the GUI thread when it is async)."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)

    def read(self, axes: Sequence[Axis]) -> np.ndarray:
        part = self.array[tuple(as_slice(a) for a in axes)]
        if hasattr(part, "compute"):
            part = part.compute(scheduler="synchronous")
        return np.asarray(part)


class PlaneSource:
    """Level 0 through the stack's plane reader (bad slices read as zeros, as everywhere).

    One z: through the :class:`PlaneCache`, which reads ahead in the direction of travel.
    Many z (an xz plane, a 3D volume): decoded on a few threads, past the cache.
    """

    def __init__(
        self, stack: Stack, max_planes: int = MAX_PLANES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.stack = stack
        self.shape = tuple(stack.shape)
        self.dtype = np.dtype(stack.dtype)
        plane_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self.cache = PlaneCache(stack.read_slice, self.shape[0], plane_bytes, max_planes, max_bytes)

    def read(self, axes: Sequence[Axis]) -> np.ndarray:
        z = axes[0]
        yx = tuple(as_slice(a) for a in axes[1:])
        if isinstance(z, int):
            return self.cache.get(z)[yx]
        if len(z) <= self.cache.capacity:
            return _fill(axes, self.cache.peek, z)
        with ReadAhead(
            self.stack.read_slice,
            threads=BULK_THREADS,
            ahead=self.cache.capacity,
            name="ctstack-display-bulk",
        ) as pool:
            planes = pool.map(z)
            return _fill(axes, lambda _: next(planes), z)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The one read-ahead thread of the process, shared by every display array."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(1, thread_name_prefix="ctstack-display-ahead")
        return _POOL


class PlaneCache:
    """Decoded planes by z, at most ``capacity`` held or in flight (``max_planes`` and
    ``max_bytes``), refilled in the background with the next planes in the direction of travel.

    ``get(z)`` is a step to z: it returns the plane (from the cache, a read-ahead in flight, or
    a read on the calling thread), learns the direction from the previous step, and queues the
    ``capacity - 1`` planes that follow in that direction; planes that no longer follow are
    dropped, and queued reads of them cancelled. A jump as far as the window (a contrast
    sample, a click on the slider) is no direction: nothing is read ahead until the next step.
    """

    def __init__(
        self,
        read: Callable[[int], np.ndarray],
        depth: int,
        plane_bytes: int,
        max_planes: int = MAX_PLANES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._read = read
        self.depth = depth
        self.plane_bytes = plane_bytes
        self.capacity = ahead_within(max_planes, plane_bytes, max_bytes)
        self._lock = threading.Lock()
        self._planes: OrderedDict[int, np.ndarray] = OrderedDict()  # oldest use first
        self._flight: dict[int, Future[np.ndarray]] = {}
        self._keep: set[int] = set()
        self._last: int | None = None
        self.direction = 0
        self.reads: deque[int] = deque(maxlen=256)  # the latest z read, in order (tests)

    @property
    def held(self) -> tuple[int, ...]:
        """The z of the planes held now, oldest use first."""
        with self._lock:
            return tuple(self._planes)

    def get(self, z: int) -> np.ndarray:
        """Plane ``z`` (a step to it: read-ahead follows)."""
        plane = self.peek(z)
        with self._lock:
            if self._last is not None and z != self._last:
                step = z - self._last  # a jump past the read-ahead window is not travel
                self.direction = 0 if abs(step) >= self.capacity else 1 if step > 0 else -1
            self._last = z
            self._plan(z)
        return plane

    def peek(self, z: int) -> np.ndarray:
        """Plane ``z`` from the cache or a read, without moving the read-ahead."""
        with self._lock:
            plane = self._planes.get(z)
            if plane is not None:
                self._planes.move_to_end(z)
                return plane
            future = self._flight.get(z)
        if future is not None:
            try:
                return future.result()
            except Exception:
                pass  # a failed or cancelled read-ahead: read it here, so its error surfaces
        plane = self._load(z)
        with self._lock:
            self._store(z, plane, keep=z)
        return plane

    def _load(self, z: int) -> np.ndarray:
        plane = self._read(z)
        plane.setflags(write=False)  # shared by every view that reads it
        self.reads.append(z)
        return plane

    def _plan(self, z: int) -> None:
        """Queue the planes after ``z`` in the direction of travel (lock held)."""
        wanted = [z + self.direction * i for i in range(1, self.capacity)] if self.direction else []
        wanted = [w for w in wanted if 0 <= w < self.depth]
        self._keep = {z, *wanted}
        for w, future in list(self._flight.items()):
            if w not in self._keep and future.cancel():
                del self._flight[w]
        for w in wanted:
            if w in self._planes or w in self._flight:
                continue
            if not self._make_room(exclude=self._keep):
                break
            self._flight[w] = _pool().submit(self._ahead, w)

    def _ahead(self, z: int) -> np.ndarray:
        """Worker: read plane ``z`` and keep it if it is still wanted."""
        try:
            plane = self._load(z)
        except BaseException:
            with self._lock:
                self._flight.pop(z, None)
            raise
        with self._lock:
            self._flight.pop(z, None)
            if z in self._keep:
                self._store(z, plane, keep=z)
        return plane

    def _store(self, z: int, plane: np.ndarray, keep: int) -> None:
        """Hold ``plane`` as the newest, evicting the oldest others to stay bounded (lock held)."""
        self._planes.pop(z, None)
        self._make_room(exclude={keep, *self._keep}, force=True)
        self._planes[z] = plane

    def _make_room(self, exclude: set[int], force: bool = False) -> bool:
        """Evict the oldest planes until one more fits; ``force`` evicts wanted ones too."""
        while len(self._planes) + len(self._flight) >= self.capacity:
            victim = next((k for k in self._planes if k not in exclude), None)
            if victim is None and force:
                victim = next(iter(self._planes), None)
            if victim is None:
                return False
            del self._planes[victim]
        return True

    def wait(self, timeout: float = 10.0) -> None:
        """Wait until no read-ahead is in flight (tests, benchmarks)."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._flight:
                    return
            time.sleep(0.002)
