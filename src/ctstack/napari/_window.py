"""Window/level on napari layers: the engine's presets (``ctstack.windows``) and a mouse drag.

- :func:`apply_window` sets a layer's contrast from a preset name or ``(low, high)``. On a
  plugin layer it goes through the stack's view model (so every face follows); on any other
  Image layer the percentile presets sample the layer's own data (its coarsest level).
- :func:`enable_window_drag` gives a viewer radiology-style window/level: **Control + drag**
  always, or a plain drag while the mode is on (**Shift-W** toggles it). Horizontal motion
  scales the width (right: wider, less contrast), vertical motion moves the level (down:
  higher level, darker). Works on any viewer model, so the orthogonal views can use it too.

Qt-free: tested on ``napari.components.ViewerModel``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from .. import windows
from ..errors import InvalidArgument
from ._layer import stack_of

if TYPE_CHECKING:
    from napari.components import ViewerModel
    from napari.layers import Image, Layer

WINDOW_MODIFIER = "Control"  # Control + drag: window/level whatever the mode
WINDOW_KEY = "Shift-W"  # toggles the mode where a plain drag does window/level
PIXELS_PER_DOUBLING = 200.0  # horizontal drag that doubles (or halves) the window width
PIXELS_PER_WIDTH = 400.0  # vertical drag that moves the level by one window width


# --- presets ----------------------------------------------------------------------------------


def preset_problem(layer: Layer | None, name: str) -> str | None:
    """Why preset ``name`` cannot apply to ``layer`` (None: it can). Hounsfield presets need a
    DICOM CT series in HU; percentile presets apply to any Image layer."""
    p = windows.preset(name)
    if not p.hounsfield:
        return None
    stack = stack_of(layer)
    if stack is None:
        what = getattr(layer, "name", layer)
        return f"layer {what!r} is not a ctstack stack, so its values are not known to be HU"
    return windows.hounsfield_problem(stack)


def apply_window(layer: Image, value: str | Sequence[float]) -> tuple[float, float]:
    """Set ``layer``'s contrast limits from a preset name (``ctstack.windows.PRESETS``: "bone",
    "1-99", ...) or a ``(low, high)`` pair; returns the window set.

    A flat image never gets an invalid range (equal ends widen to one unit); a Hounsfield
    preset on data that is not HU raises ``ctstack.windows.NotHounsfield`` saying why.
    """
    if not hasattr(layer, "contrast_limits"):
        raise InvalidArgument(f"layer {getattr(layer, 'name', layer)!r} has no contrast limits")
    stack = stack_of(layer)
    if stack is not None:
        from ..viewmodel import model_for

        window = model_for(stack).apply_window(value)
    else:
        window = _layer_window(layer, value)
    if tuple(float(v) for v in layer.contrast_limits) != window:
        layer.contrast_limits = window  # a layer in no synced viewer: the model did not push
    return window


def _layer_window(layer: Image, value: str | Sequence[float]) -> windows.Window:
    """The window of ``value`` for a layer not opened by this plugin."""
    if not isinstance(value, str):
        try:
            low, high = value
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"a window is a preset name or (low, high), got {value!r}"
            ) from exc
        return windows.valid_window(low, high)
    p = windows.preset(value)
    problem = preset_problem(layer, p.name)
    if problem is not None:
        raise windows.NotHounsfield(
            f"the {p.label} preset is in Hounsfield units, but {problem}; "
            "use a percentile preset or a (low, high) window"
        )
    return windows.percentile_window(layer_sample(layer), p.a, p.b)


def layer_sample(layer: Image) -> np.ndarray:
    """Finite values of a small strided sample of the layer's coarsest level."""
    data = layer.data[-1] if layer.multiscale else layer.data
    if getattr(data, "ndim", 0) == 3 and not layer.rgb:
        return windows.sample([data])
    shape = tuple(int(n) for n in data.shape)
    step = max(1, math.ceil((math.prod(shape) / windows.COARSE_SAMPLE) ** (1 / len(shape))))
    values = np.asarray(data[tuple(slice(None, None, step) for _ in shape)]).ravel()
    return values[np.isfinite(values)] if values.dtype.kind == "f" else values


