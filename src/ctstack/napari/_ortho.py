"""Orthogonal views, the Qt-free part: view geometry, mirrored layers, crosshair lines and the
off-thread level-0 planes of the XZ and YZ views.

The XZ view shows rows = z (down) and columns = x, sliced at the crosshair's y; the YZ view rows
= z and columns = y, sliced at its x (the Jupyter viewer's orientation). Each view is a
``napari.components.ViewerModel`` holding *mirrors* of the main viewer's 3D images: new layers
on the same data arrays (nothing is copied), contrast and colormap kept in step both ways.

Reading an XZ or YZ plane at level 0 touches every slice file, so a mirror's level 0 is an
:class:`OffThreadLevel`: a plane not read yet is answered with a coarser level upsampled while a
background thread reads it, and ``on_loaded`` (called from that thread) asks the face to refresh.
The Qt side (``_qt/ortho.py``) only hops that call to the GUI thread and owns the canvases.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ._layer import stack_of

if TYPE_CHECKING:
    from napari.components import ViewerModel
    from napari.layers import Image, Layer, Shapes

VIEWS = ("xz", "yz")
FIXED_AXIS = {"xz": 1, "yz": 2}  # the level-0 axis each view slices at the crosshair
PLANE_AXES = {"xz": (0, 2), "yz": (0, 1)}  # (rows, columns) shown, as level-0 axes
MIRRORED = (  # layer attributes kept in step between a main layer and its mirrors
    "contrast_limits",
    "colormap",
    "gamma",
    "opacity",
    "blending",
    "visible",
    "interpolation2d",
    "scale",  # a voxel size edited in the stack panel
    "translate",
)
FALLBACK_PIXELS = 512 * 512  # the coarse stand-in plane is the finest level at most this big
KEPT_PLANES = 6  # level-0 planes each mirror keeps in memory
LINE_PIXELS = 1.5  # crosshair lines are this many screen pixels wide at any zoom


def view_order(ndim: int, view: str) -> tuple[int, ...]:
    """The ``dims.order`` of a view for an ``ndim`` world: the last two shown, rows first."""
    lead = list(range(ndim - 3))
    z, y, x = ndim - 3, ndim - 2, ndim - 1
    tail = (y, z, x) if view == "xz" else (x, z, y)
    return (*lead, *tail)


def is_volume(layer: Layer) -> bool:
    """Whether a layer is an image with at least three (non-RGB) axes: what the views show."""
    from napari.layers import Image

    return isinstance(layer, Image) and not layer.rgb and layer.ndim >= 3


def reference_layer(viewer: ViewerModel) -> Image | None:
    """The layer the crosshair indices refer to: the active plugin layer, else the topmost
    plugin layer, else the active or topmost 3D image."""
    volumes = [layer for layer in viewer.layers if is_volume(layer)]
    active = viewer.layers.selection.active
    plugin = [layer for layer in volumes if stack_of(layer) is not None]
    if active in plugin:
        return active
    if plugin:
        return plugin[-1]
    if active in volumes:
        return active
    return volumes[-1] if volumes else None


def world_to_index(layer: Image, world: Sequence[float]) -> tuple[int, int, int]:
    """Level-0 ``(z, y, x)`` of the voxel under a world point, clamped to the layer's shape."""
    data = layer.world_to_data(tuple(float(v) for v in world))[-3:]
    shape = layer.level_shapes[0][-3:] if layer.multiscale else layer.data.shape[-3:]
    z, y, x = (
        min(max(math.floor(float(v) + 0.5 + 1e-6), 0), int(n) - 1)
        for v, n in zip(data, shape, strict=True)
    )
    return (z, y, x)


def crosshair_lines(index: Sequence[int], shape: Sequence[int], view: str) -> list[np.ndarray]:
    """The two crosshair lines of a view through ``index``, in level-0 coordinates (z, y, x)."""
    point = np.asarray(index, float)
    rows, cols = {"xy": (1, 2), **PLANE_AXES}[view]
    lines = []
    for along in (cols, rows):
        a, b = point.copy(), point.copy()
        a[along], b[along] = 0.0, float(shape[along]) - 1.0  # centres: the image's extent
        lines.append(np.stack([a, b]))
    return lines


