"""The Stack panel: what was opened, its voxel size, other series, the pyramid and 3D detail,
the window (presets and drag) and the ruler.

A thin face over the Stack, its view model (3D level, window) and the build controller: every
action calls the engine or the Qt-free model (``_layer.py``, ``_window.py``, ``_ruler.py``);
the panel follows the active plugin layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._layer import META_KEY, chosen_3d_level, levels_for_3d, max_size_setting, stack_of
from .._sync import set_3d_level
from .._window import WINDOW_KEY, WINDOW_MODIFIER, apply_window, enable_window_drag, preset_problem
from ._common import follow_layer_events
from .build import controller_for
from .ruler import RulerBox

if TYPE_CHECKING:
    from napari.layers import Image, Layer
    from napari.utils.events import Event

    import napari

    from ...stack import Stack
    from ...viewmodel import ViewModel
    from .build import Job

PLUGIN = "napari-ctstack"


UNIT_SYMBOLS = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "centimeter": "cm"}


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out, start = [], None
    for i, v in enumerate(values):
        start = v if start is None else start
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def max_texture_3d() -> int | None:
    """The GPU's largest 3D texture edge (None when it cannot be asked).

    napari has no public way to ask the GPU's limits; its private vispy helper is the one
    place that knows, so this function is the plugin's one use of ``napari._vispy``.
    """
    try:
        from napari._vispy.utils.gl import get_max_texture_sizes

        return get_max_texture_sizes()[1]
    except Exception:
        return None


class StackPanel(QWidget):
    """Dock widget showing the active CT stack's facts, with pyramid and 3D-detail controls."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = controller_for(napari_viewer)
        self.layer: Image | None = None
        self._updating = False

        self.open_button = QPushButton("Open folder…")
        self.open_button.clicked.connect(self._choose_folder)

        self.name = QLabel("-")
        self.pattern = QLabel("-")
        self.count = QLabel("-")
        self.shape = QLabel("-")
        self.dtype = QLabel("-")
        self.missing = QLabel("-")
        self.bad = QLabel("-")
        for label in (self.name, self.pattern, self.missing, self.bad):
            label.setWordWrap(True)
        self.voxel = [QDoubleSpinBox() for _ in range(3)]
        voxel_row = QHBoxLayout()
        for axis, box in zip("zyx", self.voxel, strict=True):
            box.setDecimals(6)
            box.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
            box.setRange(1e-9, 1e9)
            box.setToolTip(f"voxel size along {axis}")
            box.editingFinished.connect(self._voxel_edited)
            voxel_row.addWidget(box)
        self.unit = QLabel("")
        voxel_row.addWidget(self.unit)
        self.series = QComboBox()
        self.series.setToolTip("other series in this folder: choosing one reopens with it")
        self.series.activated.connect(self._series_chosen)

        facts = QFormLayout()
        for text, widget in (
            ("name", self.name),
            ("pattern", self.pattern),
            ("files", self.count),
            ("shape (z, y, x)", self.shape),
            ("dtype", self.dtype),
            ("voxel (z, y, x)", voxel_row),
            ("missing", self.missing),
            ("bad slices", self.bad),
            ("series", self.series),
        ):
            facts.addRow(text, widget)

        self.status = QLabel("-")
        self.status.setWordWrap(True)
        self.max_size = QSpinBox()
        self.max_size.setRange(16, 8192)
        self.max_size.setValue(max_size_setting())
        self.max_size.setToolTip("levels halve until the largest axis is at most this")
        self.build_button = QPushButton("Build")
        self.cancel_button = QPushButton("Cancel")
        self.rebuild_button = QPushButton("Rebuild")
        self.build_button.clicked.connect(lambda: self._build(False))
        self.rebuild_button.clicked.connect(lambda: self._build(True))
        self.cancel_button.clicked.connect(self._cancel)
        buttons = QHBoxLayout()
        for b in (self.build_button, self.cancel_button, self.rebuild_button):
            buttons.addWidget(b)
        self.detail = QComboBox()
        self.detail.setToolTip("the pyramid level rendered in 3D (only levels fitting the GPU)")
        self.detail.activated.connect(self._detail_chosen)
        pyramid = QFormLayout()
        pyramid.addRow("status", self.status)
        pyramid.addRow("max size", self.max_size)
        pyramid.addRow(buttons)
        pyramid.addRow("3D detail", self.detail)
        pyramid_box = QGroupBox("Pyramid")
        pyramid_box.setLayout(pyramid)

        self.window_presets = QComboBox()
        self.window_presets.setToolTip(
            "contrast presets: percentiles of the coarsest level; CT ones in HU"
        )
        self.window_presets.activated.connect(self._preset_chosen)
        self.window_text = QLabel("-")
        self.window_text.setWordWrap(True)
        self.window_drag = QPushButton(f"Drag window/level ({WINDOW_KEY})")
        self.window_drag.setCheckable(True)
        self.window_drag.setToolTip(
            f"on: a drag on the canvas sets the window (horizontal: width, vertical: level); "
            f"{WINDOW_MODIFIER} + drag does it at any time"
        )
        self.drag = enable_window_drag(napari_viewer)
        self.window_drag.setChecked(self.drag.enabled)
        self.window_drag.toggled.connect(self._drag_toggled)
        self.drag.toggled.connect(self.window_drag.setChecked)
        self._model: ViewModel | None = None
        window = QFormLayout()
        window.addRow("preset", self.window_presets)
        window.addRow("window", self.window_text)
        window.addRow(self.window_drag)
        window_box = QGroupBox("Window")
        window_box.setLayout(window)
        self.ruler_box = RulerBox(napari_viewer)

        self.setMaximumWidth(420)
        layout = QVBoxLayout(self)
        layout.addWidget(self.open_button)
        layout.addLayout(facts)
        layout.addWidget(pyramid_box)
        layout.addWidget(window_box)
        layout.addWidget(self.ruler_box)
        layout.addStretch(1)

        follow_layer_events(self, napari_viewer, self._follow)
        self.controller.changed.connect(self._on_changed)
        self._follow()

    def _on_changed(self, _stack: Stack) -> None:
        self.refresh()

    # --- which layer ----------------------------------------------------------------------

    def _follow(self, event: Event | None = None) -> None:
        """Show the active plugin layer, else the topmost one."""
        active = self.viewer.layers.selection.active
        if stack_of(active) is None:
            candidates = [layer for layer in self.viewer.layers if stack_of(layer) is not None]
            active = candidates[-1] if candidates else None
        self.layer = active
        self.refresh()

    def refresh(self) -> None:
        """Fill the widgets from the current layer's Stack and build state."""
        self._updating = True
        try:
            self._refresh()
        finally:
            self._updating = False

    def _refresh(self) -> None:
        layer = self.layer
        stack = stack_of(layer)
        enabled = stack is not None
        for w in (*self.voxel, self.series, self.build_button, self.rebuild_button, self.detail):
            w.setEnabled(enabled)
        self.window_presets.setEnabled(enabled)
        self._watch_model(stack)
        if stack is None or layer is None:  # a stack comes with its layer
            for label in (
                self.name,
                self.pattern,
                self.count,
                self.shape,
                self.dtype,
                self.missing,
                self.bad,
                self.status,
            ):
                label.setText("-")
            self.cancel_button.setEnabled(False)
            return
        z, y, x = stack.shape
        self.name.setText(stack.name)
        self.pattern.setText(stack.pattern or "(single file)")
        self.count.setText(str(len(stack.files)))
        self.shape.setText(f"{z} x {y} x {x}")
        self.dtype.setText(str(stack.dtype))
        for box, v in zip(self.voxel, layer.scale, strict=True):  # a stack's layer is 3D
            box.setValue(float(v))
        self.unit.setText(UNIT_SYMBOLS.get(stack.unit, stack.unit))
        self.unit.setToolTip(stack.unit)
        self.missing.setText(
            f"{len(stack.missing)}: {_ranges(stack.missing)}" if stack.missing else "none"
        )
        self.bad.setText(str(len(stack.bad_slices)) if stack.bad_slices else "none")
        self.bad.setToolTip("\n".join(f"z={b.z}: {b.reason}" for b in stack.bad_slices[:50]))
        self.series.clear()
        self.series.addItem(f"{stack.pattern or stack.name} (open)", None)
        for s in stack.other_series:
            self.series.addItem(f"{s.pattern} ({s.count} files)", s.pattern)
        self.series.setEnabled(bool(stack.other_series))
        job = self.controller.job(stack)
        building = job is not None and job.state == "building"
        self.cancel_button.setEnabled(building)
        self.build_button.setEnabled(not building)
        self.rebuild_button.setEnabled(not building)
        self.status.setText(self._status_text(layer, stack, job))
        self._fill_detail(layer)
        self._fill_presets(layer)

    def _status_text(self, layer: Image, stack: Stack, job: Job | None) -> str:
        if job is not None and job.state == "building":
            pct = 100 * job.done // max(job.total, 1)
            return f"building: {job.done} / {job.total} slices ({pct} %)"
        shapes = layer.level_shapes if layer.multiscale else [stack.shape]
        levels = ", ".join(" x ".join(str(int(n)) for n in s) for s in shapes)
        if job is not None and job.state in ("cancelled", "failed"):
            return f"{job.state}{': ' + job.error if job.error else ''}; showing level 0"
        if layer.multiscale:
            took = f" (built in {job.seconds:.1f} s)" if job is not None else ""
            return f"{len(shapes)} levels{took}: {levels}"
        return f"level 0 only: {levels}"

    def _fill_detail(self, layer: Image) -> None:
        self.detail.clear()
        if not layer.multiscale:
            self.detail.addItem("level 0 (no pyramid)", None)
            self.detail.setEnabled(False)
            return
        fit = levels_for_3d(layer.level_shapes, max_texture_3d())
        coarsest = len(layer.level_shapes) - 1
        self.detail.addItem(f"auto (coarsest, level {coarsest})", None)
        for i in fit:
            shape = " x ".join(str(int(n)) for n in layer.level_shapes[i])
            self.detail.addItem(f"level {i}: {shape}", i)
        chosen = chosen_3d_level(layer)
        index = self.detail.findData(chosen)
        self.detail.setCurrentIndex(max(index, 0))

    # --- actions ----------------------------------------------------------------------------

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a CT slice folder")
        if folder:
            self.open(folder)

    def open(self, path: str) -> list[Layer]:
        """Open a stack with the plugin's reader (errors arrive as notifications)."""
        return self.viewer.open(path, plugin=PLUGIN)

    def _voxel_edited(self) -> None:
        if self._updating or self.layer is None:
            return
        vz, vy, vx = (box.value() for box in self.voxel)
        self.set_voxel_size((vz, vy, vx))

    def set_voxel_size(self, voxel: tuple[float, float, float]) -> None:
        """Override the voxel size: the layer's scale and the Stack (exports use it) follow."""
        layer = self.layer
        stack = stack_of(layer)
        if stack is None or layer is None:  # a stack comes with its layer
            return
        vz, vy, vx = (float(v) for v in voxel)
        stack.voxel_size = (vz, vy, vx)
        stack.metadata["voxel_size_source"] = "user (stack panel)"
        facts = layer.metadata.get(META_KEY, {})
        facts["voxel_size"] = list(stack.voxel_size)
        from ...viewmodel import model_for

        model_for(stack).remeasure()  # ruler lengths follow the new voxel size
        layer.scale = stack.voxel_size
        self.viewer.reset_view()
        self.refresh()

    def _series_chosen(self, index: int) -> None:
        pattern = self.series.itemData(index)
        if pattern is not None:
            self.open_series(pattern)

    def open_series(self, pattern: str) -> None:
        """Reopen the current folder with another series, in place of the current layer."""
        from napari.layers import Layer

        from .._reader import notify_error, read_stack
        from .reader import schedule_background_build

        stack, old = stack_of(self.layer), self.layer
        if stack is None:
            return
        try:
            data, kwargs, kind = read_stack(
                stack.root, pattern=pattern, max_size=self.max_size.value()
            )[0]
        except Exception as exc:
            notify_error(exc, stack.root)
            return
        self.controller.cancel(stack)
        index = self.viewer.layers.index(old)
        self.viewer.layers.remove(old)
        new = Layer.create(data, kwargs, kind)
        self.viewer.layers.insert(index, new)
        self.viewer.layers.selection.active = new
        schedule_background_build(stack_of(new))

    def _build(self, rebuild: bool) -> None:
        if self.layer is not None:
            self.controller.build(self.layer, rebuild=rebuild, max_size=self.max_size.value())
            self.refresh()

    def _cancel(self) -> None:
        stack = stack_of(self.layer)
        if stack is not None:
            self.controller.cancel(stack)

    # --- window ------------------------------------------------------------------------------

    def _watch_model(self, stack: Stack | None) -> None:
        """Follow the window of the shown stack's view model (and only that one)."""
        from ...viewmodel import model_for

        model = model_for(stack) if stack is not None else None
        if model is self._model:
            return
        if self._model is not None:
            self._model.events.window.disconnect(self._on_window)
            self._model.events.window_preset.disconnect(self._on_window)
        self._model = model
        if model is not None:
            model.events.window.connect(self._on_window)
            model.events.window_preset.connect(self._on_window)
        else:
            self.window_presets.clear()
            self.window_text.setText("-")

    def _fill_presets(self, layer: Image) -> None:
        """Every preset; those that cannot apply (HU ones on data not in HU) are greyed out,
        with the reason as their tooltip and below the list."""
        from ...windows import PRESETS

        combo = self.window_presets
        combo.clear()
        combo.addItem("custom (dragged or typed)", None)
        reasons = set()
        for name, p in PRESETS.items():
            combo.addItem(p.label, name)
            problem = preset_problem(layer, name)
            if problem is not None:
                model = combo.model()
                item = (
                    model.item(combo.count() - 1) if isinstance(model, QStandardItemModel) else None
                )
                if item is not None:
                    item.setEnabled(False)
                    item.setToolTip(f"needs Hounsfield units: {problem}")
                reasons.add(problem)
        combo.setToolTip(
            "CT presets (HU) are off: " + "; ".join(sorted(reasons))
            if reasons
            else "contrast presets: percentiles of the coarsest level; CT ones in HU"
        )
        self._on_window()

    def _on_window(self, *_: object) -> None:
        """Show the model's window and the preset it came from."""
        model = self._model
        if model is None:
            return
        low, high = model.window
        self.window_text.setText(f"{low:.6g} – {high:.6g} (width {high - low:.6g})")
        index = self.window_presets.findData(model.window_preset)
        self.window_presets.setCurrentIndex(max(index, 0))

    def _preset_chosen(self, index: int) -> None:
        name = self.window_presets.itemData(index)
        if self._updating or self.layer is None or name is None:
            return
        self.apply_preset(name)

    def apply_preset(self, name: str) -> None:
        """Apply a window preset to the current layer; a failure is a notification."""
        from napari.utils.notifications import show_error

        from ...errors import CTStackError

        if self.layer is None:
            return
        try:
            apply_window(self.layer, name)
        except CTStackError as exc:
            show_error(f"{self.layer.name}: {exc}")
        self._on_window()

    def _drag_toggled(self, on: bool) -> None:
        self.drag.enabled = on

    def _detail_chosen(self, index: int) -> None:
        if self._updating or self.layer is None:
            return
        set_3d_level(self.layer, self.detail.itemData(index))
