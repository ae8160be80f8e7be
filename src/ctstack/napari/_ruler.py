"""The ruler: lines drawn on the current plane, their lengths in physical units, CSV export.

``ruler(viewer)`` (idempotent) adds a Shapes layer "measurements" over an Image layer, at that
layer's scale, so its vertices are the image's data coordinates (level-0 voxel indices for a
plugin layer). With ``measuring`` on, a left drag on the canvas draws a line on whatever plane
is shown (XY, or XZ/YZ after rolling the axes, or an orthogonal view's own viewer) and its
length is drawn beside it live. Lengths live in the layer's ``features`` (``length``, ``unit``,
``label``): for a plugin layer they come from the stack's view model (``measure``; its
``measurements`` are the lines, shared with every face and re-measured when the voxel size
changes), for any other layer from the layer's scale and units. Unknown voxel size: pixels.

Qt-free: tested on ``napari.components.ViewerModel``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from ..errors import InvalidArgument
from ..measurements import METRES as METRES
from ..measurements import format_length as format_length
from ..measurements import write_csv
from ._layer import stack_of

if TYPE_CHECKING:
    from napari.components import ViewerModel
    from napari.layers import Image, Layer, Shapes
    from napari.utils.events import Event
    from numpy.typing import ArrayLike

    from ..viewmodel import Measurement, ViewModel

RULER_KEY = "ctstack_ruler"  # layer.metadata flag of a measurements layer
LAYER_NAME = "measurements"
COLOR = "yellow"
Line = tuple[np.ndarray, np.ndarray]  # start and end, data coordinates


def _floats(point: ArrayLike) -> list[float]:
    return [float(v) for v in np.asarray(point, float).ravel()]


def _unit_name(units: Sequence[Any]) -> str:
    """One unit name from a layer's per-axis units ("pixel" when unknown or mixed)."""
    names = {str(u) for u in units}
    return names.pop() if len(names) == 1 else "pixel"


def scaled_length(layer: Layer, start: ArrayLike, end: ArrayLike) -> tuple[float, str]:
    """``(length, unit)`` between two data points of ``layer``, through its scale and units;
    unknown units (napari's "pixel") count pixels."""
    unit = _unit_name(layer.units)
    a, b = np.asarray(start, float), np.asarray(end, float)
    scale = np.ones(a.shape) if unit == "pixel" else np.asarray(layer.scale, float)
    return float(np.sqrt((((b - a) * scale) ** 2).sum())), unit


def lines_of(layer: Shapes) -> list[Line]:
    """The line shapes of a Shapes layer as (start, end) data points."""
    return [
        (np.asarray(v[0], float), np.asarray(v[-1], float))
        for v, kind in zip(layer.data, layer.shape_type, strict=True)
        if kind == "line"
    ]


def make_rows(
    lines: Sequence[Line], measure: Callable[[np.ndarray, np.ndarray], tuple[float, str]]
) -> list[dict[str, Any]]:
    """One dict per line: its number, start and end, length, unit and label."""
    out = []
    for i, (a, b) in enumerate(lines, start=1):
        length, unit = measure(a, b)
        out.append(
            {
                "measurement": i,
                "start": tuple(float(v) for v in a),
                "end": tuple(float(v) for v in b),
                "length": length,
                "unit": unit,
                "label": format_length(length, unit),
            }
        )
    return out


