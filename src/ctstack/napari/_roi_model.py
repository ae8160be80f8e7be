"""Qt-free ROI geometry for the widgets: napari world coordinates <-> level-0 index ranges.

The ROI itself lives in the stack's view model (``ctstack.viewmodel.model_for``, re-exported
here): the crop, 3D preview and export widgets each read and write that model, never each
other, so an ROI drawn in one is what the others use. Boxes map between napari world
coordinates and half-open level-0 index ranges through the image layer's own transforms
(``world_to_data``): a range ``[a, b)`` is the rectangle whose edges lie at data coordinates
``a - 0.5`` and ``b - 0.5`` (napari puts voxel ``i``'s centre at data coordinate ``i``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..roi import ROI
from ..viewmodel import ViewModel, model_for

if TYPE_CHECKING:
    from napari.layers import Image

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


def _world_points(image_layer: Image, corners_world: np.ndarray) -> np.ndarray:
    """Corners (n, k) in world coordinates -> (n, image.ndim) level-0 data coordinates."""
    pts = np.atleast_2d(np.asarray(corners_world, dtype=float))
    return np.array([image_layer.world_to_data(p) for p in pts])


def box_to_yx(
    image_layer: Image, corners_world: np.ndarray, shape: tuple[int, ...]
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


def yx_to_box(image_layer: Image, y: Range, x: Range) -> np.ndarray:
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


def world_to_index(
    image_layer: Image, point_world: Sequence[float] | np.ndarray, axis: int, size: int
) -> int:
    """The level-0 index along ``axis`` of the voxel under a world point (clipped)."""
    value = float(image_layer.world_to_data(np.asarray(point_world, float))[axis])
    return min(max(math.floor(value + 0.5 + EPS), 0), size - 1)


# --- levels -------------------------------------------------------------------------------


def roi_on_level(roi: ROI, level: int, shape: tuple[int, int, int]) -> tuple[Range, Range, Range]:
    """The level-k footprint ``[floor(a / 2^k), ceil(b / 2^k))`` of a level-0 ROI."""
    from .._export.regions import level_range

    nz, ny, nx = shape
    return (
        level_range(roi.z, level, nz),
        level_range(roi.y, level, ny),
        level_range(roi.x, level, nx),
    )


__all__ = [
    "ViewModel",
    "box_to_yx",
    "describe",
    "edges_to_range",
    "model_for",
    "roi_on_level",
    "world_to_index",
    "yx_to_box",
]


def describe(roi: ROI) -> str:
    """``z 10:40, y 0:96, x 5:90`` (half-open level-0 ranges)."""
    return ", ".join(
        f"{a} {r[0]}:{r[1]}" for a, r in zip("zyx", (roi.z, roi.y, roi.x), strict=True)
    )
