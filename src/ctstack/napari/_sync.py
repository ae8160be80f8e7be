"""The napari face of the view model: a viewer and the models of its plugin layers, kept in step.

``sync_viewer(viewer)`` (idempotent, Qt-free: works on ``napari.components.ViewerModel``) binds
every plugin layer the viewer holds or receives to its stack's ``ctstack.viewmodel.ViewModel``:

- crosshair <-> ``viewer.dims.point`` (level-0 indices through the layer's own transform),
  both ways, behind a re-entrancy guard: a change fires one ``dims.events.point`` and one
  ``model.events.crosshair``, never an echo;
- window <-> ``layer.contrast_limits`` and colormap <-> ``layer.colormap``, both ways (a layer
  whose contrast is dragged sets the model's window, with ``window_preset`` None);
- level_3d -> ``layer.locked_data_level`` while the viewer shows 3D.

A layer that joins brings its state to the model: the model takes the viewer's current slice
and the layer's window and colormap (so opening a layer never changes how it looks); from then
on a change on either side reaches the other. Cameras stay per viewer.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._layer import apply_3d_level, stack_of

if TYPE_CHECKING:
    from napari.components import ViewerModel
    from napari.layers import Image, Layer
    from napari.utils.events import Event

    from ..viewmodel import ViewModel

_SYNCS: weakref.WeakKeyDictionary[ViewerModel, ViewerSync] = weakref.WeakKeyDictionary()


def sync_viewer(viewer: ViewerModel) -> ViewerSync:
    """The viewer's sync with the view models of its plugin layers, made on first use."""
    sync = _SYNCS.get(viewer)
    if sync is None:
        sync = _SYNCS[viewer] = ViewerSync(viewer)
    return sync


def track_3d_levels(viewer: ViewerModel) -> None:
    """Apply each plugin layer's 3D level whenever the viewer switches 2D/3D (``sync_viewer``)."""
    sync_viewer(viewer)


def set_3d_level(layer: Image, level: int | None) -> None:
    """Choose the level rendered in 3D (None: napari's default, the coarsest) for the layer's
    stack: its view model's ``level_3d``. Applied at once by the viewers that hold the layer
    (synced here if they were not yet: the synced ones, else napari's current viewer)."""
    from ..viewmodel import model_for

    stack = stack_of(layer)
    if stack is None:
        raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not a ctstack layer")
    model_for(stack).level_3d = level
    viewers = [v for v in list(_SYNCS.keys()) if layer in v.layers]
    if not viewers:
        current = _current_viewer()
        if current is not None and layer in current.layers:
            viewers = [current]
    for viewer in viewers:
        sync_viewer(viewer)._on_ndisplay()


def _current_viewer() -> ViewerModel | None:
    """napari's current viewer, if napari's viewer module is in use (None otherwise)."""
    try:
        from napari import current_viewer
    except ImportError:  # pragma: no cover - napari is this package's own dependency
        return None
    return current_viewer()


