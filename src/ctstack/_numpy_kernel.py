"""The numpy fallback of the pyramid kernel, bit-identical to the Rust core.

It follows the same arithmetic as ``rust/src/kernel.rs``: integer sums in a wide integer type
rounded half toward +infinity with an arithmetic shift (every block size is a power of two),
float sums in float64 in the fixed order z, y, x starting from the first voxel present, a NaN
result stored as the canonical quiet NaN. The
work is vectorised integer adds on strided views, one output plane at a time so that memory
stays bounded by a plane.
"""

from __future__ import annotations

import numpy as np

from ._dtypes import KERNEL_DTYPES, accumulator

__all__ = ["KERNEL_DTYPES", "NumpyCascade", "PlaneAccumulator", "downsample_numpy"]

# the (dy, dx) offsets within a plane, in the fixed summation order
_YX = ((0, 0), (0, 1), (1, 0), (1, 1))


def _log2_counts(n: int) -> np.ndarray:
    """log2 of how many input voxels each output index covers along an axis of length n."""
    k = np.ones((n + 1) // 2, dtype=np.uint8)
    if n % 2:
        k[-1] = 0
    return k


class PlaneAccumulator:
    """Sums input planes into one output plane; the building block of the numpy cascade."""

    def __init__(self, shape_yx: tuple[int, int], dtype: np.dtype) -> None:
        self.shape_in = shape_yx
        self.shape_out = ((shape_yx[0] + 1) // 2, (shape_yx[1] + 1) // 2)
        self.dtype = np.dtype(dtype)
        self.is_float = self.dtype.kind == "f"
        acc_dtype = accumulator(self.dtype)
        self.acc = np.zeros(self.shape_out, dtype=acc_dtype)
        self.planes = 0
        self._rows: np.ndarray | None = None  # scratch for integer row sums, made on first use
        self._shifts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ky = _log2_counts(shape_yx[0])[:, None]
        kx = _log2_counts(shape_yx[1])[None, :]
        self._kyx = (ky + kx).astype(acc_dtype if not self.is_float else np.uint8)

    def add(self, plane: np.ndarray) -> None:
        """Adds one input plane (2D, the source dtype) in the fixed order."""
        if self.is_float:
            self._add_ordered(plane)
        else:
            self._add_integer(plane)
        self.planes += 1

    def _add_integer(self, plane: np.ndarray) -> None:
        # integer sums do not depend on order: add row pairs (contiguous), then column pairs
        rows = self._rows
        if rows is None:
            rows = self._rows = np.empty((self.shape_out[0], self.shape_in[1]), self.acc.dtype)
        n_odd = self.shape_in[0] // 2
        np.add(plane[0 : 2 * n_odd : 2], plane[1::2], out=rows[:n_odd], dtype=rows.dtype)
        if n_odd < rows.shape[0]:  # odd height: the last row has no partner
            np.copyto(rows[n_odd:], plane[2 * n_odd :])
        left, right = rows[:, 0::2], rows[:, 1::2]
        n_right = right.shape[1]
        acc = self.acc
        if self.planes == 0:
            np.add(left[:, :n_right], right, out=acc[:, :n_right])
            if n_right < acc.shape[1]:  # odd width
                np.copyto(acc[:, n_right:], left[:, n_right:])
        else:
            acc += left
            acc[:, :n_right] += right

    def _add_ordered(self, plane: np.ndarray) -> None:
        acc = self.acc
        for i, (dy, dx) in enumerate(_YX):
            view = plane[dy::2, dx::2]
            if view.size == 0:
                continue
            target = acc[: view.shape[0], : view.shape[1]]
            if i == 0 and self.planes == 0:
                target[...] = view
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    target += view

    def finish(self, out: np.ndarray | None = None) -> np.ndarray:
        """The mean of what was added, in the source dtype; resets for the next block."""
        if self.is_float:
            n = np.ldexp(1.0, self._kyx.astype(np.int32) + (self.planes - 1))
            with np.errstate(invalid="ignore", over="ignore"):
                result = (self.acc / n).astype(self.dtype)
            nan = np.isnan(result)
            if nan.any():  # one canonical quiet NaN, whatever payload the arithmetic left
                result[nan] = np.nan
        else:  # in place: floor((sum + n/2) / n) as a shift, n = 2**k
            k, half = self._shift(self.planes)
            np.add(self.acc, half, out=self.acc)
            np.right_shift(self.acc, k, out=self.acc)
            if out is None:
                out = np.empty(self.shape_out, self.dtype)
            np.copyto(out, self.acc, casting="unsafe")  # the mean always fits the source type
            self.planes = 0
            return out
        self.planes = 0
        if out is None:
            return result
        out[...] = result
        return out

    def _shift(self, planes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-voxel shift k = log2(block size) and n/2, for blocks of ``planes`` planes."""
        cached = self._shifts.get(planes)
        if cached is None:
            k = (self._kyx + (planes - 1)).astype(self.acc.dtype)
            cached = self._shifts[planes] = (k, (np.ones_like(k) << k) >> 1)
        return cached


def downsample_numpy(volume: np.ndarray) -> np.ndarray:
    """One pyramid level of a validated 3D volume, computed with numpy."""
    nz = volume.shape[0]
    acc = PlaneAccumulator(volume.shape[1:], volume.dtype)
    out = np.empty(((nz + 1) // 2, *acc.shape_out), dtype=volume.dtype)
    for zo in range(out.shape[0]):
        for zi in range(2 * zo, min(2 * zo + 2, nz)):
            acc.add(volume[zi])
        acc.finish(out[zo])
    return out


class NumpyCascade:
    """The numpy twin of ``ctstack._core.Cascade``: same constructor, methods and results."""

    def __init__(self, height: int, width: int, levels: int, dtype: str) -> None:
        if height < 1 or width < 1 or levels < 1:
            raise ValueError("a cascade needs planes of at least one pixel and at least one level")
        self.dtype = np.dtype(dtype).name
        if np.dtype(dtype) not in KERNEL_DTYPES:
            raise TypeError(f"unsupported dtype {dtype!r}")
        self._levels: list[PlaneAccumulator] = []
        shape = (height, width)
        for _ in range(levels):
            acc = PlaneAccumulator(shape, np.dtype(dtype))
            self._levels.append(acc)
            shape = acc.shape_out
        self._produced = [0] * levels

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [acc.shape_out for acc in self._levels]

    @property
    def produced(self) -> list[int]:
        return list(self._produced)

    def _emit(self, i: int, outs: list[np.ndarray], done: list[tuple[int, int]]) -> None:
        self._levels[i].finish(outs[i])
        done.append((i + 1, self._produced[i]))
        self._produced[i] += 1
        self._feed(i + 1, outs[i], outs, done)

    def _feed(
        self, i: int, plane: np.ndarray, outs: list[np.ndarray], done: list[tuple[int, int]]
    ) -> None:
        if i >= len(self._levels):
            return
        acc = self._levels[i]
        acc.add(plane)
        if acc.planes == 2:
            self._emit(i, outs, done)

    def push(self, plane: np.ndarray, outs: list[np.ndarray]) -> list[tuple[int, int]]:
        """Feeds the next source plane; returns the (level, z) planes now written into outs."""
        if plane.shape != self._levels[0].shape_in:
            raise ValueError(f"plane has shape {plane.shape}, expected {self._levels[0].shape_in}")
        done: list[tuple[int, int]] = []
        self._feed(0, plane, outs, done)
        return done

    def finish(self, outs: list[np.ndarray]) -> list[tuple[int, int]]:
        """Flushes the partial blocks left at the end of the volume into outs."""
        done: list[tuple[int, int]] = []
        for i, acc in enumerate(self._levels):
            if acc.planes:
                self._emit(i, outs, done)
        return done
