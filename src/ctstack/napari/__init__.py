"""napari plugin for ctstack: reader, sample data, view-model sync (Qt widgets live in ``_qt``).

The Qt-free parts are importable without a display: :func:`read_stack` returns layer data,
:func:`set_3d_level` picks the level rendered in 3D, :func:`replace_with_levels` swaps a layer
for its multiscale twin while keeping the view, :func:`sync_viewer` keeps a viewer and the
stacks' view models (``ctstack.viewmodel``) in step, :func:`apply_window` and
:func:`enable_window_drag` set the window/level, :func:`ruler` measures lines in physical units
and :func:`export_measurements` writes them as CSV.

Qt-backed public functions are re-exported lazily (module ``__getattr__``), so importing this
package never imports Qt: the one sanctioned way for a module outside ``_qt`` to reach it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._layer import (
    contrast_limits,
    layer_kwargs,
    levels_for_3d,
    max_size_setting,
    replace_with_levels,
    stack_of,
)
from ._reader import napari_get_reader, read_stack
from ._ruler import export_measurements, measure_mode, ruler
from ._sync import set_3d_level, sync_viewer
from ._window import apply_window, enable_window_drag

# public name -> the _qt module that defines it (imported on first use)
_QT_EXPORTS = {
    "open_with_panel": "ctstack.napari._qt.session",
    "orthogonal_views": "ctstack.napari._qt.ortho",
    "wait_for_build": "ctstack.napari._qt.session",
}

__all__ = [
    "apply_window",
    "contrast_limits",
    "enable_window_drag",
    "export_measurements",
    "layer_kwargs",
    "levels_for_3d",
    "max_size_setting",
    "measure_mode",
    "napari_get_reader",
    "read_stack",
    "replace_with_levels",
    "ruler",
    "set_3d_level",
    "stack_of",
    "sync_viewer",
    *_QT_EXPORTS,
]


def __getattr__(name: str) -> Any:
    module = _QT_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ctstack.napari' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
