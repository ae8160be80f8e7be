"""The pixel types the kernels take: the one list on the Python side.

The Rust side has its own one list (``for_each_dtype!`` in ``rust/src/lib.rs``, exposed as
``ctstack._core.DTYPES``) and the stub declares them as ``ctstack._core.DType``;
``tests/test_dtypes.py`` checks that the three agree. What else a reader meets is mapped onto
these by ``ctstack.io.map_dtype``.
"""

from __future__ import annotations

import numpy as np

DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
"""Numpy names, in the order the Rust list has them."""

KERNEL_DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in DTYPES)


def accepted() -> str:
    """``"uint8, uint16, ..., float32 and float64"``, for error messages."""
    return ", ".join(DTYPES[:-1]) + " and " + DTYPES[-1]


def accumulator(dtype: np.dtype) -> np.dtype:
    """The type a block of eight voxels is summed in: float64 for floats; for integers the
    same signedness with at least 32 bits and twice the width (uint8 -> uint32, int32 ->
    int64), as ``Voxel::Acc`` in ``rust/src/kernel.rs``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype("float64")
    return np.dtype(f"{dtype.kind}{max(4, 2 * dtype.itemsize)}")
