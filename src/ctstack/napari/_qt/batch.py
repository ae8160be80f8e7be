"""The Batch export widget: a queue of stacks, each with its own ROI choice, one set of export
settings, per-stack and overall progress, and a summary of what was written where.

A thin face over ``ctstack.batch.run_batch`` (run in a worker): each row shows the engine's
plan for its stack (``plan_export``: output, shape, files, bytes) while it runs, a failing stack
is reported in its row and the batch goes on; the summary lists every outcome.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._reader import Notifier
from ._common import Task, folder_picker, format_combo

if TYPE_CHECKING:
    import napari

    from ..._types import Progress
    from ...batch import BatchEvent, BatchSummary
    from ...roi import Selection
    from ...stack import Stack

ROI_CHOICES = {"saved": "saved ROI", "auto": "auto", "full": "full volume"}
COLUMNS = ("stack", "ROI", "progress", "status")


class _Events(QObject):
    """Carries the engine's batch events from the worker thread to the main thread."""

    event = Signal(object)


class BatchWidget(QWidget):
    """Exports many stacks with one set of settings; each stack keeps its own ROI choice."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.task: Task | None = None
        self.summary: BatchSummary | None = None
        self._events = _Events()
        self._events.event.connect(self._on_event)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        header = self.table.horizontalHeader()
        if header is not None:  # a QTableWidget always has one
            header.setStretchLastSection(True)
        add = QPushButton("Add stacks…")
        add.setToolTip("add stack folders (one each)")
        add_parent = QPushButton("Add parent folder…")
        add_parent.setToolTip("add every sub-folder that holds a stack")
        remove = QPushButton("Remove")
        add.clicked.connect(self._choose_stacks)
        add_parent.clicked.connect(self._choose_parent)
        remove.clicked.connect(self.remove_selected)
        list_buttons = QHBoxLayout()
        for b in (add, add_parent, remove):
            list_buttons.addWidget(b)

        self.format = format_combo()
        self.level = QSpinBox()
        self.level.setRange(0, 16)
        self.level.setToolTip("pyramid level (built first where missing)")
        self.folder, folder_row = folder_picker(self, "Write into")
        self.overwrite = QCheckBox("overwrite existing outputs")
        form = QFormLayout()
        form.addRow("format", self.format)
        form.addRow("level", self.level)
        form.addRow("into", folder_row)
        form.addRow("", self.overwrite)

        self.overall = QProgressBar()
        self.overall.setFormat("%v / %m stacks")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setPlaceholderText("the summary appears here")

        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(list_buttons)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addWidget(self.overall)
        layout.addWidget(self.report)

    # --- the list ---------------------------------------------------------------------------

    def _item(self, row: int, column: int) -> QTableWidgetItem:
        """The item of a stack-name or status cell (``add_paths`` gives every row both)."""
        item = self.table.item(row, column)
        if item is None:
            raise LookupError(f"batch table row {row} has no item in column {column}")
        return item

    def _roi_combo(self, row: int) -> QComboBox:
        combo = self.table.cellWidget(row, 1)
        if not isinstance(combo, QComboBox):
            raise LookupError(f"batch table row {row} has no ROI choice")
        return combo

    def _bar(self, row: int) -> QProgressBar:
        bar = self.table.cellWidget(row, 2)
        if not isinstance(bar, QProgressBar):
            raise LookupError(f"batch table row {row} has no progress bar")
        return bar

    def paths(self) -> list[Path]:
        return [Path(self._item(r, 0).data(256)) for r in range(self.table.rowCount())]

    def add_paths(self, paths: list[str | Path], expand: bool = False) -> None:
        """Add stacks; with ``expand`` a folder without slices stands for its sub-folders."""
        from ...batch import find_stacks

        have = {str(p) for p in self.paths()}
        for path in find_stacks(paths) if expand else [Path(p) for p in paths]:
            if str(path) in have:
                continue
            have.add(str(path))
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(path.name)
            item.setData(256, str(path))  # Qt.UserRole
            item.setToolTip(str(path))
            self.table.setItem(row, 0, item)
            choice = QComboBox()
            for key, text in ROI_CHOICES.items():
                choice.addItem(text, key)
            self.table.setCellWidget(row, 1, choice)
            bar = QProgressBar()
            bar.setRange(0, 1)
            bar.setValue(0)
            self.table.setCellWidget(row, 2, bar)
            self.table.setItem(row, 3, QTableWidgetItem("queued"))

    def set_roi_choice(self, row: int, how: str) -> None:
        combo = self._roi_combo(row)
        combo.setCurrentIndex(combo.findData(how))

    def remove_selected(self) -> None:
        if self.task is None:
            for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
                self.table.removeRow(row)

    def _choose_stacks(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a stack folder")
        if folder:
            self.add_paths([folder])

    def _choose_parent(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add every stack in a parent folder")
        if folder:
            self.add_paths([folder], expand=True)

    def status(self, row: int) -> str:
        return self._item(row, 3).text()

    # --- running --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.task is not None

    def start(self) -> Task | None:
        """Run the queue in a worker; the list's order is the batch's order."""
        from ...batch import run_batch
        from ...roi import resolve_selection

        paths = self.paths()
        if self.task is not None or not paths:
            return None
        choices = {str(p): self._roi_combo(r).currentData() for r, p in enumerate(paths)}
        fmt, level = self.format.currentData(), self.level.value()
        out, overwrite = Path(self.folder.text()).expanduser(), self.overwrite.isChecked()
        events = self._events
        current = {"path": ""}

        def on_event(event: BatchEvent) -> None:
            """Worker thread: remember the stack, forward the event."""
            if event.kind == "start":
                current["path"] = str(event.path)
            events.event.emit(event)

        def roi(stack: Stack) -> Selection:
            """Called by run_batch right after that stack's "start" event."""
            return resolve_selection(stack, choices.get(current["path"], "saved"))

        notes = Notifier()  # each stack's notes become napari warnings

        def run(progress: Progress, cancel: threading.Event) -> BatchSummary:
            return run_batch(
                paths,
                out,
                format=fmt,
                roi=roi,
                level=level,
                overwrite=overwrite,
                on_event=on_event,
                cancel=cancel,
                report=notes,
            )

        for row in range(len(paths)):
            self._item(row, 3).setText("queued")
            self._bar(row).setValue(0)
        self.overall.setRange(0, len(paths))
        self.overall.setValue(0)
        self.report.clear()
        self.summary = None
        self.task = Task(
            run,
            f"batch export of {len(paths)} stacks",
            "batch export",
            "batch export",
            cancelled_note="; the stack in progress left nothing",
        )
        self.task.done.connect(self._done)
        self.task.failed.connect(self._failed)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        return self.task.start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _on_event(self, event: BatchEvent) -> None:
        from napari.utils.notifications import show_warning

        rows = {str(p): r for r, p in enumerate(self.paths())}
        row = rows.get(str(event.path), event.index)
        if event.kind == "finished" or row >= self.table.rowCount():
            return
        bar, status = self._bar(row), self._item(row, 3)
        if event.kind == "start":
            status.setText("running")
        elif event.kind == "planned" and event.plan is not None:  # a plan comes with "planned"
            status.setText(f"writing {event.plan.out.name}: {event.message}")
            status.setToolTip(str(event.plan.out))
        elif event.kind == "progress":
            bar.setRange(0, max(event.total, 1))
            bar.setValue(event.done)
            if self.task is not None and self.task.pbar is not None:
                self.task.report(row, self.table.rowCount())
        elif event.kind == "done":
            bar.setRange(0, 1)
            bar.setValue(1)
            status.setText(event.message)
            self.overall.setValue(row + 1)
        elif event.kind == "failed":
            status.setText(f"FAILED: {event.message}")
            status.setToolTip(event.message)
            self.overall.setValue(row + 1)
            show_warning(f"batch: {event.path}: {event.message}")

    def _end(self) -> None:
        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _done(self, summary: BatchSummary) -> None:
        from napari.utils.notifications import show_info, show_warning

        self._end()
        self.summary = summary
        text = summary.text()
        self.report.setPlainText(text)
        last = text.splitlines()[-1]
        (show_warning if summary.failed else show_info)(f"batch export: {last}")

    def _failed(self, text: str) -> None:
        self._end()
        self.report.setPlainText(text)
