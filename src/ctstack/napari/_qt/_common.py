"""Pieces the dock widgets share: a worker-thread task with a cancellable progress bar, the one
error-handling path for background work (``report_failure``), and a base widget that follows
the plugin's current layer and its stack's view model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from .._layer import stack_of
from .._roi_model import model_for
from .._sync import sync_viewer

if TYPE_CHECKING:
    from napari.layers import Image
    from napari.qt.threading import FunctionWorker
    from napari.utils import cancelable_progress
    from napari.utils.events import Event

    import napari

    from ..._types import Progress
    from ...roi import ROI
    from ...stack import Stack
    from ...viewmodel import ViewModel

FORMATS = {
    "tiff": "TIFF slices (folder)",
    "png": "PNG slices (folder)",
    "bmp": "BMP slices (folder)",
    "tiff-stack": "one multi-page TIFF",
    "ome-zarr": "OME-Zarr (multiscale)",
}


def follow_layer_events(
    widget: QWidget, viewer: napari.viewer.Viewer, callback: Callable[..., None]
) -> None:
    """Call ``callback`` when the active layer changes or layers come and go, until the widget
    is destroyed (the viewer outlives a closed dock widget: its callbacks must not)."""
    events = (
        viewer.layers.selection.events.active,
        viewer.layers.events.inserted,
        viewer.layers.events.removed,
    )
    for event in events:
        event.connect(callback)

    def disconnect() -> None:
        for event in events:
            event.disconnect(callback)

    widget.destroyed.connect(disconnect)


def format_combo() -> QComboBox:
    """A combo box of the export formats (label shown, format key as item data)."""
    combo = QComboBox()
    for key, text in FORMATS.items():
        combo.addItem(text, key)
    return combo


def folder_picker(parent: QWidget, title: str) -> tuple[QLineEdit, QHBoxLayout]:
    """An editable output folder (home by default) with a "..." button opening a dialog."""
    field = QLineEdit(str(Path.home()))
    browse = QPushButton("…")
    browse.setMaximumWidth(32)

    def pick() -> None:
        folder = QFileDialog.getExistingDirectory(parent, title, field.text())
        if folder:
            field.setText(folder)

    browse.clicked.connect(pick)
    row = QHBoxLayout()
    row.addWidget(field)
    row.addWidget(browse)
    return field, row


def report_failure(
    exc: BaseException, action: str, where: Any, label: str = "", cancelled_note: str = ""
) -> str:
    """The one way background work ends badly: one napari notification, and a status text.

    A cancel (``Cancelled``) is news, not an error: ``<label>: <action> cancelled<note>`` as
    info. Anything else is ``<label>: <action> failed: <message>`` as an error, the message
    naming the file (:func:`error_text`). Returns the text for the widget's status line.
    """
    from napari.utils.notifications import show_error, show_info

    from ...errors import Cancelled

    prefix = f"{label}: " if label else ""
    if isinstance(exc, Cancelled):
        text = f"{action} cancelled{cancelled_note}"
        show_info(prefix + text)
        return text
    text = f"{action} failed: {error_text(exc, where)}"
    show_error(prefix + text)
    return text


def commit_model(model: ViewModel) -> Path | None:
    """Commit the view model's ROI and threshold to roi.json; a failure is a notification."""
    from napari.utils.notifications import show_error

    try:
        return model.commit()
    except Exception as exc:
        where = model.stack.path if model.stack is not None else "roi.json"
        show_error(f"cannot save the ROI: {error_text(exc, where)}")
        return None