# --- window/level by mouse drag ---------------------------------------------------------------


def dragged_window(start: Sequence[float], dx: float, dy: float) -> tuple[float, float]:
    """The window after a drag of ``(dx, dy)`` screen pixels from window ``start``: the width
    doubles every ``PIXELS_PER_DOUBLING`` to the right, the level rises by one starting width
    every ``PIXELS_PER_WIDTH`` downwards."""
    low, high = (float(v) for v in start)
    width0 = max(high - low, 1e-12)
    width = width0 * 2.0 ** (dx / PIXELS_PER_DOUBLING)
    level = (low + high) / 2 + dy * width0 / PIXELS_PER_WIDTH
    return windows.valid_window(level - width / 2, level + width / 2)


def window_target(viewer: ViewerModel) -> Image | None:
    """The layer a window drag changes: the active layer when it has contrast limits and is
    visible, else the topmost visible one that has."""
    active = viewer.layers.selection.active
    if _has_contrast(active):
        return active
    for layer in reversed(list(viewer.layers)):
        if _has_contrast(layer):
            return layer
    return None


def _has_contrast(layer: Layer | None) -> bool:
    return layer is not None and layer.visible and hasattr(layer, "contrast_limits")


class WindowDrag:
    """Window/level by mouse drag in one viewer (see the module); ``enabled`` is the mode in
    which a plain drag does it (Control + drag works either way)."""

    toggled = Signal(bool)

    def __init__(self, viewer: ViewerModel) -> None:
        self._viewer = weakref.ref(viewer)
        self._enabled = False
        viewer.mouse_drag_callbacks.append(self._on_drag)
        viewer.bind_key(WINDOW_KEY, self._on_key, overwrite=True)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value != self._enabled:
            self._enabled = value
            self.toggled.emit(value)

    def toggle(self) -> bool:
        """Switch the plain-drag mode; returns the new state."""
        self.enabled = not self._enabled
        return self._enabled

    def _on_key(self, viewer: ViewerModel) -> None:
        on = self.toggle()
        viewer.status = f"window/level drag {'on' if on else 'off'} ({WINDOW_KEY} toggles)"

    def wants(self, viewer: ViewerModel, event: Any) -> bool:
        """Whether a press starts a window drag: left button, the active layer (if any) in
        pan/zoom mode, and Control held or the mode on with no modifier."""
        if event.type != "mouse_press" or getattr(event, "button", 1) != 1:
            return False
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return False
        modifiers = set(event.modifiers)
        if WINDOW_MODIFIER in modifiers:
            return True
        return self._enabled and not modifiers and (active is None or _has_contrast(active))

    def _on_drag(self, viewer: ViewerModel, event: Any) -> Generator[None, None, None]:
        if not self.wants(viewer, event):
            return
        layer = window_target(viewer)
        if layer is None:
            return
        start = tuple(float(v) for v in layer.contrast_limits)
        x0, y0 = (float(v) for v in event.pos[:2])
        camera = viewer.scene.camera
        was_panning = camera.mouse_pan
        camera.mouse_pan = False  # the drag changes the window, not the view
        try:
            yield
            while event.type == "mouse_move":
                x, y = (float(v) for v in event.pos[:2])
                layer.contrast_limits = dragged_window(start, x - x0, y - y0)
                yield
        finally:
            camera.mouse_pan = was_panning


_DRAGS: weakref.WeakKeyDictionary[ViewerModel, WindowDrag] = weakref.WeakKeyDictionary()


def enable_window_drag(viewer: ViewerModel) -> WindowDrag:
    """Give ``viewer`` window/level by mouse drag (idempotent): Control + drag, and
    ``Shift-W`` to toggle a mode where a plain drag does it. Returns the viewer's WindowDrag."""
    drag = _DRAGS.get(viewer)
    if drag is None:
        drag = _DRAGS[viewer] = WindowDrag(viewer)
    return drag
