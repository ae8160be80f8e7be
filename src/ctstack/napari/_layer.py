"""Qt-free layer model: layer kwargs from a Stack, cheap contrast limits, 3D levels, layer swap.

Everything here works on ``napari.components.ViewerModel`` and plain layers, so it is tested
without a display; the Qt side (``_qt/``) only wires these functions to threads and widgets.
The 3D level is the stack's view-model field (``ctstack.viewmodel``); ``_sync.py`` applies it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import windows
from ..errors import CacheGone
from ..pyramid import DEFAULT_MAX_SIZE

if TYPE_CHECKING:
    from napari.components import ViewerModel
    from napari.layers import Image, Layer

    from ..stack import Stack
    from ._display import DisplayArray

MAX_SIZE_ENV = "CTSTACK_MAX_SIZE"
META_KEY = "ctstack"  # layer.metadata[META_KEY] holds the Stack's facts
STACK_KEY = "stack"  # layer.metadata[STACK_KEY] is the live Stack (for widgets and scripts)
PERCENTILES = (0.5, 99.5)  # the engine's default window preset (ctstack.windows)
LAYER_STATE = (
    "colormap",
    "contrast_limits",
    "gamma",
    "opacity",
    "blending",
    "visible",
    "rendering",
    "attenuation",
    "iso_threshold",
    "interpolation2d",
    "interpolation3d",
    "projection_mode",
    "scale",
    "translate",
    "units",
    "axis_labels",
    "metadata",
)


def max_size_setting() -> int:
    """The pyramid's max_size for the GUI: ``$CTSTACK_MAX_SIZE`` or 512."""
    raw = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_SIZE
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_MAX_SIZE
    return value if value >= 1 else DEFAULT_MAX_SIZE


def contrast_limits(levels: Sequence[Any]) -> tuple[float, float]:
    """Robust 0.5-99.5 % percentiles of the coarsest level (strided), else of a few level-0 planes.

    Never scans full resolution: with one level only a handful of strided z-planes are read.
    The engine's percentile preset (``ctstack.windows``), so every face agrees.
    """
    return windows.percentile_window(windows.sample(levels), *PERCENTILES)


def stack_facts(stack: Stack) -> dict[str, Any]:
    """The Stack's facts as plain data (files, missing, bad slices, other series, metadata)."""
    summary = stack.summary()
    return {
        **summary,
        "root": str(stack.root),
        "files": [str(f) for f in stack.files],
        "scanner": {k: v for k, v in stack.metadata.items() if _plain(v)},
    }


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None)) or (
        isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value)
    )


# --- levels whose cache entry may vanish while shown -------------------------------------------

GoneHandler = Callable[["Stack", CacheGone], None]
_gone_handlers: list[GoneHandler] = []  # the Qt side registers one (it reloads the layer)
_gone_lock = threading.Lock()
_gone_seen: set[tuple[int, str]] = set()  # (id(stack), entry) already reported


def on_cache_gone(handler: GoneHandler) -> None:
    """Call ``handler(stack, error)`` (from any thread) when a shown level's entry is gone."""
    if handler not in _gone_handlers:
        _gone_handlers.append(handler)


def _report_gone(stack: Stack, exc: CacheGone) -> None:
    key = (id(stack), str(exc.entry))
    with _gone_lock:
        if key in _gone_seen:
            return
        _gone_seen.add(key)
    for handler in list(_gone_handlers):
        handler(stack, exc)


def display_levels(stack: Stack, levels: Sequence[Any]) -> list[DisplayArray]:
    """``levels`` as napari's display arrays (``_display``): level 0 through the stack's plane
    reader with read-ahead, cached levels straight from their zarr arrays. A cache entry that
    vanishes while shown (``CacheGone``) gives zeros for that one read and asks the face to
    reload the layer (``on_cache_gone``), instead of raising inside napari's slicing."""
    from ._display import ArraySource, DisplayArray, PlaneSource, Source, ZarrSource

    with _gone_lock:  # fresh levels: a later loss of their entry is reported again
        _gone_seen.difference_update({k for k in _gone_seen if k[0] == id(stack)})
    pyramid = stack.pyramid
    stores: dict[int, Any] = {}
    if pyramid is not None and len(pyramid.stores) == len(pyramid.levels) - 1:
        stores = {id(a): s for a, s in zip(pyramid.levels[1:], pyramid.stores, strict=True)}

    def guard(exc: CacheGone) -> None:
        _report_gone(stack, exc)

    out = []
    for i, level in enumerate(levels):
        source: Source
        if isinstance(level, DisplayArray):  # a shown layer's levels, handed back
            source = level.source
        elif i == 0 and level is stack.data:
            source = PlaneSource(stack)
        elif id(level) in stores:
            source = ZarrSource(stores[id(level)])
        else:
            source = ArraySource(level)
        out.append(DisplayArray(source, guard=guard))
    return out


