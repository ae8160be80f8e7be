"""A scripted viewer session: open a stack with the panel docked and wait for its pyramid.

Shared by ``ctstack demo``, ``docs/make_screenshots.py`` and the benchmark (through the lazy
re-exports ``ctstack.napari.open_with_panel`` and ``wait_for_build``); needs a Qt event loop.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QApplication

from .build import controller_for
from .panel import StackPanel

if TYPE_CHECKING:
    from napari.layers import Layer

    import napari

PLUGIN = "napari-ctstack"


def open_with_panel(
    viewer: napari.viewer.Viewer, path: str | os.PathLike[str], max_size: int | None = None
) -> tuple[StackPanel, Layer | None]:
    """Dock the stack panel, open ``path`` with the plugin; returns (panel, layer or None)."""
    panel = StackPanel(viewer)
    if max_size:
        panel.max_size.setValue(max_size)
        controller_for(viewer).max_size = max_size
    viewer.window.add_dock_widget(panel, name="CT Stack", area="right")
    layers = panel.open(str(path))
    return panel, (layers[0] if layers else None)


def wait_for_build(viewer: napari.viewer.Viewer, timeout: float = 600.0) -> None:
    """Run the event loop until the viewer's background builds have finished."""
    ctl = controller_for(viewer)
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("wait_for_build needs the QApplication of a napari viewer")
    deadline = time.monotonic() + timeout
    settle = time.monotonic() + 0.2  # the build starts on the next event-loop turn
    while time.monotonic() < settle or (ctl.busy and time.monotonic() < deadline):
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()
