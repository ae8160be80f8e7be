"""The Export widget: format, level, destination and naming of the current ROI, with its size
shown before starting (the engine's ``plan_export``), a cancellable progress bar and a
notification with the result. The ROI and the 8-bit window are the stack's view model's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..._export import EXTENSIONS, ExportPlan, level_shapes, output_name, plan_export
from .._reader import pyramid_max_size
from .._roi_model import describe
from ._common import LayerFollower, Task, folder_picker, format_combo

if TYPE_CHECKING:
    import napari

    from ..._export.writing import ExportResult
    from ..._types import Progress
    from ...roi import ROI


class ExportWidget(LayerFollower):
    """Exports the current stack's ROI (from the Crop widget) at a chosen level and format."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.task: Task | None = None
        self.last_result: ExportResult | None = None
        self.source = QLabel("-")
        self.source.setWordWrap(True)
        self.format = format_combo()
        self.level = QComboBox()
        self.eight_bit = QCheckBox("8-bit, scaled from the layer's contrast limits")
        self.folder, folder_row = folder_picker(self, "Export into")
        self.name = QLineEdit()
        self.name.setToolTip("output name; the extension follows the format")
        self.ext = QLabel("")
        name_row = QHBoxLayout()
        name_row.addWidget(self.name)
        name_row.addWidget(self.ext)
        self.prefix = QLineEdit()
        self.prefix.setPlaceholderText("source prefix")
        self.prefix.setToolTip("slice file prefix (slice formats); empty keeps the source's")
        self.overwrite = QCheckBox("overwrite an existing output")
        self.estimate = QLabel("-")
        self.estimate.setWordWrap(True)
        self.export_button = QPushButton("Export")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("region", self.source)
        form.addRow("format", self.format)
        form.addRow("level", self.level)
        form.addRow("", self.eight_bit)
        form.addRow("folder", folder_row)
        form.addRow("name", name_row)
        form.addRow("prefix", self.prefix)
        form.addRow("", self.overwrite)
        form.addRow("output", self.estimate)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        for signal in (
            self.format.currentIndexChanged,
            self.level.currentIndexChanged,
            self.eight_bit.toggled,
        ):
            signal.connect(self.update_estimate)
        self.format.currentIndexChanged.connect(self._format_changed)
        self._follow()

    # --- following ------------------------------------------------------------------------

    def stack_changed(self, same_stack: bool) -> None:
        enabled = self.stack is not None and self.task is None
        self.export_button.setEnabled(enabled)
        if self.stack is None:
            self.source.setText("-")
            self.estimate.setText("-")
            return
        if not same_stack:
            self.name.setText(f"{self.stack.name}_crop")
        self._fill_levels()
        self._format_changed()

    def _roi_changed(self, roi: ROI) -> None:
        self.update_estimate()

    def _fill_levels(self) -> None:
        stack = self.stack
        if stack is None:
            return
        chosen = self.level.currentData()
        self.level.blockSignals(True)
        self.level.clear()
        for i, shape in enumerate(level_shapes(stack, pyramid_max_size(stack))):
            built = i < len(stack.levels)
            note = "" if built else " (built first)"
            self.level.addItem(f"{i}: {' x '.join(map(str, shape))}{note}", i)
        index = self.level.findData(chosen)
        self.level.setCurrentIndex(max(index, 0))
        self.level.blockSignals(False)

    def _format_changed(self, *_: Any) -> None:
        fmt = self.format.currentData()
        self.ext.setText(EXTENSIONS.get(fmt, "/"))
        self.prefix.setEnabled(fmt in ("tiff", "png", "bmp"))
        self.update_estimate()

    # --- what would be written ------------------------------------------------------------

    def output_path(self) -> Path:
        fmt = self.format.currentData()
        name = self.name.text().strip() or (self.stack.name if self.stack else "export")
        return Path(self.folder.text()).expanduser() / output_name(name, fmt)

    def eight_bit_window(self) -> tuple[float, float] | None:
        """The view model's window when 8-bit is asked for (it follows the layer's contrast)."""
        if not self.eight_bit.isChecked() or self.model is None:
            return None
        return self.model.window

    def plan(self) -> ExportPlan | None:
        """What the export the current settings describe would write (the engine's plan)."""
        if self.stack is None or self.model is None:
            return None
        zs, ys, xs = (self.model.roi.slices[a] for a in "zyx")
        return plan_export(
            self.stack,
            self.output_path(),
            zs,
            ys,
            xs,
            level=self.level.currentData() or 0,
            format=self.format.currentData(),
            window=self.eight_bit_window(),
            pyramid_max_size=pyramid_max_size(self.stack),
        )

    def update_estimate(self, *_: Any) -> None:
        if self.stack is None or self.model is None:
            return
        roi = self.model.roi
        self.source.setText(f"{describe(roi)} ({roi.source})")
        try:
            plan = self.plan()
        except Exception as exc:  # e.g. 8-bit PNG only: say so before the export is started
            self.estimate.setText(f"cannot export this: {exc}")
            return
        if plan is not None:  # not None: the stack and model were checked above
            self.estimate.setText(plan.summary())

    # --- running --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.task is not None

    def start(self) -> Task | None:
        """Start the export in a worker thread (one at a time)."""
        from ..._export import export

        stack, model = self.stack, self.model
        if stack is None or model is None or self.task is not None:  # a stack has its model
            return None
        zs, ys, xs = (model.roi.slices[a] for a in "zyx")
        out = self.output_path()
        level, fmt, window = (
            self.level.currentData() or 0,
            self.format.currentData(),
            self.eight_bit_window(),
        )
        prefix = self.prefix.text().strip() or None
        overwrite = self.overwrite.isChecked()

        def run(progress: Progress, cancel: threading.Event) -> ExportResult:
            return export(
                stack,
                out,
                zs,
                ys,
                xs,
                level=level,
                format=fmt,
                overwrite=overwrite,
                window=window,
                progress=progress,
                cancel=cancel,
                prefix=prefix,
            )

        self.task = Task(
            run,
            f"{stack.name}: export to {out.name}",
            "export",
            out,
            stack.name,
            f"; nothing was written to {out}",
        )
        self.task.done.connect(self._done)
        self.task.failed.connect(self._finish)
        self.export_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"exporting to {out} …")
        self.task.start()
        return self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finish(self, text: str) -> None:
        self.task = None
        self.status.setText(text)
        self.export_button.setEnabled(self.stack is not None)
        self.cancel_button.setEnabled(False)

    def _done(self, result: ExportResult) -> None:
        from napari.utils.notifications import show_info

        self.last_result = result
        self._finish(result.summary())
        show_info(f"{self.stack.name if self.stack else ''}: {result.summary()}")
