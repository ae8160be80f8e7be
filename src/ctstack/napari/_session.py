"""A display for scripted viewer sessions: a virtual X display when there is none.

Shared by ``ctstack demo``, ``docs/make_screenshots.py`` and the benchmark. The session itself
(open a stack with the panel docked, wait for its pyramid) needs a Qt event loop and lives in
``_qt/session.py`` (``ctstack.napari.open_with_panel`` / ``wait_for_build``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator


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
        pass  # a plain Xvfb below
    else:
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
