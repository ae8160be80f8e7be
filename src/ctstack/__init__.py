"""napari-ctstack: open, view, crop and export large CT slice stacks lazily.

The engine (this package minus ``ctstack.napari``) knows nothing of Qt. Heavy modules (dask,
zarr, tifffile) are imported on first use so that ``import ctstack`` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._backend import backend, downsample

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - only in a broken checkout
    __version__ = "0+unknown"

# public name -> module that defines it; imported lazily by __getattr__
_LAZY = {
    "open_stack": "ctstack.stack",
    "Stack": "ctstack.stack",
    "errors": "ctstack.errors",
    "sample": "ctstack.sample",
    "export": "ctstack._export",
    "plan_export": "ctstack._export",
    "ExportResult": "ctstack._export",
    "mesh": "ctstack._mesh",
    "Mesh": "ctstack._mesh",
    "suggest_roi": "ctstack.roi",
    "model_for": "ctstack.viewmodel",
    "ViewModel": "ctstack.viewmodel",
    "view": "ctstack.jupyter",  # needs the jupyter extra (anywidget)
}

__all__ = ["__version__", "backend", "downsample", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctstack' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module == f"ctstack.{name}" else getattr(mod, name)
    globals()[name] = value
    return value