class Ruler:
    """The measurements of one viewer over one Image layer (see the module docstring)."""

    changed = Signal()  # the lines or their lengths changed
    mode_changed = Signal(bool)  # measuring switched on or off

    def __init__(self, viewer: ViewerModel, image: Image, model: ViewModel | None = None) -> None:
        from napari.layers import Shapes

        self._viewer = weakref.ref(viewer)
        self.image = image
        self.model: ViewModel | None = None
        self._measuring = False
        self._dragging = False
        self._syncing = False
        self.layer: Shapes = Shapes(
            ndim=image.ndim,
            name=LAYER_NAME,
            shape_type="line",
            edge_color=COLOR,
            edge_width=1.0,
            features={"length": np.zeros(0), "unit": [], "label": []},
            text={"string": "{label}", "color": COLOR, "anchor": "upper_left", "size": 11},
            metadata={RULER_KEY: True},
        )
        self.layer.mouse_drag_callbacks.append(self._on_drag)
        self.layer.events.data.connect(self._on_data)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.selection.events.active.connect(self._on_active)
        self._reclaim = False  # a swapped-in image took the selection while measuring
        self.bind(image, model)
        viewer.add_layer(self.layer)

    def bind(self, image: Image, model: ViewModel | None = None) -> None:
        """Measure on ``image`` from now on: its scale and units, and the view model given or,
        for a plugin layer, its stack's (``model`` lets a copy of a plugin layer, such as an
        orthogonal view's mirror, share the stack's measurements). Lines are re-measured."""
        from ..viewmodel import model_for

        self.image.events.scale.disconnect(self._on_image_scale)
        if self.model is not None:
            self.model.events.measurements.disconnect(self._on_model)
        self.image = image
        stack = stack_of(image)
        if model is None and stack is not None and image.ndim == 3:
            model = model_for(stack)
        self.model = model
        # units first: napari 0.9.2 slices a Shapes layer whose units are set after its scale
        # at a wrong point (5e-5 for 50 µm), so its lines are never shown
        for attr in ("units", "axis_labels", "scale", "translate"):
            setattr(self.layer, attr, getattr(image, attr))
        image.events.scale.connect(self._on_image_scale)
        if self.model is not None:
            self.model.events.measurements.connect(self._on_model)
            if self.model.measurements or not self.lines():
                self._on_model(self.model.measurements)
            else:  # lines drawn before the layer was bound: the model takes them
                self._push_to_model()
        else:
            self._refresh_features()

    def _on_inserted(self, event: Event) -> None:
        """A twin of the image arrived after the image left: measure on it."""
        viewer = self._viewer()
        if viewer is not None and self.image not in viewer.layers and self._is_twin(event.value):
            self.bind(event.value)
            self._reclaim = self._measuring  # napari selects the layer just inserted

    def _on_removed(self, event: Event) -> None:
        """The image left (e.g. swapped for its multiscale twin after a pyramid build, which is
        inserted first): measure on the twin, and keep measuring."""
        viewer = self._viewer()
        if viewer is None or event.value is not self.image:
            return
        twin = next((x for x in viewer.layers if self._is_twin(x)), None)
        if twin is not None:
            self.bind(twin)
            if self._measuring:
                viewer.layers.selection.active = self.layer

    def _is_twin(self, layer: Layer) -> bool:
        """A plugin layer of the same view model and dimensionality as the image."""
        from ..viewmodel import model_for

        stack, old = stack_of(layer), stack_of(self.image)
        if stack is None or old is None or layer is self.image:
            return False
        return getattr(layer, "ndim", 0) == self.image.ndim and model_for(stack) is model_for(old)

    def _on_active(self, event: Event | None = None) -> None:
        """Keep the measurements layer active across an image swap while measuring."""
        viewer = self._viewer()
        if self._reclaim and viewer is not None:
            self._reclaim = False
            if self._measuring and viewer.layers.selection.active is not self.layer:
                viewer.layers.selection.active = self.layer

    # --- measure mode -------------------------------------------------------------------------

    @property
    def measuring(self) -> bool:
        """Measure mode: a left drag on the canvas draws a line (the layer is made active)."""
        return self._measuring

    @measuring.setter
    def measuring(self, value: bool) -> None:
        value = bool(value)
        viewer = self._viewer()
        if value and viewer is not None:
            if self.layer not in viewer.layers:
                viewer.add_layer(self.layer)
            self.layer.mode = "pan_zoom"
            viewer.layers.selection.active = self.layer
        self.layer.mouse_pan = not value  # a drag draws instead of panning
        if value != self._measuring:
            self._measuring = value
            self.mode_changed.emit(value)

    def _on_drag(self, layer: Shapes, event: Any) -> Generator[None, None, None]:
        """Press: a new line; move: its end follows with the length live; release: kept (a
        click without a drag adds nothing)."""
        if (
            not self._measuring
            or layer.mode != "pan_zoom"
            or getattr(event, "button", 1) != 1
            or set(event.modifiers)
            or len(event.dims_displayed) != 2
        ):
            return
        start = np.asarray(layer.world_to_data(event.position), dtype=float)
        lines = self.lines()
        index = len(lines)
        self._dragging = True
        try:
            yield
            end = start
            while event.type == "mouse_move":
                end = np.asarray(layer.world_to_data(event.position), dtype=float)
                self._set_lines([*lines, (start, end)])
                yield
            if event.type == "mouse_release":
                end = np.asarray(layer.world_to_data(event.position), dtype=float)
        finally:
            self._dragging = False
        kept = [*lines, (start, end)] if not np.allclose(start, end) else lines
        self._set_lines(kept)
        self._push_to_model()
        viewer = self._viewer()
        if viewer is not None and len(kept) > index:
            viewer.status = f"measurement {index + 1}: {self.layer.features['label'].iloc[-1]}"

    # --- lines, lengths, features -------------------------------------------------------------

    def lines(self) -> list[Line]:
        """The line shapes of the layer as (start, end) data points (other shapes are skipped)."""
        return lines_of(self.layer)

    def measure(self, start: ArrayLike, end: ArrayLike) -> tuple[float, str]:
        """``(length, unit)`` of a line in data coordinates: the view model's measure for a
        plugin layer, else the image's scale and units ("pixel" when they are unknown)."""
        if self.model is not None:
            m = self.model.measure(_floats(start), _floats(end))
            return m.length, m.unit
        return scaled_length(self.image, start, end)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per line: start and end (data coordinates), length, unit, label."""
        return make_rows(self.lines(), self.measure)

    def clear(self) -> None:
        """Remove every measurement (here and in the view model)."""
        self._set_lines([])
        self._push_to_model()

    def _set_lines(self, lines: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self._syncing = True
        try:
            self.layer.data = [(np.stack([a, b]), "line") for a, b in lines]
        finally:
            self._syncing = False
        self._refresh_features()

    def _refresh_features(self) -> None:
        """Lengths, units and labels of every shape (NaN and "" for shapes that are not
        lines)."""
        lengths, units, labels = [], [], []
        for verts, kind in zip(self.layer.data, self.layer.shape_type, strict=True):
            if kind == "line":
                length, unit = self.measure(verts[0], verts[-1])
                lengths.append(length)
                units.append(unit)
                labels.append(format_length(length, unit))
            else:
                lengths.append(float("nan"))
                units.append("")
                labels.append("")
        self.layer.features = {"length": np.asarray(lengths, float), "unit": units, "label": labels}
        self.changed.emit()

    def _on_data(self, event: Event) -> None:
        """Shapes edited with napari's own tools (moved, deleted, drawn): re-measure and tell the
        view model once the edit is complete."""
        action = str(getattr(event, "action", "changed"))
        if self._syncing or action.endswith("ing"):
            return
        self._refresh_features()
        if not self._dragging:
            self._push_to_model()

    def _on_image_scale(self, event: Event | None = None) -> None:
        self.layer.scale = self.image.scale
        if self.model is None:
            self._refresh_features()

    # --- the view model -----------------------------------------------------------------------

    def _push_to_model(self) -> None:
        if self.model is not None:  # its event brings back the lines clipped to the volume
            self.model.measurements = [(tuple(a), tuple(b)) for a, b in self.lines()]

    def _on_model(self, measurements: tuple[Measurement, ...]) -> None:
        """The model's lines changed (another face, a clip to the volume, a new voxel size):
        the layer shows them; lengths are always re-read."""
        if self._dragging:
            return
        wanted = [(np.asarray(m.start, float), np.asarray(m.end, float)) for m in measurements]
        have = self.lines()
        same = len(have) == len(wanted) and all(
            np.allclose(a, c) and np.allclose(b, d)
            for (a, b), (c, d) in zip(have, wanted, strict=True)
        )
        if same:
            self._refresh_features()
        else:
            self._set_lines(wanted)


_RULERS: weakref.WeakKeyDictionary[ViewerModel, Ruler] = weakref.WeakKeyDictionary()
# viewer -> callbacks told of its ruler when it is made (the orthogonal views follow its mode)
_WATCHERS: weakref.WeakKeyDictionary[ViewerModel, list[Callable[[Ruler], None]]] = (
    weakref.WeakKeyDictionary()
)


def watch_ruler(viewer: ViewerModel, callback: Callable[[Ruler], None]) -> None:
    """Call ``callback(ruler)`` with the viewer's ruler: now if it has one, else once it is
    made (by the Measure button or ``measure_mode``). ``unwatch_ruler`` stops waiting."""
    found = _RULERS.get(viewer)
    if found is not None:
        callback(found)
    else:
        _WATCHERS.setdefault(viewer, []).append(callback)


def unwatch_ruler(viewer: ViewerModel, callback: Callable[[Ruler], None]) -> None:
    waiting = _WATCHERS.get(viewer, [])
    if callback in waiting:
        waiting.remove(callback)


def _image_of(viewer: ViewerModel, image: Image | None) -> Image:
    """The image a ruler measures: the one given, else the active plugin layer, else the
    topmost plugin layer, else the topmost Image layer."""
    from napari.layers import Image

    if image is not None:
        return image
    active = viewer.layers.selection.active
    if stack_of(active) is not None:
        return active
    images = [layer for layer in viewer.layers if isinstance(layer, Image)]
    ours = [layer for layer in images if stack_of(layer) is not None]
    if ours or images:
        return (ours or images)[-1]
    raise InvalidArgument("the ruler needs an image layer to measure on; open a stack first")


def ruler(viewer: ViewerModel, image: Image | None = None, model: ViewModel | None = None) -> Ruler:
    """The viewer's ruler, made on first use with its "measurements" Shapes layer; given an
    ``image`` (or when its image left the viewer) it measures on that one from now on, with
    ``model`` (a stack's view model) when the image is a copy of a plugin layer."""
    found = _RULERS.get(viewer)
    if found is None:
        found = _RULERS[viewer] = Ruler(viewer, _image_of(viewer, image), model)
        for callback in _WATCHERS.pop(viewer, []):
            callback(found)
        return found
    if image is not None and (image is not found.image or model is not None):
        found.bind(image, model)
    elif found.image not in viewer.layers:
        found.bind(_image_of(viewer, None))
    if found.layer not in viewer.layers:
        viewer.add_layer(found.layer)
    return found


def measure_mode(viewer: ViewerModel, on: bool = True) -> Ruler:
    """Switch the viewer's measure mode (a left drag draws a line); returns its Ruler."""
    r = ruler(viewer)
    r.measuring = on
    return r


# --- CSV --------------------------------------------------------------------------------------


def _rows_of(target: Layer | ViewerModel) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and axis names of a measurements layer, any Shapes layer, or a viewer's ruler."""
    from napari.components import ViewerModel
    from napari.layers import Shapes

    if isinstance(target, Shapes):
        found = next((r for r in list(_RULERS.values()) if r.layer is target), None)
        if found is not None:
            return found.rows(), _axes(target)
        layer = target  # any Shapes layer: its lines through its own scale and units
        return make_rows(lines_of(layer), lambda a, b: scaled_length(layer, a, b)), _axes(layer)
    if not isinstance(target, ViewerModel):
        raise InvalidArgument(
            f"export_measurements takes a viewer or a Shapes layer, not {target!r}"
        )
    mine = _RULERS.get(target)
    if mine is not None and mine.layer in target.layers:
        return mine.rows(), _axes(mine.layer)
    for layer in target.layers:
        if isinstance(layer, Shapes) and layer.metadata.get(RULER_KEY):
            return _rows_of(layer)
    raise InvalidArgument("this viewer has no measurements layer; draw some with the ruler first")


def _axes(layer: Layer) -> list[str]:
    labels = [str(a).strip().lstrip("-") or str(i) for i, a in enumerate(layer.axis_labels)]
    return labels if len(set(labels)) == len(labels) else [str(i) for i in range(layer.ndim)]


def export_measurements(target: Layer | ViewerModel, path: str | os.PathLike[str]) -> Path:
    """Write the measurements of a viewer (its ruler) or a Shapes layer to a CSV file.

    Columns: ``measurement`` (1, 2, ...), ``start_<axis>`` and ``end_<axis>`` (data
    coordinates: level-0 voxel indices for a plugin layer), ``length``, ``unit`` ("pixel"
    when the voxel size is unknown) and ``label`` (the length as shown). Returns the file.
    """
    rows, axes = _rows_of(target)
    return write_csv(rows, path, axes)