# --- off-thread level-0 planes ------------------------------------------------------------------


def read_plane(level0: Any, axis: int, index: int) -> np.ndarray:
    """One level-0 plane with ``axis`` fixed at ``index`` (a row band of every slice file)."""
    sel: list[Any] = [slice(None)] * 3
    sel[axis] = int(index)
    part = level0[tuple(sel)]
    if hasattr(part, "compute"):
        part = part.compute()
    return np.asarray(part)


class OffThreadLevel:
    """Level 0 of an XZ/YZ mirror: planes with ``axis`` fixed are read on a background thread.

    napari first indexes the displayed tile and then the slice point; both return a lazy
    :class:`_Window`, resolved when napari makes it an array. A plane already read is served
    from memory (the last ``KEPT_PLANES``); any other is the coarse level upsampled (zeros when
    there is none) while it is read, after which ``on_loaded(index)`` is called from the reading
    thread. Selections that are not such a plane are read directly.
    """

    def __init__(
        self,
        level0: Any,
        axis: int,
        coarse: Any | None = None,
        on_loaded: Callable[[int], None] | None = None,
    ) -> None:
        self.level0 = level0
        self.axis = axis
        self.coarse = coarse
        self.on_loaded = on_loaded
        self.shape: tuple[int, ...] = tuple(int(n) for n in level0.shape)
        self.dtype = np.dtype(level0.dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self._planes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._wanted: int | None = None  # the plane asked for last (older asks are dropped)
        self._pending: set[int] = set()
        self._failed: set[int] = set()  # planes whose read raised (shown coarse from then on)
        self._last_stand_in: tuple[int, np.ndarray] | None = None
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ctstack-ortho"
        )
        self.errors: list[str] = []

    def __getitem__(self, index: Any) -> _Window:
        return _Window(self, tuple((0, n) for n in self.shape))[index]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[...], dtype=dtype)

    @property
    def loading(self) -> bool:
        """Whether the plane asked for last is still being read."""
        with self._lock:
            return self._wanted is not None and self._wanted in self._pending

    def loaded(self, index: int) -> bool:
        with self._lock:
            return index in self._planes

    def plane(self, index: int) -> np.ndarray:
        """The level-0 plane at ``index`` if read, else its stand-in (and the read is started)."""
        with self._lock:
            plane = self._planes.get(index)
            if plane is not None:
                self._planes.move_to_end(index)
                return plane
            # a failed read was reported once: it is not retried on every redraw
            start = index not in self._failed and index not in self._pending
            start = start and self._pool is not None
            if index not in self._failed:
                self._wanted = index
            if start:
                self._pending.add(index)
        if start and self._pool is not None:
            self._pool.submit(self._load, index)
        return self._stand_in(index)

    def _load(self, index: int) -> None:
        """Worker thread: read the plane unless a newer one was asked for meanwhile."""
        try:
            with self._lock:
                if self._wanted != index:
                    return
            plane = read_plane(self.level0, self.axis, index)
            with self._lock:
                self._planes[index] = plane
                while len(self._planes) > KEPT_PLANES:
                    self._planes.popitem(last=False)
        except Exception as exc:  # reported by the face, never raised inside napari's slicing
            with self._lock:
                self._failed.add(index)
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._pending.discard(index)
        callback = self.on_loaded
        if callback is not None:
            callback(index)

    def _stand_in(self, index: int) -> np.ndarray:
        """The coarse level's plane through ``index``, upsampled to level 0 (nearest voxel);
        the last one is kept, since napari may slice the same plane again before it lands."""
        last = self._last_stand_in
        if last is not None and last[0] == index:
            return last[1]
        plane = self._upsampled(index)
        self._last_stand_in = (index, plane)
        return plane

    def _upsampled(self, index: int) -> np.ndarray:
        rows, cols = (a for a in range(3) if a != self.axis)
        shape = (self.shape[rows], self.shape[cols])
        coarse = self.coarse
        if coarse is None:
            return np.zeros(shape, self.dtype)
        factors = [self.shape[a] / int(coarse.shape[a]) for a in range(3)]
        at = min(int(index / factors[self.axis]), int(coarse.shape[self.axis]) - 1)
        try:
            small = read_plane(coarse, self.axis, at)
        except Exception as exc:  # never raise inside napari's slicing: show zeros, report
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return np.zeros(shape, self.dtype)
        r = np.minimum((np.arange(shape[0]) / factors[rows]).astype(int), small.shape[0] - 1)
        c = np.minimum((np.arange(shape[1]) / factors[cols]).astype(int), small.shape[1] - 1)
        return np.asarray(small[np.ix_(r, c)], self.dtype)

    def close(self) -> None:
        """Stop reading (a read under way finishes; its result is dropped)."""
        self.on_loaded = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class _Window:
    """A lazy selection of an :class:`OffThreadLevel`: per axis an index or a ``(start, stop)``."""

    def __init__(self, base: OffThreadLevel, sel: tuple[int | tuple[int, int], ...]) -> None:
        self.base = base
        self.sel = sel
        kept = [s for s in sel if isinstance(s, tuple)]
        self.shape = tuple(b - a for a, b in kept)
        self.dtype = base.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> Any:
        items = list(index) if isinstance(index, tuple) else [index]
        free = [i for i, s in enumerate(self.sel) if isinstance(s, tuple)]
        if any(item is Ellipsis for item in items):
            at = items.index(Ellipsis)
            items[at : at + 1] = [slice(None)] * (len(free) - len(items) + 1)
        items += [slice(None)] * (len(free) - len(items))
        if len(items) != len(free):
            raise IndexError(f"too many indices for a {len(free)}-d selection")
        sel: list[int | tuple[int, int]] = list(self.sel)
        for axis, item in zip(free, items, strict=True):
            start, stop = sel[axis]  # type: ignore[misc]
            n = stop - start
            if isinstance(item, slice) and item.step in (None, 1):
                a, b, _ = item.indices(n)
                sel[axis] = (start + a, start + max(a, b))
            elif isinstance(item, int | np.integer):
                i = int(item) + (n if int(item) < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(item)} out of range for size {n}")
                sel[axis] = start + i
            else:  # anything fancier: materialise, then index
                return np.asarray(self)[index]
        return _Window(self.base, tuple(sel))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._resolve()
        return out if dtype is None else out.astype(dtype)

    def _resolve(self) -> np.ndarray:
        base = self.base
        fixed = self.sel[base.axis]
        others = [s for i, s in enumerate(self.sel) if i != base.axis]
        if base.ndim == 3 and isinstance(fixed, int):
            plane = base.plane(fixed)
            keys = tuple(s if isinstance(s, int) else slice(*s) for s in others)
            return np.asarray(plane[keys])
        keys = tuple(s if isinstance(s, int) else slice(*s) for s in self.sel)
        part = base.level0[keys]
        if hasattr(part, "compute"):
            part = part.compute()
        return np.asarray(part)


