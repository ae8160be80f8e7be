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
    "export": "ctstack.export",
    "mesh": "ctstack.mesh",
    "suggest_roi": "ctstack.roi",
}

__all__ = ["__version__", "backend", "downsample", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctstack' has no attribute {name!r}")
    mod = importlib.import_module(module)
    # ctstack.export and ctstack.mesh are modules that are also callable (see _callable.py)
    value = mod if module == f"ctstack.{name}" else getattr(mod, name)
    globals()[name] = value
    return value