def _index(layer: Image, point: tuple[float, ...], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Level-0 (z, y, x) indices of the voxel under a world point (clamped to the shape)."""
    data = layer.world_to_data(point)[-3:]
    z, y, x = (
        min(max(math.floor(float(v) + 0.5 + 1e-6), 0), int(n) - 1)
        for v, n in zip(data, shape, strict=True)
    )
    return (z, y, x)


class _Link:
    """One model and the layers of one viewer that show its stack."""

    def __init__(self, sync: ViewerSync, model: ViewModel) -> None:
        self._sync = weakref.ref(sync)
        self.model = model
        self.layers: list[Image] = []
        self.pushing = False  # model -> layer in progress: the layers' own events are echoes
        events = model.events
        events.crosshair.connect(self.on_crosshair)
        events.window.connect(self.on_window)
        events.colormap.connect(self.on_colormap)
        events.level_3d.connect(self.on_level_3d)

    def close(self) -> None:
        events = self.model.events
        events.crosshair.disconnect(self.on_crosshair)
        events.window.disconnect(self.on_window)
        events.colormap.disconnect(self.on_colormap)
        events.level_3d.disconnect(self.on_level_3d)

    # model -> viewer

    def on_crosshair(self, value: tuple[int, int, int]) -> None:
        sync = self._sync()
        if sync is not None and self.layers:
            sync.push_crosshair(self)

    def on_window(self, window: tuple[float, float]) -> None:
        self._push("contrast_limits", window, lambda layer: _window_of(layer) != window)

    def on_colormap(self, name: str) -> None:
        self._push("colormap", name, lambda layer: layer.colormap.name != name)

    def on_level_3d(self, level: int | None) -> None:
        sync = self._sync()
        viewer = sync.viewer if sync is not None else None
        if viewer is not None:
            for layer in self.layers:
                apply_3d_level(layer, viewer.dims.ndisplay)

    def _push(self, attr: str, value: Any, differs: Callable[[Image], bool]) -> None:
        self.pushing = True
        try:
            for layer in self.layers:
                if differs(layer):
                    setattr(layer, attr, value)
        finally:
            self.pushing = False

    # layer -> model

    def on_layer_contrast(self, event: Event | _Event | None = None) -> None:
        layer = getattr(event, "source", None)
        if self.pushing or layer is None or layer not in self.layers:
            return
        window = _window_of(layer)
        if not self.model.has_window or window != self.model.window:
            self.model.window = window

    def on_layer_colormap(self, event: Event | _Event | None = None) -> None:
        layer = getattr(event, "source", None)
        if self.pushing or layer is None or layer not in self.layers:
            return
        self.model.colormap = layer.colormap.name

    def adopt(self, layer: Image) -> None:
        """A joining layer brings its window and colormap to the model."""
        self.on_layer_contrast(_Event(layer))
        self.on_layer_colormap(_Event(layer))


class _Event:
    """A stand-in for a layer event: just its ``source``."""

    def __init__(self, source: Image) -> None:
        self.source = source


def _window_of(layer: Image) -> tuple[float, float]:
    lo, hi = (float(v) for v in layer.contrast_limits)
    return (lo, hi)


class ViewerSync:
    """Keeps one viewer and the view models of its plugin layers in step (see the module)."""

    def __init__(self, viewer: ViewerModel) -> None:
        self._viewer = weakref.ref(viewer)
        self._links: dict[int, _Link] = {}  # id(model) -> link
        self._guard = False  # True while this sync moves dims or models itself
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.dims.events.point.connect(self._on_point)
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        for layer in list(viewer.layers):
            self.bind(layer)

    @property
    def viewer(self) -> ViewerModel | None:
        return self._viewer()

    def model_of(self, layer: Layer) -> ViewModel | None:
        for link in self._links.values():
            if layer in link.layers:
                return link.model
        return None

    # --- layers coming and going ---------------------------------------------------------------

    def bind(self, layer: Layer) -> None:
        """Tie a plugin layer to its stack's model (a no-op for other layers)."""
        from ..viewmodel import model_for

        stack = stack_of(layer)
        if stack is None or self.model_of(layer) is not None:
            return
        model = model_for(stack)
        link = self._links.get(id(model))
        if link is None:
            link = self._links[id(model)] = _Link(self, model)
        link.layers.append(layer)
        layer.events.contrast_limits.connect(link.on_layer_contrast)
        layer.events.colormap.connect(link.on_layer_colormap)
        link.adopt(layer)
        self._pull(link)
        viewer = self.viewer
        if viewer is not None:
            apply_3d_level(layer, viewer.dims.ndisplay)

    def unbind(self, layer: Layer) -> None:
        for key, link in list(self._links.items()):
            if layer in link.layers:
                link.layers.remove(layer)
                layer.events.contrast_limits.disconnect(link.on_layer_contrast)
                layer.events.colormap.disconnect(link.on_layer_colormap)
                if not link.layers:
                    link.close()
                    del self._links[key]

    def _on_inserted(self, event: Event) -> None:
        self.bind(event.value)

    def _on_removed(self, event: Event) -> None:
        self.unbind(event.value)

    # --- crosshair <-> dims --------------------------------------------------------------------

    def _on_point(self, event: Event | None = None) -> None:
        """The viewer's slice moved: every bound model follows (no echo back to dims)."""
        if self._guard:
            return
        for link in list(self._links.values()):
            self._pull(link)

    def _pull(self, link: _Link) -> None:
        viewer = self.viewer
        if viewer is None or not link.layers:
            return
        index = _index(link.layers[0], tuple(viewer.dims.point), link.model.shape)
        was, self._guard = self._guard, True
        try:
            link.model.crosshair = index
        finally:
            self._guard = was

    def push_crosshair(self, link: _Link) -> None:
        """A model's crosshair moved: move the viewer there, then the other models follow."""
        viewer = self.viewer
        if self._guard or viewer is None:
            return
        layer = link.layers[0]
        world = [float(v) for v in layer.data_to_world(link.model.crosshair)]
        ndim = viewer.dims.ndim
        axes = list(range(ndim - len(world), ndim))
        now = [float(viewer.dims.point[a]) for a in axes]
        if _index(layer, tuple(viewer.dims.point), link.model.shape) == link.model.crosshair:
            return  # the viewer already shows this voxel
        self._guard = True
        try:
            if now != world:
                viewer.dims.set_point(axes, world)
            for other in self._links.values():
                if other is not link and other.layers:
                    point = tuple(viewer.dims.point)
                    other.model.crosshair = _index(other.layers[0], point, other.model.shape)
        finally:
            self._guard = False

    # --- 2D / 3D -------------------------------------------------------------------------------

    def _on_ndisplay(self, event: Event | None = None) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        for link in self._links.values():
            for layer in link.layers:
                apply_3d_level(layer, viewer.dims.ndisplay)
