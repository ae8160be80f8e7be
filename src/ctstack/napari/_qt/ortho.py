"""Orthogonal views: XZ and YZ canvases docked beside the main viewer, one linked crosshair.

``orthogonal_views(viewer)`` docks the "Orthogonal views" widget (the same one napari's plugin
menu opens; idempotent) and sets the view model's ``layout`` to ``"ortho"``. Each view is a
``ViewerModel`` with its own ``QtViewer`` (so each picks its pyramid level by its own zoom)
holding mirrors of the main viewer's 3D images (``_ortho.py``). The crosshair is the main
viewer's current point, which ``_sync.py`` already keeps equal to the view model's crosshair:
the views follow it, and a click or a slider move in any view moves it.

The views have the main viewer's tools: window/level by Control + drag (and the Shift-W mode,
one switch for all three canvases) changes the mirror, hence the main layer and the model; and
while the main viewer's ruler measures (the panel's Measure button, ``measure_mode``), a drag in
a view draws a line there with that view's own ruler, bound to the stack's view model, so its
length (voxel size) and the line land in the model and the main "measurements" layer.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from .. import _ortho
from .._layer import stack_of
from .._ruler import Ruler, ruler, unwatch_ruler, watch_ruler
from .._sync import sync_viewer
from .._window import WindowDrag, enable_window_drag

if TYPE_CHECKING:
    from napari._qt.qt_viewer import QtViewer
    from napari.components import ViewerModel
    from napari.layers import Image, Layer, Shapes
    from napari.utils.events import Event

    import napari

PLUGIN = "napari-ctstack"
WIDGET = "Orthogonal views"
TITLES = {"xz": ("XZ", "y"), "yz": ("YZ", "x")}
CLICK_SLOP = 4  # screen pixels a press may move and still count as a click

# viewer -> its views (weakly: the dock owns the widget)
_VIEWS: weakref.WeakKeyDictionary[Any, weakref.ref[OrthogonalViews]] = weakref.WeakKeyDictionary()


def orthogonal_views(viewer: napari.viewer.Viewer) -> OrthogonalViews:
    """Dock the XZ and YZ views of ``viewer`` (once; later calls return the same views)."""
    viewer = _unwrap(viewer)
    if getattr(viewer, "window", None) is None:
        raise TypeError("orthogonal views dock into a napari.Viewer's window; got a viewer model")
    ref = _VIEWS.get(viewer)
    views = ref() if ref is not None else None
    if views is None or not views.alive:
        dock, views = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    else:
        dock = views.parentWidget()
    if dock is not None:
        dock.show()
    views.set_layout("ortho")
    return views


def _unwrap(viewer: Any) -> Any:
    """The viewer itself (napari hands plugin widgets a PublicOnlyProxy)."""
    return getattr(viewer, "__wrapped__", viewer)


class _Bridge(QObject):
    """Carries 'a level-0 plane landed' from the reading thread to the GUI thread."""

    loaded = Signal(object)

    def __init__(self, lazy: _ortho.OffThreadLevel) -> None:
        super().__init__()
        self.lazy = weakref.ref(lazy)

    def emit(self, index: int) -> None:  # reading thread: a queued signal
        self.loaded.emit(index)


@dataclass
class _Mirror:
    """One main layer and its copies in the XZ and YZ views."""

    main: Image
    layers: dict[str, Image] = field(default_factory=dict)
    lazies: dict[str, _ortho.OffThreadLevel] = field(default_factory=dict)
    bridges: dict[str, _Bridge] = field(default_factory=dict)
    link: _ortho.LayerLink | None = None
    reported: set[str] = field(default_factory=set)  # views whose read failure was shown


class OrthogonalViews(QWidget):
    """The XZ and YZ views of a napari viewer (see the module); also the plugin widget."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from napari._qt.qt_viewer import QtViewer
        from napari.components import ViewerModel

        self.viewer = viewer = _unwrap(napari_viewer)
        _VIEWS[viewer] = weakref.ref(self)
        self.alive = True
        self.models: dict[str, ViewerModel] = {}
        self.canvases: dict[str, QtViewer] = {}
        self.labels: dict[str, QLabel] = {}
        self._mirrors: dict[int, _Mirror] = {}
        self._crosshairs: dict[str, Shapes] = {}
        self._reference: Image | None = None
        self._guard = False
        self._docked = False
        self._warned: set[str] = set()
        self._on_click = _weak_click(self)  # the viewer's callback list must not keep us alive
        self._main_ruler: Ruler | None = None  # the main viewer's, once made
        self._rulers: dict[str, Ruler] = {}  # each view's own, made when measuring first starts
        self._on_ruler = _weak(self, "_follow_ruler")
        self._on_measure = _weak(self, "_update_rulers")
        self._on_window_mode = _weak(self, "_window_mode")
        self._drags: list[WindowDrag] = []

        splitter = QSplitter(Qt.Orientation.Vertical)
        for view in _ortho.VIEWS:
            model = ViewerModel(title=f"{TITLES[view][0]} view")
            canvas = QtViewer(model)
            canvas.setMinimumSize(240, 180)
            label = QLabel(TITLES[view][0])
            box = QWidget()
            column = QVBoxLayout(box)
            column.setContentsMargins(0, 0, 0, 0)
            column.addWidget(label)
            column.addWidget(canvas, 1)
            splitter.addWidget(box)
            model.dims.events.point.connect(self._on_view_point)
            model.scene.camera.events.zoom.connect(self._on_zoom)
            model.mouse_drag_callbacks.append(self._on_click)
            self.models[view], self.canvases[view], self.labels[view] = model, canvas, label
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        sync_viewer(viewer)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self._on_layers)
        viewer.layers.selection.events.active.connect(self._on_layers)
        viewer.dims.events.point.connect(self._on_main_point)
        viewer.scene.camera.events.zoom.connect(self._on_zoom)
        viewer.mouse_drag_callbacks.append(self._on_click)
        self.destroyed.connect(_closer(self))
        self._on_layers()
        for model in self.models.values():
            model.reset_view()
        # the main viewer's tools in the views: window drag (one Shift-W mode) and the ruler
        self._drags = [enable_window_drag(m) for m in (viewer, *self.models.values())]
        for drag in self._drags:
            drag.toggled.connect(self._on_window_mode)
        self._window_mode(self._drags[0].enabled)
        watch_ruler(viewer, self._on_ruler)

    def event(self, event: QEvent | None) -> bool:
        """Closing the dock ('x', ``remove_dock_widget``) takes the widget out of it: let go."""
        if event is not None and event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self._close()
        return super().event(event)

    # --- public API ---------------------------------------------------------------------------

    @property
    def crosshair(self) -> tuple[int, int, int] | None:
        """Level-0 ``(z, y, x)`` of the reference layer (the current plugin layer, else the top
        3D image) under the crosshair; None without a 3D image. Follows clicks in all views."""
        ref = self._reference
        if ref is None:
            return None
        stack = stack_of(ref)
        if stack is not None:
            from ...viewmodel import model_for

            return model_for(stack).crosshair
        return _ortho.world_to_index(ref, self.viewer.dims.point)

    @crosshair.setter
    def crosshair(self, value: tuple[int, int, int]) -> None:
        ref = self._reference
        if ref is None:
            self._why_not()
            return
        stack = stack_of(ref)
        if stack is not None:
            from ...viewmodel import model_for

            model_for(stack).crosshair = value  # _sync moves the main viewer, the views follow
            return
        index = [float(v) for v in value]
        world = [float(v) for v in ref.data_to_world(index)]
        ndim = self.viewer.dims.ndim
        self.viewer.dims.set_point(list(range(ndim - 3, ndim)), world[-3:])

    def screenshot(self, view: str) -> np.ndarray:
        """The RGBA pixels of the ``"xz"`` or ``"yz"`` canvas as shown now."""
        if view not in self.canvases:
            raise ValueError(f"view is one of {', '.join(_ortho.VIEWS)}, got {view!r}")
        return np.asarray(self.canvases[view].screenshot(flash=False))

    def mirror(self, view: str, layer: Layer) -> Image | None:
        """The copy of a main-viewer layer in a view (None when the views do not show it)."""
        record = self._mirrors.get(id(layer))
        return None if record is None else record.layers.get(view)

    def loading(self, view: str) -> bool:
        """Whether a view is showing a coarse stand-in while its level-0 plane is read."""
        return any(m.lazies[view].loading for m in self._mirrors.values() if view in m.lazies)

    def set_layout(self, layout: str) -> None:
        """Set ``layout`` on the view model of every plugin layer shown."""
        from ...viewmodel import model_for

        for record in self._mirrors.values():
            stack = stack_of(record.main)
            if stack is not None:
                model_for(stack).layout = layout

    # --- layers -------------------------------------------------------------------------------

    def _on_layers(self, event: Event | None = None) -> None:
        """Mirror the main viewer's 3D images (same order), drop the mirrors of removed ones."""
        if self._guard or not self.alive:
            return
        volumes = [layer for layer in self.viewer.layers if _ortho.is_volume(layer)]
        keep = {id(layer) for layer in volumes}
        for key in [k for k in self._mirrors if k not in keep]:
            self._drop(self._mirrors.pop(key))
        for layer in volumes:
            if id(layer) not in self._mirrors:
                self._mirrors[id(layer)] = self._make(layer)
        for view, model in self.models.items():
            wanted = [self._mirrors[id(layer)].layers[view] for layer in volumes]
            for i, mirror in enumerate(wanted):
                j = model.layers.index(mirror)
                if j != i:
                    model.layers.move(j, i)
        if not volumes:
            self._why_not()
        self._set_reference(_ortho.reference_layer(self.viewer))
        self.set_layout("ortho")
        self._update_rulers()

    def _make(self, layer: Image) -> _Mirror:
        record = _Mirror(main=layer)
        for view, model in self.models.items():
            was_empty = not any(_ortho.is_volume(x) for x in model.layers)
            levels, lazy = _ortho.mirror_levels(layer, view, None)
            mirror = _ortho.mirror_layer(layer, levels)
            if lazy is not None:
                bridge = _Bridge(lazy)
                bridge.loaded.connect(self._on_plane_loaded)
                lazy.on_loaded = bridge.emit
                record.lazies[view], record.bridges[view] = lazy, bridge
            model.layers.append(mirror)
            model.layers.selection.clear()
            model.dims.order = _ortho.view_order(model.dims.ndim, view)
            model.dims.axis_labels = self.viewer.dims.axis_labels[-model.dims.ndim :]
            self._copy_point(self.viewer, model)
            if was_empty:
                model.reset_view()
            record.layers[view] = mirror
        record.link = _ortho.LayerLink(layer, list(record.layers.values()))
        layer.events.scale.connect(self._on_geometry)
        layer.events.translate.connect(self._on_geometry)
        return record

    def _on_geometry(self, event: Event | None = None) -> None:
        """A main layer's voxel size or origin changed (mirrors follow via their link): the
        crosshair lines take the reference layer's grid again."""
        if self.alive and getattr(event, "source", None) is self._reference:
            self._set_reference(self._reference)

    def _drop(self, record: _Mirror) -> None:
        record.main.events.scale.disconnect(self._on_geometry)
        record.main.events.translate.disconnect(self._on_geometry)
        if record.link is not None:
            record.link.close()
        for lazy in record.lazies.values():
            lazy.close()
        for view, mirror in record.layers.items():
            model = self.models[view]
            if mirror in model.layers:
                model.layers.remove(mirror)

    def _set_reference(self, ref: Image | None) -> None:
        """The layer whose indices the crosshair uses; the crosshair lines follow its grid.

        The line layers are made once and hidden while there is no 3D image (removing a layer
        from inside a layer-list event would upset napari's own loop, e.g. ``layers.clear()``).
        """
        self._reference = ref
        if ref is None:
            for lines in self._crosshairs.values():
                lines.visible = False
            return
        if not self._crosshairs:
            targets = self._targets()
            for view, model in targets.items():
                lines = _ortho.make_crosshair(ref, name="crosshair")
                self._guard = True
                try:
                    active = model.layers.selection.active
                    model.layers.append(lines)
                    model.layers.selection.clear()
                    if active is not None and view == "xy":
                        model.layers.selection.active = active
                finally:
                    self._guard = False
                self._crosshairs[view] = lines
        for lines in self._crosshairs.values():
            scale, translate = tuple(ref.scale[-3:]), tuple(ref.translate[-3:])
            if tuple(lines.scale) != scale or tuple(lines.translate) != translate:
                lines.scale, lines.translate = scale, translate
                lines.units = tuple(ref.units[-3:])
            lines.visible = True
        self._update_lines()
        for view in self._crosshairs:
            self._fit_width(view)

    def _targets(self) -> dict[str, ViewerModel]:
        return {"xy": self.viewer, **self.models}

    def _on_zoom(self, event: Event | None = None) -> None:
        """A camera zoomed: keep that view's crosshair lines thin but visible."""
        source = getattr(event, "source", None)
        for view, model in self._targets().items():
            if model.scene.camera is source:
                self._fit_width(view)

    def _fit_width(self, view: str) -> None:
        lines = self._crosshairs.get(view)
        model = self._targets()[view]
        if lines is None:
            return
        scale = [lines.scale[a] for a in model.dims.displayed[-2:]]
        _ortho.set_width(lines, _ortho.line_width(model.scene.camera.zoom, scale))

    def _remove_crosshairs(self) -> None:
        targets = self._targets()
        self._guard = True
        try:
            for view, lines in self._crosshairs.items():
                if lines in targets[view].layers:
                    targets[view].layers.remove(lines)
        finally:
            self._guard = False
        self._crosshairs = {}

    def _why_not(self) -> None:
        """Say (once per layer) why the views are empty: no 3D image in the viewer."""
        from napari.layers import Image
        from napari.utils.notifications import show_warning

        for view, label in self.labels.items():
            label.setText(f"{TITLES[view][0]}: no 3D image to show")
        flat = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        if not flat or flat[-1] in self._warned:
            return  # an empty viewer needs no message
        self._warned.add(flat[-1])
        show_warning(
            f"Orthogonal views: layer {flat[-1]!r} is 2D (or RGB); the XZ and YZ views need "
            "a 3D image"
        )

    # --- crosshair ----------------------------------------------------------------------------

    def _on_main_point(self, event: Event | None = None) -> None:
        """The main viewer's slice moved (a step, a click, the model): the views follow."""
        if not self.alive:
            return
        for model in self.models.values():
            self._copy_point(self.viewer, model)
        self._update_lines()

    def _on_view_point(self, event: Event | None = None) -> None:
        """A view's own slider moved: the main viewer follows (and through it the model)."""
        if self._guard or not self.alive or event is None:
            return
        for model in self.models.values():
            if model.dims is event.source:
                self._copy_point(model, self.viewer, list(model.dims.not_displayed))

    def _copy_point(self, source: ViewerModel, target: ViewerModel, axes: Any = None) -> None:
        n = min(source.dims.ndim, target.dims.ndim)
        offset_s, offset_t = source.dims.ndim - n, target.dims.ndim - n
        pairs = [
            (a - offset_s + offset_t, float(source.dims.point[a]))
            for a in (axes if axes is not None else range(offset_s, source.dims.ndim))
            if a >= offset_s
        ]
        moved = [(a, v) for a, v in pairs if float(target.dims.point[a]) != v]
        if not moved:
            return
        self._guard = True
        try:
            target.dims.set_point([a for a, _ in moved], [v for _, v in moved])
        finally:
            self._guard = False

    def _update_lines(self) -> None:
        index = self.crosshair
        ref = self._reference
        if index is None or ref is None:
            return
        shape = ref.level_shapes[0][-3:] if ref.multiscale else ref.data.shape[-3:]
        for view, lines in self._crosshairs.items():
            _ortho.set_lines(lines, _ortho.crosshair_lines(index, shape, view))
        for view in self.models:
            self._update_label(view)

    def _update_label(self, view: str) -> None:
        title, axis = TITLES[view]
        index = self.crosshair
        if index is None:
            return
        at = index[_ortho.FIXED_AXIS[view]]
        note = " · loading full resolution…" if self.loading(view) else ""
        self.labels[view].setText(f"{title} · {axis} = {at}{note}")

    def _click(self, viewer: ViewerModel, event: Any) -> Generator[None, None, None]:
        """A click (press and release without a drag) moves the crosshair to that voxel."""
        if event.button != 1 or event.modifiers or viewer.dims.ndisplay != 2:
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return  # a layer tool (drawing, measuring) owns the click
        start = np.asarray(event.pos, float)
        yield
        while event.type == "mouse_move":
            if np.abs(np.asarray(event.pos, float) - start).max() > CLICK_SLOP:
                return
            yield
        ref = self._reference
        if ref is None:
            return
        self.crosshair = _ortho.world_to_index(ref, event.position)

    # --- window drag and ruler -----------------------------------------------------------------

    def _window_mode(self, on: bool) -> None:
        """Shift-W (or the panel's button) in any canvas switches the plain-drag mode in all."""
        for drag in self._drags:
            drag.enabled = on

    def _follow_ruler(self, found: Ruler) -> None:
        """The main viewer's ruler exists: the views measure whenever it does."""
        if not self.alive:
            return
        self._main_ruler = found
        found.mode_changed.connect(self._on_measure)
        self._update_rulers()

    def _update_rulers(self, *_: Any) -> None:
        """Give each view a ruler on its mirror of the main ruler's image, sharing its view
        model, in the main ruler's mode (made on first use; rebound after a layer swap)."""
        main = self._main_ruler
        if main is None or not self.alive:
            return
        record = self._ruler_record(main)
        for view, model in self.models.items():
            mirror = record.layers.get(view) if record is not None else None
            mine = self._rulers.get(view)
            if mirror is None or (mine is None and not main.measuring):
                if mine is not None:
                    mine.measuring = False
                continue
            if mine is None:
                mine = self._rulers[view] = ruler(model, image=mirror, model=main.model)
            elif mine.image is not mirror or mine.model is not main.model:
                mine.bind(mirror, main.model)
            mine.measuring = main.measuring  # (re)selects its layer while measuring
            if not main.measuring and model.layers.selection.active is mine.layer:
                model.layers.selection.clear()  # a plain drag may do window/level again

    def _ruler_record(self, main: Ruler) -> _Mirror | None:
        """The mirrored layer the main ruler measures on, or one of the same view model (the
        ruler may still hold a layer the pyramid build has just swapped out)."""
        from ...viewmodel import model_for

        records = list(self._mirrors.values())
        for record in records:
            if record.main is main.image:
                return record
        if main.model is not None:
            for record in reversed(records):
                stack = stack_of(record.main)
                if stack is not None and model_for(stack) is main.model:
                    return record
        return None

    # --- level-0 planes landing ---------------------------------------------------------------

    def _on_plane_loaded(self, index: int) -> None:
        """GUI thread: a level-0 plane was read; redraw the mirror that asked for it."""
        from napari.utils.notifications import show_warning

        bridge = self.sender()
        if not self.alive:
            return
        for record in self._mirrors.values():
            for view, b in record.bridges.items():
                if b is not bridge:
                    continue
                lazy = record.lazies[view]
                errors, lazy.errors[:] = list(lazy.errors), []
                if errors and view not in record.reported:  # once per view and layer
                    record.reported.add(view)
                    show_warning(
                        f"{TITLES[view][0]} view of {record.main.name!r}: cannot read the "
                        f"full-resolution plane ({errors[0]}); showing the coarser level"
                    )
                record.layers[view].refresh()
                self._update_label(view)

    def _close(self) -> None:
        """Let go of the main viewer and the views (the dock was closed or the viewer)."""
        if not self.alive:
            return
        self.alive = False
        viewer = self.viewer
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.disconnect(self._on_layers)
        viewer.layers.selection.events.active.disconnect(self._on_layers)
        viewer.dims.events.point.disconnect(self._on_main_point)
        viewer.scene.camera.events.zoom.disconnect(self._on_zoom)
        if self._on_click in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.remove(self._on_click)
        unwatch_ruler(viewer, self._on_ruler)
        if self._main_ruler is not None:
            self._main_ruler.mode_changed.disconnect(self._on_measure)
        for drag in self._drags:
            drag.toggled.disconnect(self._on_window_mode)
        self._drags = []
        self.set_layout("xy")
        for record in self._mirrors.values():
            self._drop(record)
        self._remove_crosshairs()
        self._mirrors.clear()
        for canvas in self.canvases.values():
            canvas.close()
        for model in self.models.values():
            model.layers.clear()
        ref = _VIEWS.get(viewer)
        if ref is not None and ref() is self:
            del _VIEWS[viewer]


def _weak_click(views: OrthogonalViews) -> Any:
    """A mouse-drag callback that forwards to ``views._click`` while the views live."""
    ref = weakref.ref(views)

    def on_click(viewer: ViewerModel, event: Any) -> Generator[None, None, None]:
        views = ref()
        if views is not None and views.alive:
            yield from views._click(viewer, event)

    return on_click


def _weak(views: OrthogonalViews, method: str) -> Any:
    """A callback to ``views.<method>`` that does not keep the views alive."""
    ref = weakref.ref(views)

    def call(*args: Any) -> None:
        views = ref()
        if views is not None and views.alive:
            getattr(views, method)(*args)

    return call


def _closer(views: OrthogonalViews) -> Any:
    """A ``destroyed`` slot that closes the views without keeping them alive."""
    ref = weakref.ref(views)

    def close(*_: Any) -> None:
        views = ref()
        if views is not None:
            views._close()

    return close