# --- mirrored layers ------------------------------------------------------------------------


def stand_in_level(levels: Sequence[Any], axis: int) -> Any | None:
    """The finest level past 0 whose plane with ``axis`` fixed has at most FALLBACK_PIXELS."""
    for level in levels[1:]:
        shape = [int(n) for n in level.shape[-3:]]
        if math.prod(n for a, n in enumerate(shape) if a != axis) <= FALLBACK_PIXELS:
            return level
    return levels[-1] if len(levels) > 1 else None


def mirror_levels(
    layer: Image, view: str, on_loaded: Callable[[int], None] | None
) -> tuple[list[Any], OffThreadLevel | None]:
    """The data of a layer's mirror in ``view``: its own arrays, level 0 read off-thread when it
    is not in memory (numpy) and is a plain 3D volume. Returns (levels, the off-thread level)."""
    levels = list(layer.data) if layer.multiscale else [layer.data]
    level0 = levels[0]
    if isinstance(level0, np.ndarray) or len(level0.shape) != 3:
        return levels, None
    axis = FIXED_AXIS[view]
    lazy = OffThreadLevel(level0, axis, stand_in_level(levels, axis), on_loaded)
    return [lazy, *levels[1:]], lazy


def mirror_layer(layer: Image, levels: list[Any]) -> Image:
    """A new Image on ``levels`` that looks like ``layer`` (sliced without projection)."""
    from napari.layers import Image

    kwargs: dict[str, Any] = {
        "name": layer.name,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine.affine_matrix,
        "contrast_limits": tuple(layer.contrast_limits),
        "colormap": layer.colormap,
        "gamma": layer.gamma,
        "opacity": layer.opacity,
        "blending": layer.blending,
        "visible": layer.visible,
        "interpolation2d": layer.interpolation2d,
        "multiscale": len(levels) > 1,
        "projection_mode": "none",
    }
    for key in ("units", "axis_labels"):
        if hasattr(layer, key):
            kwargs[key] = getattr(layer, key)
    mirror = Image(levels if len(levels) > 1 else levels[0], **kwargs)
    mirror.contrast_limits_range = tuple(layer.contrast_limits_range)
    mirror.contrast_limits = tuple(layer.contrast_limits)
    return mirror


