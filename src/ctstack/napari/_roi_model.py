"""Qt-free ROI model for the widgets: one current ROI per Stack, and world <-> index mapping.

The crop, 3D preview and export widgets share a :class:`RoiModel` per Stack (``model_for``), so
an ROI drawn in one is what the others use. Boxes map between napari world coordinates and
half-open level-0 index ranges through the image layer's own transforms (``world_to_data``):
a range ``[a, b)`` is the rectangle whose edges lie at data coordinates ``a - 0.5`` and
``b - 0.5`` (napari puts voxel ``i``'s centre at data coordinate ``i``).
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from ..roi import ROI, load_roi, save_roi

if TYPE_CHECKING:
    from ..stack import Stack

Range = tuple[int, int]
EPS = 1e-6  # tolerance for float error in transforms: an edge at 9.4999999 counts as 9.5


# --- world <-> level-0 indices ----------------------------------------------------------------


def edges_to_range(lo: float, hi: float, size: int) -> Range:
    """The half-open range of the voxels a box ``[lo, hi]`` (data coordinates) touches, clipped.

    Rounds outward; an empty or out-of-image box gives at least one voxel at the nearest edge.
    """
    lo, hi = min(lo, hi), max(lo, hi)
    start = math.floor(lo + 0.5 + EPS)
    stop = math.ceil(hi + 0.5 - EPS)
    start = min(max(start, 0), size - 1)
    stop = min(max(stop, start + 1), size)
    return (start, stop)


def _world_points(image_layer, corners_world: np.ndarray) -> np.ndarray:
    """Corners (n, k) in world coordinates -> (n, image.ndim) level-0 data coordinates."""
    pts = np.atleast_2d(np.asarray(corners_world, dtype=float))
    return np.array([image_layer.world_to_data(p) for p in pts])


def box_to_yx(
    image_layer, corners_world: np.ndarray, shape: tuple[int, ...]
) -> tuple[Range, Range]:
    """Level-0 (y, x) ranges covered by a box given by its corners in world coordinates.

    ``corners_world`` are (n, 2) world (y, x) points or (n, 3) world (z, y, x) points.
    """
    data = _world_points(image_layer, corners_world)
    ys, xs = data[:, -2], data[:, -1]
    return (
        edges_to_range(float(ys.min()), float(ys.max()), int(shape[-2])),
        edges_to_range(float(xs.min()), float(xs.max()), int(shape[-1])),
    )


def yx_to_box(image_layer, y: Range, x: Range) -> np.ndarray:
    """The four world (y, x) corners of the rectangle covering level-0 ranges ``y`` and ``x``."""
    lead = [0.0] * (image_layer.ndim - 2)
    corners = [
        (y[0] - 0.5, x[0] - 0.5),
        (y[0] - 0.5, x[1] - 0.5),
        (y[1] - 0.5, x[1] - 0.5),
        (y[1] - 0.5, x[0] - 0.5),
    ]
    world = [np.asarray(image_layer.data_to_world([*lead, cy, cx]))[-2:] for cy, cx in corners]
    return np.array(world)


def world_to_index(image_layer, point_world, axis: int, size: int) -> int:
    """The level-0 index along ``axis`` of the voxel under a world point (clipped)."""
    value = float(image_layer.world_to_data(np.asarray(point_world, float))[axis])
    return min(max(math.floor(value + 0.5 + EPS), 0), size - 1)


def physical_box(stack: Stack, roi: ROI) -> tuple[np.ndarray, np.ndarray]:
    """World (z, y, x) bounds of the ROI's outer voxel faces: ``origin + (i - 0.5) * voxel``."""
    start = np.array([r[0] for r in (roi.z, roi.y, roi.x)], float)
    stop = np.array([r[1] for r in (roi.z, roi.y, roi.x)], float)
    voxel, origin = np.asarray(stack.voxel_size), np.asarray(stack.origin)
    return origin + (start - 0.5) * voxel, origin + (stop - 0.5) * voxel


# --- levels and output sizes ------------------------------------------------------------------


