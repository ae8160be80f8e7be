"""Type stubs of the Rust extension ``ctstack._core`` (rust/src/lib.rs)."""

from typing import Literal, TypeAlias, final

import numpy as np
import numpy.typing as npt

__all__ = ["DTYPES", "Cascade", "__version__", "downsample"]

__version__: str

DType: TypeAlias = Literal["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
"""The dtypes the kernels take (``DTYPES``; the Python list is ``ctstack._dtypes.DTYPES``)."""

DTYPES: tuple[DType, ...]
"""The numpy names of the dtypes the kernels take, in the order of the Rust list."""

def downsample(volume: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """One pyramid level of a 3D (z, y, x) array: the exact 2x2x2 block mean.

    Accepts the ``DTYPES`` in native byte order; the GIL is released while it runs.
    """

@final
class Cascade:
    """Streaming pyramid builder: feed source planes in z order, get every level's planes."""

    def __new__(cls, height: int, width: int, levels: int, dtype: DType) -> Cascade: ...
    def push(
        self, plane: npt.NDArray[np.generic], outs: list[npt.NDArray[np.generic]]
    ) -> list[tuple[int, int]]:
        """Adds the next plane; returns the (level, z) planes now written into ``outs``."""
    def finish(self, outs: list[npt.NDArray[np.generic]]) -> list[tuple[int, int]]:
        """Flushes the partial blocks at the end of the volume into ``outs``."""
    @property
    def level_shapes(self) -> list[tuple[int, int]]: ...
    @property
    def produced(self) -> list[int]: ...
    @property
    def dtype(self) -> str: ...