def layer_kwargs(stack: Stack, levels: Sequence[Any]) -> dict[str, Any]:
    """Image-layer kwargs for a Stack shown with ``levels`` (one level: plain, else multiscale)."""
    return {
        "name": stack.name,
        "scale": tuple(stack.voxel_size),
        "translate": tuple(o for o in stack.origin),
        "units": (stack.unit,) * 3,
        "axis_labels": ("z", "y", "x"),
        "contrast_limits": contrast_limits(levels),
        "colormap": "gray",
        "rendering": "attenuated_mip",
        "attenuation": 0.02,
        "multiscale": len(levels) > 1,
        "projection_mode": "none",  # one plane per step; napari 0.9's "mean" averages into float64
        "metadata": {META_KEY: stack_facts(stack), STACK_KEY: stack},
    }


def layer_data(stack: Stack, levels: Sequence[Any]) -> tuple[Any, dict[str, Any], str]:
    """One napari LayerData tuple: the levels as data (a list when multiscale) plus kwargs."""
    levels = display_levels(stack, levels)
    data = list(levels) if len(levels) > 1 else levels[0]
    return (data, layer_kwargs(stack, levels), "image")


def stack_of(layer: Layer | None) -> Stack | None:
    """The Stack behind a layer opened by this plugin, else None."""
    meta = getattr(layer, "metadata", None) or {}
    return meta.get(STACK_KEY)


# --- 3D level ---------------------------------------------------------------------------------


def levels_for_3d(level_shapes: Sequence[Sequence[int]], max_texture_3d: int | None) -> list[int]:
    """Indices of the levels whose every axis fits the GPU's largest 3D texture."""
    limit = max_texture_3d or 2048
    return [i for i, shape in enumerate(level_shapes) if max(int(n) for n in shape) <= limit]


def chosen_3d_level(layer: Image) -> int | None:
    """The view model's 3D level of the layer's stack (None: the coarsest)."""
    from ..viewmodel import model_for

    stack = stack_of(layer)
    return None if stack is None else model_for(stack).level_3d


def apply_3d_level(layer: Image, ndisplay: int) -> None:
    """Lock the chosen 3D level while 3D is displayed; let 2D pick levels by zoom again."""
    if not layer.multiscale:
        return
    chosen = chosen_3d_level(layer)
    if chosen is not None:
        chosen = min(chosen, len(layer.level_shapes) - 1)
    want = chosen if ndisplay == 3 else None
    if layer.locked_data_level != want:
        layer.locked_data_level = want


# --- replacing a layer by its multiscale twin -------------------------------------------------


def replace_with_levels(viewer: ViewerModel, old: Image, levels: Sequence[Any]) -> Image:
    """Put a multiscale layer in the place of ``old``, keeping the user's view and settings.

    napari cannot make a layer multiscale after creation, so a new layer takes the old one's
    position in the list, name, contrast, colormap, scale, metadata and selection; the current
    slice, the camera and which layer is active (a ruler's Shapes layer, say) are restored.
    """
    from napari.layers import Image

    stack = stack_of(old)
    if stack is not None:
        levels = display_levels(stack, levels)
    state = {key: getattr(old, key) for key in LAYER_STATE if hasattr(old, key)}
    state["colormap"] = old.colormap  # the object, so custom colormaps survive
    step = tuple(viewer.dims.current_step)
    camera = (
        viewer.scene.camera.model_dump() if hasattr(viewer.scene.camera, "model_dump") else None
    )
    index = viewer.layers.index(old)
    active = viewer.layers.selection.active  # napari makes an inserted layer active: undo that
    selected = list(viewer.layers.selection)
    name = old.name
    new = Image(
        list(levels) if len(levels) > 1 else levels[0],
        multiscale=len(levels) > 1,
        name=f"{name} (multiscale)",
        **{k: v for k, v in state.items()},
    )
    old.visible = False  # napari does not slice hidden layers: the swap renders only the new one
    viewer.layers.insert(index + 1, new)
    viewer.layers.remove(old)
    new.name = name
    keep = [
        new if layer is old else layer
        for layer in selected
        if layer in viewer.layers or layer is old
    ]
    viewer.layers.selection.clear()
    viewer.layers.selection.update(keep)
    if active is old:
        viewer.layers.selection.active = new
    elif active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    viewer.dims.current_step = step
    if camera is not None:  # restore only what moved: setting angles costs ~0.2 s in 2D
        now = viewer.scene.camera.model_dump()
        moved = {k: camera[k] for k in ("center", "zoom", "angles") if now.get(k) != camera.get(k)}
        if moved:
            viewer.scene.camera.update(moved)
    apply_3d_level(new, viewer.dims.ndisplay)
    return new
