"""Qt-free layer model: layer kwargs from a Stack, cheap contrast limits, 3D levels, layer swap.

Everything here works on ``napari.components.ViewerModel`` and plain layers, so it is tested
without a display; the Qt side (``_qt/``) only wires these functions to threads and widgets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..pyramid import DEFAULT_MAX_SIZE

if TYPE_CHECKING:
    from napari.components import ViewerModel
    from napari.layers import Image

    from ..stack import Stack

MAX_SIZE_ENV = "CTSTACK_MAX_SIZE"
META_KEY = "ctstack"  # layer.metadata[META_KEY] holds the Stack's facts
STACK_KEY = "stack"  # layer.metadata[STACK_KEY] is the live Stack (for widgets and scripts)
SAMPLE_SLICES = 7  # z-planes read to estimate contrast when no pyramid exists
SAMPLE_PIXELS = 256  # each sampled plane is strided down to about this many pixels per axis
PERCENTILES = (0.5, 99.5)
COARSE_SAMPLE = 2_000_000  # voxels read from the coarsest level at most
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


def contrast_limits(levels: list) -> tuple[float, float]:
    """Robust 0.5-99.5 % percentiles of the coarsest level (strided), else of a few level-0 planes.

    Never scans full resolution: with one level only a handful of strided z-planes are read.
    """
    sample = _sample_coarse(levels[-1]) if len(levels) > 1 else _sample_planes(levels[0])
    sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(sample, PERCENTILES))
    if hi <= lo:  # a flat image: widen so napari gets a valid range
        lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            hi = lo + 1.0
    return (lo, hi)


def _sample_coarse(level) -> np.ndarray:
    """The coarsest level, strided in y and x so that at most COARSE_SAMPLE voxels are read."""
    z, y, x = level.shape
    step = max(1, int(np.ceil(np.sqrt(z * y * x / COARSE_SAMPLE))))
    return np.asarray(level[:, ::step, ::step]).ravel()


def _sample_planes(level) -> np.ndarray:
    """A few evenly spaced z-planes of level 0 (ends excluded), strided to about 256 x 256."""
    z, y, x = level.shape
    picks = np.unique(np.linspace(0, z - 1, SAMPLE_SLICES + 2).round().astype(int)[1:-1])
    if picks.size == 0:
        picks = np.array([0])
    step = max(1, max(y, x) // SAMPLE_PIXELS)
    planes = [np.asarray(level[int(k), ::step, ::step]) for k in picks]
    return np.concatenate([p.ravel() for p in planes])


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


def layer_kwargs(stack: Stack, levels: list) -> dict[str, Any]:
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
        "metadata": {META_KEY: stack_facts(stack), STACK_KEY: stack},
    }


def layer_data(stack: Stack, levels: list) -> tuple[Any, dict[str, Any], str]:
    """One napari LayerData tuple: the levels as data (a list when multiscale) plus kwargs."""
    data = list(levels) if len(levels) > 1 else levels[0]
    return (data, layer_kwargs(stack, levels), "image")


def stack_of(layer) -> Stack | None:
    """The Stack behind a layer opened by this plugin, else None."""
    meta = getattr(layer, "metadata", None) or {}
    return meta.get(STACK_KEY)


# --- 3D level ---------------------------------------------------------------------------------


def levels_for_3d(level_shapes: list, max_texture_3d: int | None) -> list[int]:
    """Indices of the levels whose every axis fits the GPU's largest 3D texture."""
    limit = max_texture_3d or 2048
    return [i for i, shape in enumerate(level_shapes) if max(int(n) for n in shape) <= limit]


def set_3d_level(layer: Image, level: int | None) -> None:
    """Choose the level rendered in 3D (None: napari's default, the coarsest); applied now if 3D."""
    layer.metadata.setdefault(META_KEY, {})["level_3d"] = level
    apply_3d_level(layer, layer._slice_input.ndisplay)


def apply_3d_level(layer: Image, ndisplay: int) -> None:
    """Lock the chosen 3D level while 3D is displayed; let 2D pick levels by zoom again."""
    if not layer.multiscale:
        return
    chosen = layer.metadata.get(META_KEY, {}).get("level_3d")
    want = chosen if ndisplay == 3 else None
    if layer.locked_data_level != want:
        layer.locked_data_level = want


def track_3d_levels(viewer: ViewerModel) -> None:
    """Apply each plugin layer's 3D level choice whenever the viewer switches 2D/3D."""
    if getattr(viewer, "_ctstack_tracks_3d", False):
        return

    def on_ndisplay(event=None) -> None:
        for layer in viewer.layers:
            if stack_of(layer) is not None:
                apply_3d_level(layer, viewer.dims.ndisplay)

    viewer.dims.events.ndisplay.connect(on_ndisplay)
    viewer._ctstack_tracks_3d = True


# --- replacing a layer by its multiscale twin -------------------------------------------------


def replace_with_levels(viewer: ViewerModel, old: Image, levels: list) -> Image:
    """Put a multiscale layer in the place of ``old``, keeping the user's view and settings.

    napari cannot make a layer multiscale after creation, so a new layer takes the old one's
    position in the list, name, contrast, colormap, scale, metadata and selection; the current
    slice and the camera are restored afterwards.
    """
    from napari.layers import Image

    state = {key: getattr(old, key) for key in LAYER_STATE if hasattr(old, key)}
    state["colormap"] = old.colormap  # the object, so custom colormaps survive
    step = tuple(viewer.dims.current_step)
    camera = (
        viewer.scene.camera.model_dump() if hasattr(viewer.scene.camera, "model_dump") else None
    )
    index = viewer.layers.index(old)
    was_active = viewer.layers.selection.active is old
    was_selected = old in viewer.layers.selection
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
    if was_selected:
        viewer.layers.selection.add(new)
    if was_active:
        viewer.layers.selection.active = new
    viewer.dims.current_step = step
    if camera is not None:  # restore only what moved: setting angles costs ~0.2 s in 2D
        now = viewer.scene.camera.model_dump()
        moved = {k: camera[k] for k in ("center", "zoom", "angles") if now.get(k) != camera.get(k)}
        if moved:
            viewer.scene.camera.update(moved)
    apply_3d_level(new, viewer.dims.ndisplay)
    return new