class LayerLink:
    """Keeps a main layer and its mirrors alike (``MIRRORED`` attributes), both ways."""

    def __init__(self, main: Image, mirrors: Sequence[Image]) -> None:
        self.main = main
        self.mirrors = list(mirrors)
        self._busy = False
        for layer in (main, *self.mirrors):
            for attr in MIRRORED:
                getattr(layer.events, attr).connect(self._changed)

    def close(self) -> None:
        for layer in (self.main, *self.mirrors):
            for attr in MIRRORED:
                getattr(layer.events, attr).disconnect(self._changed)

    def _changed(self, event: Any) -> None:
        if self._busy:
            return
        source = event.source
        attr = event.type
        self._busy = True
        try:
            for layer in (self.main, *self.mirrors):
                if layer is not source:
                    _copy(source, layer, attr)
        finally:
            self._busy = False


def _copy(source: Image, target: Image, attr: str) -> None:
    if attr == "contrast_limits":
        lo, hi = source.contrast_limits
        rlo, rhi = target.contrast_limits_range
        if lo < rlo or hi > rhi:
            target.contrast_limits_range = (min(lo, rlo), max(hi, rhi))
        target.contrast_limits = (lo, hi)
    elif attr == "colormap":
        target.colormap = source.colormap
    else:
        setattr(target, attr, getattr(source, attr))


def make_crosshair(layer: Image, name: str = "crosshair") -> Shapes:
    """A Shapes layer for crosshair lines, in the level-0 coordinates of ``layer``."""
    from napari.layers import Shapes

    return Shapes(
        ndim=3,
        name=name,
        scale=tuple(layer.scale[-3:]),
        translate=tuple(layer.translate[-3:]),
        units=tuple(layer.units[-3:]),
        axis_labels=tuple(layer.axis_labels[-3:]),
        edge_color="yellow",
        edge_width=1.0,
        opacity=0.7,
        blending="translucent_no_depth",
    )


def line_width(zoom: float, scale: Sequence[float], pixels: float = LINE_PIXELS) -> float:
    """The edge width, in the layer's data units, that is ``pixels`` wide on screen at ``zoom``
    (screen pixels per world unit) for a layer of voxel size ``scale`` (the displayed axes)."""
    return pixels / max(zoom * min(abs(float(s)) for s in scale), 1e-12)


def set_width(crosshair: Shapes, width: float) -> None:
    """Give every crosshair line (and any made later) the edge width ``width``."""
    if crosshair.current_edge_width != width:
        crosshair.current_edge_width = width
    if crosshair.nshapes and any(w != width for w in crosshair.edge_width):
        crosshair.edge_width = width


def set_lines(crosshair: Shapes, lines: list[np.ndarray]) -> None:
    """Replace a crosshair layer's lines (a no-op when they are the same)."""
    old = crosshair.data
    if len(old) == len(lines) and all(
        np.array_equal(a, b) for a, b in zip(old, lines, strict=True)
    ):
        return
    crosshair.data = [(line, "line") for line in lines]
