"""The Jupyter face: ``ctstack.view(source)`` shows a stack in JupyterLab or Notebook 7.

No Qt, no napari, no extra port: an anywidget whose browser side (``viewer.js``, shipped in the
package) draws pixel tiles that the kernel sends over the widget's messages. Needs the
``jupyter`` extra (``pip install "napari-ctstack[jupyter]"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..stack import Stack, open_stack

if TYPE_CHECKING:
    from .._types import StrPath
    from ._widget import ScreenshotError, Viewer

__all__ = ["ScreenshotError", "Viewer", "view"]


def _widgets() -> Any:
    """The widget module; importing it needs anywidget, which a core install lacks. Done on
    first use so that ``import ctstack.jupyter`` and ``from ctstack import *`` always work."""
    try:
        import anywidget  # noqa: F401  (checked here for a clear message)
    except ImportError as exc:  # a core install: no jupyter extra
        raise ImportError(
            'ctstack.view needs anywidget: pip install "napari-ctstack[jupyter]"'
        ) from exc
    return importlib.import_module("ctstack.jupyter._widget")


def __getattr__(name: str) -> Any:
    if name in ("ScreenshotError", "Viewer"):
        return getattr(_widgets(), name)
    raise AttributeError(f"module 'ctstack.jupyter' has no attribute {name!r}")


def view(
    source: StrPath | Stack,
    layout: str = "ortho",
    *,
    renderer: str = "auto",
    size: int | None = None,
    client_cache_mb: int = 256,
    cache_dir: StrPath | None = None,
    **open_options: Any,
) -> Viewer:
    """A viewer of ``source`` (a path, opened with ``ctstack.open_stack``, or a Stack).

    ``layout`` is ``"ortho"`` (XY, XZ and YZ) or ``"xy"``; ``renderer`` ``"auto"``,
    ``"webgl2"`` or ``"canvas2d"`` (forces the fallback); ``size`` is one pane's CSS width
    (default 360, 640 for ``"xy"``); ``client_cache_mb`` bounds the browser's tile cache;
    ``cache_dir`` is where the pyramid cache goes. Other keywords go to ``open_stack``. A
    source that cannot be opened raises ``open_stack``'s error. Without a pyramid, one is built
    in the background while level 0 is shown.
    """
    widgets = _widgets()
    if isinstance(source, Stack) and open_options:
        raise TypeError(f"open_stack options need a path, not a Stack: {sorted(open_options)}")
    stack = source if isinstance(source, Stack) else open_stack(source, **open_options)
    viewer: Viewer = widgets.Viewer(
        stack,
        layout=layout,
        renderer=renderer,
        size=size,
        client_cache_mb=client_cache_mb,
        cache_dir=cache_dir,
    )
    return viewer
