"""Kernel dispatch: the Rust extension when it loads, else a bit-identical numpy fallback.

``CTSTACK_NO_RUST=1`` forces the fallback. A missing or broken extension costs one warning,
never an import failure.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

import numpy as np

from ._dtypes import KERNEL_DTYPES, accepted
from ._numpy_kernel import downsample_numpy


def _load_core() -> ModuleType | None:
    if os.environ.get("CTSTACK_NO_RUST", "") not in ("", "0"):
        return None
    try:
        from . import _core
    except ImportError as exc:
        warnings.warn(
            f"ctstack's Rust extension could not be loaded ({exc}); using the slower numpy "
            "fallback. Reinstall napari-ctstack to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return _core


_CORE = _load_core()


def backend() -> str:
    """Which kernel implementation is active: ``"rust"`` or ``"numpy"``."""
    return "rust" if _CORE is not None else "numpy"


def core() -> ModuleType | None:
    """The loaded Rust extension module, or None when the numpy fallback is active."""
    return _CORE


def check_volume(volume: object) -> np.ndarray:
    """Validate a kernel input: a non-empty 3D numpy array of a supported dtype (native order)."""
    if not isinstance(volume, np.ndarray):
        raise TypeError(f"downsample takes a numpy array, not {type(volume).__name__}")
    if volume.dtype.kind == "O" or volume.dtype.newbyteorder("=") not in KERNEL_DTYPES:
        raise TypeError(f"downsample does not take dtype {volume.dtype}; accepted: {accepted()}")
    if volume.ndim != 3:
        raise ValueError(
            f"downsample takes a 3D (z, y, x) volume, got {volume.ndim}D shape {volume.shape}"
        )
    if volume.size == 0:
        raise ValueError(f"downsample cannot take an empty volume of shape {volume.shape}")
    if not volume.dtype.isnative:
        volume = volume.astype(volume.dtype.newbyteorder("="))
    return volume


def downsample(volume: np.ndarray) -> np.ndarray:
    """One pyramid level: the exact 2x2x2 block mean of a ``(z, y, x)`` volume.

    Output shape is ``ceil(n / 2)`` per axis; partial edge blocks average the voxels present;
    integers round half toward +infinity; floats are summed in float64 in a fixed order.
    """
    volume = check_volume(volume)
    if _CORE is not None:
        return _CORE.downsample(volume)
    return downsample_numpy(volume)
