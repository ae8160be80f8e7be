"""The Crop widget: an XY box on a Shapes layer, a Z range, numeric fields, and the auto ROI.

The box is drawn or dragged at any zoom and pyramid level; it maps to level-0 voxels through
the image layer's transforms (``_roi_model``) and snaps to the voxel edges. The ROI is the
stack's view model's: it is committed to the stack's ROI file when an edit is complete (a box
drawn or released, a slider released, a field entered, a button), and restored from it when
the stack is reopened.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
)

from .._roi_model import box_to_yx, describe, yx_to_box
from ._common import LayerFollower, Task, commit_model

if TYPE_CHECKING:
    from napari.layers import Shapes
    from napari.utils.events import Event

    import napari

    from ..._types import Progress
    from ...roi import ROI, Selection
    from ...stack import Stack

BOX_COLOR = "yellow"


class CropWidget(LayerFollower):
    """Edits the current stack's ROI: box on a Shapes layer, Z sliders, fields, auto, save."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.shapes: Shapes | None = None
        self.task: Task | None = None
        self._updating = False
        self._making_shapes = False

        self.title = QLabel("-")
        self.title.setWordWrap(True)
        self.z_start_slider = QSlider(Qt.Orientation.Horizontal)
        self.z_stop_slider = QSlider(Qt.Orientation.Horizontal)
        self.fields = {f"{a}{end}": QSpinBox() for a in "zyx" for end in ("0", "1")}
        self.z_start_here = QPushButton("start at current slice")
        self.z_stop_here = QPushButton("end at current slice")
        self.draw_button = QPushButton("Draw box")
        self.draw_button.setToolTip("draw a rectangle on the crop layer (replaces the box)")
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("propose a box around the object (Otsu threshold)")
        self.full_button = QPushButton("Full volume")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        grid = QGridLayout()
        grid.addWidget(QLabel("from"), 0, 1)
        grid.addWidget(QLabel("to (excl.)"), 0, 2)
        for row, axis in enumerate("zyx", start=1):
            grid.addWidget(QLabel(axis), row, 0)
            grid.addWidget(self.fields[f"{axis}0"], row, 1)
            grid.addWidget(self.fields[f"{axis}1"], row, 2)
        grid.addWidget(QLabel("z start"), 4, 0)
        grid.addWidget(self.z_start_slider, 4, 1, 1, 2)
        grid.addWidget(QLabel("z end"), 5, 0)
        grid.addWidget(self.z_stop_slider, 5, 1, 1, 2)
        here = QHBoxLayout()
        here.addWidget(self.z_start_here)
        here.addWidget(self.z_stop_here)
        buttons = QHBoxLayout()
        for b in (self.draw_button, self.auto_button, self.full_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(grid)
        layout.addLayout(here)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        for box in self.fields.values():
            box.setKeyboardTracking(False)  # a typed number counts when entered, not per key
            box.valueChanged.connect(self._fields_edited)
        self.z_start_slider.valueChanged.connect(lambda v: self._slider_moved(0, v))
        self.z_stop_slider.valueChanged.connect(lambda v: self._slider_moved(1, v))
        self.z_start_slider.sliderReleased.connect(self.save)
        self.z_stop_slider.sliderReleased.connect(self.save)
        self.z_start_here.clicked.connect(self.start_at_current_slice)
        self.z_stop_here.clicked.connect(self.end_at_current_slice)
        self.draw_button.clicked.connect(self.draw)
        self.auto_button.clicked.connect(self.auto)
        self.full_button.clicked.connect(self.full)
        self._follow()

    # --- following the layer --------------------------------------------------------------

    def stack_changed(self, same_stack: bool) -> None:
        stack, model = self.stack, self.model
        widgets = (
            *self.fields.values(),
            self.z_start_slider,
            self.z_stop_slider,
            self.z_start_here,
            self.z_stop_here,
            self.draw_button,
            self.auto_button,
            self.full_button,
        )
        for w in widgets:
            w.setEnabled(stack is not None and self.task is None)
        if stack is None or model is None:  # both or neither
            self.title.setText("no CT stack layer")
            return
        if not same_stack:
            z, y, x = stack.shape
            self._updating = True
            try:
                for axis, n in zip("zyx", (z, y, x), strict=True):
                    self.fields[f"{axis}0"].setRange(0, n - 1)
                    self.fields[f"{axis}1"].setRange(1, n)
                self.z_start_slider.setRange(0, z - 1)
                self.z_stop_slider.setRange(1, z)
            finally:
                self._updating = False
            restored = model.restored
            self.status.setText(
                f"restored the saved ROI ({describe(model.roi)})"
                if restored
                else model.load_error or "no saved ROI: full volume"
            )
        self.title.setText(f"{stack.name}: {' x '.join(map(str, stack.shape))} (z, y, x)")
        if not same_stack:
            self.ensure_shapes()
        self._show(model.roi, create=False)  # a box the user deleted stays deleted

    def ensure_shapes(self) -> Shapes | None:
        """The crop-box Shapes layer of the current stack (2D, so it shows on every slice)."""
        layer = self.layer
        if layer is None or self._making_shapes:
            return self.shapes
        name = f"{layer.name} crop"
        if (
            self.shapes is not None
            and self.shapes in self.viewer.layers
            and self.shapes.name == name
        ):
            return self.shapes
        if self.shapes is not None:
            self.shapes.events.data.disconnect(self._shapes_edited)
            self.shapes = None
        if name in self.viewer.layers:
            shapes = self.viewer.layers[name]
        else:
            active = self.viewer.layers.selection.active
            self._making_shapes = True
            try:
                shapes = self.viewer.add_shapes(
                    name=name,
                    ndim=2,
                    scale=tuple(layer.scale[-2:]),
                    translate=tuple(layer.translate[-2:]),
                    units=tuple(layer.units[-2:]),
                    edge_color=BOX_COLOR,
                    face_color="transparent",
                    edge_width=1,
                )
                if active is not None:  # keep the image layer the one the widgets follow
                    self.viewer.layers.selection.active = active
            finally:
                self._making_shapes = False
        self.shapes = shapes
        shapes.events.data.connect(self._shapes_edited)
        return shapes

    # --- ROI -> widgets ---------------------------------------------------------------------

    def _roi_changed(self, roi: ROI) -> None:
        self._show(roi)

    def _show(self, roi: ROI, create: bool = True) -> None:
        """Put the ROI into the fields, sliders and box without echoing back."""
        self._updating = True
        try:
            for axis, (a, b) in zip("zyx", (roi.z, roi.y, roi.x), strict=True):
                self.fields[f"{axis}0"].setValue(a)
                self.fields[f"{axis}1"].setValue(b)
            self.z_start_slider.setValue(roi.z[0])
            self.z_stop_slider.setValue(roi.z[1])
            self._draw_box(roi, create)
        finally:
            self._updating = False

    def _draw_box(self, roi: ROI, create: bool = True) -> None:
        if create:
            shapes = self.ensure_shapes()
        else:
            shapes = self.shapes if self.shapes in self.viewer.layers else None
        if shapes is None or self.layer is None:
            return
        corners = yx_to_box(self.layer, roi.y, roi.x)
        rect = np.array([shapes.world_to_data(c) for c in corners])
        current = shapes.data
        if len(current) == 1 and np.allclose(current[0], rect):
            return
        shapes.data = [(rect, "rectangle")]

    # --- widgets -> ROI ---------------------------------------------------------------------

    def _fields_edited(self, *_: Any) -> None:
        if self._updating or self.model is None:
            return
        f = {k: box.value() for k, box in self.fields.items()}
        self.model.set_region(
            z=(f["z0"], f["z1"]), y=(f["y0"], f["y1"]), x=(f["x0"], f["x1"]), commit=False
        )
        self.save()

    def _slider_moved(self, end: int, value: int) -> None:
        if self._updating or self.model is None:
            return
        z0, z1 = self.model.roi.z
        if end == 0:
            z0, z1 = value, max(z1, value + 1)
        else:
            z0, z1 = min(z0, value - 1), value
        self.model.set_region(z=(z0, z1), commit=False)
        slider = self.z_start_slider if end == 0 else self.z_stop_slider
        if not slider.isSliderDown():  # a drag commits on release (sliderReleased)
            self.save()

    def _shapes_edited(self, event: Event) -> None:
        """A rectangle was drawn, moved or resized: its box (any shape's bounds) becomes the ROI."""
        if self._updating or self.model is None or self.layer is None:
            return
        if str(getattr(event, "action", "changed")) not in ("added", "changed"):
            return
        shapes = self.shapes
        if shapes is None or len(shapes.data) == 0:
            return
        indices = list(getattr(event, "data_indices", ()) or ())
        index = indices[-1] if indices and 0 <= indices[-1] < len(shapes.data) else -1
        corners = np.array([shapes.data_to_world(v) for v in shapes.data[index]])
        self.set_box_world(corners)

    def set_box_world(self, corners_world: np.ndarray) -> None:
        """Set the ROI's y and x ranges from a box given in world coordinates (a finished draw
        or drag: committed at once)."""
        layer, stack, model = self.layer, self.stack, self.model
        if layer is None or stack is None or model is None:
            return
        y, x = box_to_yx(layer, corners_world, stack.shape)
        model.set_region(y=y, x=x, commit=False)
        self.save()
        QTimer.singleShot(0, self._snap)  # after napari has finished its own mouse handling

    def _snap(self) -> None:
        """Leave one box on the crop layer, on the voxel edges of the ROI."""
        if self.model is None:
            return
        self._updating = True
        try:
            self._draw_box(self.model.roi)
        finally:
            self._updating = False

    def current_slice(self) -> int:
        """The level-0 z index of the slice the viewer shows (the model's crosshair)."""
        if self.model is None:
            raise ValueError("no CT stack layer: there is no current slice")
        return self.model.crosshair[0]

    def start_at_current_slice(self) -> None:
        model = self.model
        if model is None:
            return
        z = self.current_slice()
        model.set_region(z=(z, max(model.roi.z[1], z + 1)), commit=False)
        self.save()

    def end_at_current_slice(self) -> None:
        model = self.model
        if model is None:
            return
        z = self.current_slice()
        model.set_region(z=(min(model.roi.z[0], z), z + 1), commit=False)
        self.save()

    def draw(self) -> None:
        """Select the crop layer in rectangle mode: the next rectangle drawn replaces the box."""
        shapes = self.ensure_shapes()
        if shapes is None:
            return
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"

    def full(self) -> None:
        if self.stack is not None and self.model is not None:
            from ...roi import ROI

            roi = ROI.full(self.stack, "full volume")
            roi.source = "user"
            self.model.set_roi(roi, commit=False)
            self.save()

    def auto(self) -> Task | None:
        """Propose an ROI and threshold with ``suggest`` in a worker (it may build the pyramid
        first); the proposal goes into the view model and is committed."""
        from ...roi import suggest

        if self.stack is None or self.task is not None:
            return None
        stack = self.stack

        def run(progress: Progress, cancel: threading.Event) -> Selection:
            return suggest(stack, progress=progress, cancel=cancel)

        self.task = Task(
            run, f"{stack.name}: finding the object", "auto ROI", stack.path, stack.name
        )
        self.task.done.connect(lambda found: self._auto_done(stack, found))
        self.task.failed.connect(self._auto_failed)
        self.auto_button.setEnabled(False)
        self.status.setText("finding the object …")
        return self.task.start()

    def _auto_done(self, stack: Stack, found: Selection) -> None:
        from napari.utils.notifications import show_info

        from .._roi_model import model_for

        self.task = None
        self.auto_button.setEnabled(self.stack is not None)
        model = model_for(stack)
        model.set_selection(found, commit=False)
        commit_model(model)
        self.status.setText(found.roi.reason)
        show_info(f"{stack.name}: {found.roi.reason}")

    def _auto_failed(self, text: str) -> None:
        self.task = None
        self.auto_button.setEnabled(self.stack is not None)
        self.status.setText(text)

    # --- saving -----------------------------------------------------------------------------

    def save(self) -> None:
        """Commit the model's ROI to its stack's ROI file now (errors become a notification)."""
        model = self.model
        if model is None or not model.dirty:
            return
        path = commit_model(model)
        if path is not None:
            self.status.setText(f"ROI {describe(model.roi)} saved to {path}")
