"""The ruler's buttons (measure mode, clear, export CSV): a thin face over ``_ruler.Ruler``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ...errors import CTStackError
from .._ruler import Ruler, export_measurements, ruler

if TYPE_CHECKING:
    from pathlib import Path

    import napari


class RulerBox(QGroupBox):
    """Measure: drag a line on the shown plane; its length (µm/mm, or pixels) is drawn beside
    it and kept in the "measurements" layer; Export CSV writes them all."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__("Ruler")
        self.viewer = viewer
        self._ruler: Ruler | None = None
        self.measure_button = QPushButton("Measure")
        self.measure_button.setCheckable(True)
        self.measure_button.setToolTip(
            "on: a left drag on the canvas draws a line on the current plane, with its length"
        )
        self.measure_button.toggled.connect(self._measure_toggled)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._choose_csv)
        self.summary = QLabel("no measurements")
        self.summary.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.measure_button, self.clear_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)

    def ruler(self) -> Ruler | None:
        """The viewer's ruler, made on first use; None (with a notification) without an image."""
        if self._ruler is None or self._ruler.layer not in self.viewer.layers:
            try:
                found = ruler(self.viewer)
            except CTStackError as exc:
                from napari.utils.notifications import show_warning

                show_warning(f"ruler: {exc}")
                return None
            if found is not self._ruler:
                found.changed.connect(self._show)
                found.mode_changed.connect(self._on_mode)
            self._ruler = found
        return self._ruler

    def _measure_toggled(self, on: bool) -> None:
        found = self.ruler() if on or self._ruler is not None else None
        if found is None:
            self.measure_button.setChecked(False)
            return
        found.measuring = on
        self._show()

    def _on_mode(self, on: bool) -> None:
        """Measure mode switched from elsewhere (``measure_mode``): the button follows."""
        self.measure_button.setChecked(on)

    def clear(self) -> None:
        """Remove every measurement."""
        if self._ruler is not None:
            self._ruler.clear()

    def _show(self) -> None:
        rows = self._ruler.rows() if self._ruler is not None else []
        if not rows:
            self.summary.setText("no measurements")
            return
        self.summary.setText(f"{len(rows)} measurement(s); last: {rows[-1]['label']}")

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export measurements", "", "CSV (*.csv)")
        if path:
            self.export(path)

    def export(self, path: str) -> Path | None:
        """Write the measurements to ``path``; a failure is a notification naming the file."""
        from napari.utils.notifications import show_error, show_info

        try:
            written = export_measurements(self.viewer, path)
        except CTStackError as exc:
            show_error(f"ruler: {exc}")
            return None
        show_info(f"measurements written to {written}")
        return written