def level_shapes(stack: Stack, max_size: int | None = None) -> list[tuple[int, int, int]]:
    """Shapes of levels 0..n: the built ones, else the ones a build with ``max_size`` would make."""
    from ..pyramid import level_shapes as planned

    built = [tuple(int(n) for n in a.shape) for a in stack.levels]
    size = max_size or getattr(stack, "gui_max_size", None) or 512
    would = [tuple(stack.shape), *planned(tuple(stack.shape), size)]
    return built if len(built) >= len(would) else would


def roi_on_level(roi: ROI, level: int, shape: tuple[int, int, int]) -> tuple[Range, Range, Range]:
    """The level-k footprint ``[floor(a / 2^k), ceil(b / 2^k))`` of a level-0 ROI."""
    from ..export.regions import level_range

    return tuple(
        level_range(r, level, n) for r, n in zip((roi.z, roi.y, roi.x), shape, strict=True)
    )


def output_estimate(
    stack: Stack, roi: ROI, level: int, fmt: str, eight_bit: bool = False
) -> dict[str, Any]:
    """What an export would write: shape at the level, dtype, file count and bytes (pixels)."""
    shapes = level_shapes(stack)
    level = min(max(level, 0), len(shapes) - 1)
    ranges = roi_on_level(roi, level, shapes[level])
    shape = tuple(b - a for a, b in ranges)
    dtype = np.dtype(np.uint8) if eight_bit else np.dtype(stack.dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    files = shape[0] if fmt in ("tiff", "png", "bmp") else 1
    return {"shape": shape, "dtype": dtype.name, "bytes": nbytes, "files": files, "level": level}


def human_bytes(n: float) -> str:
    from ..export.writing import human_bytes as hb

    return hb(n)


# --- the shared model -------------------------------------------------------------------------


class RoiModel:
    """The current ROI of one Stack, loaded from its ROI file and saved back on request."""

    changed = Signal(object)  # the new ROI

    def __init__(self, stack: Stack) -> None:
        self._stack = weakref.ref(stack)
        saved = load_roi(stack)
        self.roi: ROI = saved or ROI.full(stack, "no saved ROI; full volume")
        self.restored = saved is not None
        self.dirty = False
        self.saved_to: Path | None = None

    @property
    def stack(self) -> Stack | None:
        return self._stack()

    def set(
        self,
        z: Range | None = None,
        y: Range | None = None,
        x: Range | None = None,
        threshold: Any = ...,
        source: str = "user",
        reason: str | None = None,
    ) -> ROI:
        """Change some ranges (and/or the threshold); clamps to the stack and emits ``changed``."""
        old = self.roi
        ranges = [
            tuple(int(v) for v in r) if r is not None else o
            for r, o in zip((z, y, x), (old.z, old.y, old.x), strict=True)
        ]
        ranges = [(a, b) if b > a else (a, a + 1) for a, b in ranges]
        thr = old.threshold if threshold is ... else threshold
        new = ROI(*ranges, thr, source, old.reason if reason is None else reason, dict(old.extra))
        stack = self.stack
        if stack is not None:
            new = new.clamp(stack.shape)
        return self.set_roi(new)

    def set_roi(self, roi: ROI) -> ROI:
        """Replace the ROI (clamped) and emit ``changed`` when it differs."""
        stack = self.stack
        if stack is not None:
            roi = roi.clamp(stack.shape)
        if roi == self.roi:
            return roi
        self.roi = roi
        self.dirty = True
        self.changed.emit(roi)
        return roi

    def save(self) -> Path | None:
        """Write the ROI into the stack's ROI file (not the cache); returns the file."""
        stack = self.stack
        if stack is None:
            return None
        self.saved_to = save_roi(stack, self.roi)
        self.dirty = False
        return self.saved_to


_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_for(stack: Stack) -> RoiModel:
    """The one RoiModel of this Stack (made, and the saved ROI loaded, on first use)."""
    model = _MODELS.get(stack)
    if model is None:
        model = _MODELS[stack] = RoiModel(stack)
    return model


def describe(roi: ROI) -> str:
    """``z 10:40, y 0:96, x 5:90`` (half-open level-0 ranges)."""
    return ", ".join(
        f"{a} {r[0]}:{r[1]}" for a, r in zip("zyx", (roi.z, roi.y, roi.x), strict=True)
    )
