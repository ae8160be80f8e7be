"""A scripted viewer session: open a stack with the panel docked and wait for its pyramid.

Shared by ``ctstack demo``, ``docs/make_screenshots.py`` and the benchmark; needs a Qt event
loop (a display, real or virtual).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

PLUGIN = "napari-ctstack"


def open_with_panel(viewer, path: str | os.PathLike[str], max_size: int | None = None):
    """Dock the stack panel, open ``path`` with the plugin; returns (panel, layer or None)."""
    from ._qt.build import controller_for
    from ._qt.panel import StackPanel

    panel = StackPanel(viewer)
    if max_size:
        panel.max_size.setValue(max_size)
        controller_for(viewer).max_size = max_size
    viewer.window.add_dock_widget(panel, name="CT Stack", area="right")
    layers = panel.open(str(path))
    return panel, (layers[0] if layers else None)


def wait_for_build(viewer, timeout: float = 600.0) -> None:
    """Run the event loop until the viewer's background builds have finished."""
    from qtpy.QtWidgets import QApplication

    from ._qt.build import controller_for

    ctl = controller_for(viewer)
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    settle = time.monotonic() + 0.2  # the build starts on the next event-loop turn
    while time.monotonic() < settle or (ctl.busy and time.monotonic() < deadline):
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()


@contextlib.contextmanager
def virtual_display(size: tuple[int, int] = (1600, 1000)) -> Iterator[None]:
    """A virtual X display when there is none (pyvirtualdisplay, else a plain ``Xvfb``)."""
    if os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM", "") != "offscreen":
        yield
        return
    os.environ.pop("QT_QPA_PLATFORM", None)
    try:
        from pyvirtualdisplay import Display
    except ImportError:
        Display = None
    if Display is not None:
        with Display(visible=False, size=size, color_depth=24):
            yield
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("no display and no Xvfb: install xvfb or run under a desktop")
    proc = subprocess.Popen(
        [xvfb, ":99", "-screen", "0", f"{size[0]}x{size[1]}x24"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["DISPLAY"] = ":99"
    try:
        time.sleep(1.0)
        yield
    finally:
        proc.terminate()
        proc.wait(10)