class Task(QObject):
    """One engine call in a worker thread, with a cancellable napari progress bar.

    ``fn(progress, cancel)`` runs in the worker; on the main thread afterwards either
    ``done(result)`` fires, or the failure is reported once (:func:`report_failure`, with
    ``action``, ``where`` and ``label``) and ``failed(status text)`` fires. The worker never
    raises, so nothing ends as a bare traceback.
    """

    progressed = Signal(int, int)
    done = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        fn: Callable[[Progress, threading.Event], Any],
        desc: str,
        action: str,
        where: Any,
        label: str = "",
        cancelled_note: str = "",
    ) -> None:
        super().__init__()
        self.fn = fn
        self.desc = desc
        self.failure = (action, where, label, cancelled_note)
        self.error: BaseException | None = None
        self.cancel_event = threading.Event()
        self.pbar: cancelable_progress | None = None
        self.worker: FunctionWorker | None = None
        self.running = False
        self.progressed.connect(self._on_progress)

    def start(self) -> Task:
        from napari.qt.threading import create_worker
        from napari.utils import cancelable_progress

        def report(done: int, total: int) -> None:  # worker thread: a queued Qt signal
            self.progressed.emit(int(done), int(total))

        def run() -> tuple[Any, BaseException | None]:
            try:
                return self.fn(report, self.cancel_event), None
            except BaseException as exc:
                return None, exc

        self.pbar = cancelable_progress(
            total=0, desc=self.desc, cancel_callback=self.cancel_event.set
        )
        self.worker = worker = create_worker(run, _start_thread=False)
        worker.returned.connect(self._on_returned)
        self.running = True
        worker.start()
        return self

    def cancel(self) -> None:
        """Ask the engine to stop; it removes its partial output and raises Cancelled."""
        self.cancel_event.set()

    def report(self, done: int, total: int) -> None:
        """Move the progress bar (main thread)."""
        self._on_progress(done, total)

    def _on_progress(self, done: int, total: int) -> None:
        if self.pbar is not None:
            if self.pbar.total != total:
                self.pbar.total = total
            self.pbar.n = done
            self.pbar.refresh()

    def _on_returned(self, outcome: tuple[Any, BaseException | None]) -> None:
        result, exc = outcome
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
        self.running = False
        if exc is None:
            self.done.emit(result)
        else:
            self.error = exc
            self.failed.emit(report_failure(exc, *self.failure))


def error_text(exc: BaseException, what: Any) -> str:
    """An engine error's own message (it names the file), else ``what: Type: message``."""
    from ...errors import CTStackError

    if isinstance(exc, CTStackError):
        return str(exc)
    return f"{what}: {type(exc).__name__}: {exc}"


def current_layer(viewer: napari.viewer.Viewer, name: str | None = None) -> Image | None:
    """The plugin layer called ``name`` if present, else the active one, else the topmost."""
    layers = [layer for layer in viewer.layers if stack_of(layer) is not None]
    if name is not None:
        for layer in layers:
            if layer.name == name:
                return layer
    active = viewer.layers.selection.active
    if stack_of(active) is not None:
        return active
    return layers[-1] if layers else None


class LayerFollower(QWidget):
    """Base of the dock widgets: follows the active plugin layer, and finds it again by name
    when it is replaced (the pyramid swap puts a multiscale layer in its place). ``model`` is
    the view model of the layer's stack; its ROI and threshold changes call ``_roi_changed``
    and ``_threshold_changed``, whoever made them."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.layer: Image | None = None
        self.stack: Stack | None = None
        self.model: ViewModel | None = None
        sync_viewer(napari_viewer)
        follow_layer_events(self, napari_viewer, self._follow)
        watched: dict[str, Any] = {}  # the model listened to; let go when the widget dies
        self._watched = watched

        def release() -> None:
            _unwatch(watched)

        self.destroyed.connect(release)

    def _follow(self, event: Event | None = None) -> None:
        """Re-find the layer: a new active plugin layer wins, else the same name, else the top."""
        active = self.viewer.layers.selection.active
        if stack_of(active) is not None:
            layer = active
        else:
            layer = current_layer(self.viewer, self.layer.name if self.layer is not None else None)
        stack = stack_of(layer)
        same_stack = stack is self.stack
        self.layer = layer
        if not same_stack:
            _unwatch(self._watched)
            self.stack = stack
            self.model = model_for(stack) if stack is not None else None
            if self.model is not None:
                _watch(self._watched, self.model, self._roi_changed, self._threshold_changed)
        self.stack_changed(same_stack)

    def stack_changed(self, same_stack: bool) -> None:
        """Called after the followed layer changed (``same_stack``: only the layer object)."""

    def _roi_changed(self, roi: ROI) -> None:
        """Called when the shared ROI of the current stack changes."""

    def _threshold_changed(self, value: float | None) -> None:
        """Called when the shared threshold of the current stack changes."""


def _watch(
    watched: dict[str, Any],
    model: ViewModel,
    on_roi: Callable[[ROI], None],
    on_threshold: Callable[[float | None], None],
) -> None:
    model.events.roi.connect(on_roi)
    model.events.threshold.connect(on_threshold)
    watched.update(model=model, roi=on_roi, threshold=on_threshold)


def _unwatch(watched: dict[str, Any]) -> None:
    model = watched.pop("model", None)
    if model is not None:
        model.events.roi.disconnect(watched.pop("roi"))
        model.events.threshold.disconnect(watched.pop("threshold"))
