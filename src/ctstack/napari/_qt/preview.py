"""The 3D preview widget: napari's iso rendering of the ROI at a chosen level, a threshold
slider driving it live, and "make mesh" adding the engine's surface as a Surface layer.

The ROI's voxels are read in a worker; the preview layer sits where the ROI is (scale and
translate of the level, from the engine's ``make_region``), so it lines up with the scan. The
ROI and the threshold are the stack's view model's (a slider drag commits on release); the
mesh comes back from the engine in memory (``ctstack.mesh`` without ``out``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
)

from .._roi_model import describe, roi_on_level
from ._common import LayerFollower, Task, commit_model

if TYPE_CHECKING:
    from napari.layers import Image, Surface

    import napari

    from ..._export.regions import Region
    from ..._mesh import Mesh
    from ..._types import Progress
    from ...roi import ROI
    from ...stack import Stack

STEPS = 1000  # threshold slider resolution
MAX_PREVIEW = 256**3  # voxels: the default level is the finest whose ROI footprint fits
MAX_TEXTURE = 2048


class PreviewWidget(LayerFollower):
    """Iso-surface preview of the current ROI and a mesh as a Surface layer in world units."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.task: Task | None = None
        self.preview: Image | None = None  # the iso Image layer
        self.surface: Surface | None = None  # the last Surface layer made
        self._range = (0.0, 1.0)
        self._updating = False

        self.region = QLabel("-")
        self.region.setWordWrap(True)
        self.level = QComboBox()
        self.level.setToolTip("pyramid level to render (coarser is faster)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, STEPS)
        self.value = QDoubleSpinBox()
        self.value.setDecimals(3)
        self.value.setRange(-1e12, 1e12)
        self.show_button = QPushButton("Show preview")
        self.mesh_button = QPushButton("Make mesh")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.slider)
        row.addWidget(self.value)
        form = QFormLayout()
        form.addRow("region", self.region)
        form.addRow("level", self.level)
        form.addRow("threshold", row)
        buttons = QHBoxLayout()
        for b in (self.show_button, self.mesh_button, self.cancel_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.slider.valueChanged.connect(self._slider_moved)
        self.slider.sliderReleased.connect(self._commit)
        self.value.setKeyboardTracking(False)  # a typed value counts when entered
        self.value.valueChanged.connect(self._value_typed)
        self.show_button.clicked.connect(self.show_preview)
        self.mesh_button.clicked.connect(self.make_mesh)
        self.cancel_button.clicked.connect(self.cancel)
        self._follow()

    # --- following ------------------------------------------------------------------------

    def stack_changed(self, same_stack: bool) -> None:
        layer, model = self.layer, self.model
        ok = self.stack is not None and layer is not None and model is not None  # all or none
        for w in (self.level, self.slider, self.value, self.show_button, self.mesh_button):
            w.setEnabled(ok and self.task is None)
        if not ok or layer is None or model is None:
            self.region.setText("-")
            return
        self._fill_levels()
        if not same_stack:
            lo, hi = (float(v) for v in layer.contrast_limits)
            self.set_range(lo, hi)
            thr = model.threshold
            self.set_threshold(thr if thr is not None else (lo + hi) / 2, store=False)
        self._roi_changed(model.roi)

    def _roi_changed(self, roi: ROI) -> None:
        self.region.setText(f"{describe(roi)} ({roi.source})")

    def _threshold_changed(self, value: float | None) -> None:
        if value is not None and not self._updating:
            self.set_threshold(value, store=False)

    def level_shapes(self) -> list[tuple[int, int, int]]:
        if self.stack is None:
            return []
        return [_shape3(a.shape) for a in self.stack.levels]

    def _fill_levels(self) -> None:
        """Levels whose ROI footprint fits a 3D texture; default: the finest under MAX_PREVIEW."""
        if self.model is None:
            return
        roi = self.model.roi
        chosen = self.level.currentData()
        shapes = self.level_shapes()
        self.level.blockSignals(True)
        self.level.clear()
        default = None
        for i, shape in enumerate(shapes):
            sub = [b - a for a, b in roi_on_level(roi, i, shape)]
            if max(sub) > MAX_TEXTURE:
                continue
            self.level.addItem(f"{i}: ROI {' x '.join(map(str, sub))}", i)
            if default is None and int(np.prod(sub)) <= MAX_PREVIEW:
                default = i
        index = self.level.findData(chosen if chosen is not None else default)
        if index < 0:
            index = self.level.findData(default)
        self.level.setCurrentIndex(max(index, 0))
        self.level.blockSignals(False)

    # --- threshold ------------------------------------------------------------------------

    def set_range(self, lo: float, hi: float) -> None:
        self._range = (lo, hi if hi > lo else lo + 1.0)

    def threshold(self) -> float:
        return float(self.value.value())

    def set_threshold(self, value: float, store: bool = True) -> None:
        """Move slider and field to ``value``; drive the iso layer and (``store``) the model's
        threshold, committed at once unless the slider is being dragged."""
        lo, hi = self._range
        self._updating = True
        try:
            self.value.setValue(value)
            self.slider.setValue(min(max(round((value - lo) / (hi - lo) * STEPS), 0), STEPS))
        finally:
            self._updating = False
        if self.preview is not None and self.preview in self.viewer.layers:
            self.preview.iso_threshold = float(value)
        if store and self.model is not None:
            self._updating = True
            try:
                self.model.set_threshold(float(value), commit=False)
            finally:
                self._updating = False
            if not self.slider.isSliderDown():
                self._commit()

    def _slider_moved(self, pos: int) -> None:
        if not self._updating:
            lo, hi = self._range
            self.set_threshold(lo + (hi - lo) * pos / STEPS)

    def _value_typed(self, value: float) -> None:
        if not self._updating:
            self.set_threshold(value)

    def _commit(self) -> None:
        if self.model is not None and self.model.dirty:
            commit_model(self.model)

    # --- running --------------------------------------------------------------------------

    def _run(
        self,
        fn: Callable[[Progress, threading.Event], Any],
        desc: str,
        done: Callable[[Any], None],
    ) -> Task | None:
        if self.stack is None or self.task is not None:
            return None
        stack = self.stack
        self.task = Task(fn, f"{stack.name}: {desc}", desc, stack.path, stack.name)
        self.task.done.connect(done)
        self.task.failed.connect(self._finish)
        for w in (self.show_button, self.mesh_button):
            w.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{desc} …")
        return self.task.start()

    def _finish(self, text: str) -> None:
        self.task = None
        for w in (self.show_button, self.mesh_button):
            w.setEnabled(self.stack is not None)
        self.cancel_button.setEnabled(False)
        self.status.setText(text)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def show_preview(self) -> Task | None:
        """Read the ROI at the chosen level in a worker, then show it with iso rendering."""
        from ..._export.regions import make_region

        stack, model, level = self.stack, self.model, self.level.currentData() or 0
        if stack is None or model is None:
            return None
        zs, ys, xs = (model.roi.slices[a] for a in "zyx")

        def run(progress: Progress, cancel: threading.Event) -> tuple[Region, np.ndarray]:
            shape = _shape3(stack.levels[level].shape)
            region = make_region(stack, zs, ys, xs, level=level, level_shape=shape)
            return region, np.asarray(stack.levels[level][region.slices].compute())

        def shown(out: tuple[Region, np.ndarray]) -> None:
            self._show(stack, *out)

        return self._run(run, "reading the ROI", shown)

    def _show(self, stack: Stack, region: Region, data: np.ndarray) -> None:
        name = f"{stack.name} preview"
        finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        self.set_range(lo, hi)
        kwargs = {
            "scale": region.voxel_size,
            "translate": region.origin,
            "rendering": "iso",
            "iso_threshold": self.threshold(),
            "contrast_limits": (lo, hi),
            "colormap": "bone",
        }
        if self.preview is not None and self.preview in self.viewer.layers:
            self.preview.data = data
            for key, value in kwargs.items():
                setattr(self.preview, key, value)
        else:
            self.preview = self.viewer.add_image(data, name=name, units=(stack.unit,) * 3, **kwargs)
        self.set_threshold(self.threshold(), store=False)
        self.viewer.dims.ndisplay = 3
        self._finish(f"preview of {region.describe()}: {' x '.join(map(str, data.shape))}")

    def make_mesh(self) -> Task | None:
        """Run the engine's mesh on the ROI (at the level, threshold) and add a Surface layer."""
        from ..._mesh import mesh

        stack, model = self.stack, self.model
        if stack is None or model is None:
            return None
        zs, ys, xs = (model.roi.slices[a] for a in "zyx")
        level, threshold = self.level.currentData() or 0, self.threshold()

        def run(progress: Progress, cancel: threading.Event) -> Mesh:
            return mesh(stack, None, threshold, level, zs, ys, xs, progress=progress, cancel=cancel)

        return self._run(
            run, "making the mesh", lambda found: self._mesh_done(stack, threshold, found)
        )

    def _mesh_done(self, stack: Stack, threshold: float, found: Mesh) -> None:
        from napari.utils.notifications import show_info, show_warning

        verts, faces = found.zyx, found.faces  # (x, y, z) -> napari's (z, y, x)
        if verts is None or faces is None or len(faces) == 0:  # a mesh in memory keeps both
            self._finish("the mesh is empty: no voxel crosses this threshold in the ROI")
            show_warning(f"{stack.name}: no surface at threshold {threshold:g} in the ROI")
            return
        self.surface = self.viewer.add_surface(
            (verts, faces),
            name=f"{stack.name} mesh {threshold:g}",
            units=(stack.unit,) * 3,
            shading="smooth",
        )
        text = (
            f"mesh at threshold {threshold:g}: {len(verts)} vertices, {len(faces)} faces, "
            f"{found.region}"
        )
        self._finish(text)
        show_info(f"{stack.name}: {text}")


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    z, y, x = (int(n) for n in shape)
    return (z, y, x)
