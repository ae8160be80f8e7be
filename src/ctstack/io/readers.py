"""Per-source slice readers behind a Stack: a series of files, DICOM, multi-page TIFF, OME-Zarr.

Each reader knows its (z, y, x) shape and dtype, decodes one z-plane on demand (raising a
CTStackError the Stack turns into a bad slice), and lists the files its pixels come from.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgument, UnreadableSlice, UnsupportedFormat
from .raster import SliceHeader, check_plane, decode, luminance, map_dtype

if TYPE_CHECKING:
    import dask.array as da

    from ..dicom import DicomHeader
    from ..ngff import NgffImage


class SliceReader:
    """Base: subclasses set shape and dtype and implement `read`."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    # a ready dask array for level 0 (OME-Zarr), else the Stack builds one
    dask_level0: da.Array | None = None

    def read(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def path_of(self, z: int) -> Path | None:
        return None

    def sources(self) -> list[Path]:
        return []

    def token(self) -> object:
        return [str(p) for p in self.sources()]

    def extra_levels(self) -> list[da.Array]:
        return []

    def _zeros(self, out: np.ndarray | None) -> np.ndarray:
        if out is None:
            return np.zeros(self.shape[1:], self.dtype)
        out.fill(0)
        return out


class SeriesReader(SliceReader):
    """One raster file per z; None headers (gaps, bad slices) read as zeros."""

    def __init__(
        self,
        headers: list[SliceHeader | None],
        files: dict[int, Path],
        shape: tuple[int, int, int],
        dtype: np.dtype,
    ) -> None:
        self.headers, self.files, self.shape, self.dtype = headers, files, shape, dtype

    def read(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        header = self.headers[z]
        if header is None:
            return self._zeros(out)
        return decode(header, self.dtype, out)

    def path_of(self, z: int) -> Path | None:
        return self.files.get(z)

    def sources(self) -> list[Path]:
        return [self.files[z] for z in sorted(self.files)]


class DicomReader(SliceReader):
    """One DICOM file per z, rescaled to Hounsfield units when the series is."""

    def __init__(
        self,
        headers: Sequence[DicomHeader | None],
        files: Sequence[Path | None],  # None: a slice missing from the series
        shape: tuple[int, int, int],
        dtype: np.dtype,
        rescale: bool,
    ) -> None:
        self.headers, self.files, self.shape, self.dtype = headers, files, shape, dtype
        self.rescale = rescale

    def read(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        from ..dicom import decode as decode_dicom

        header = self.headers[z]
        if header is None:
            return self._zeros(out)
        arr = decode_dicom(header, self.dtype, self.rescale)
        if out is not None:
            out[...] = arr
            return out
        return arr

    def path_of(self, z: int) -> Path | None:
        return self.files[z]

    def sources(self) -> list[Path]:
        return [f for f in self.files if f is not None]


class MultipageReader(SliceReader):
    """A volume in one TIFF (ImageJ hyperstack, OME-TIFF, BigTIFF, tifffile 'shaped')."""

    def __init__(
        self,
        path: Path,
        pages: list[int],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        colour: bool,
        contiguous: tuple[int, tuple[int, ...], np.dtype] | None,
        kind: str,
        axes: str,
        stored_shape: tuple[int, ...],
        notes: list[str],
    ) -> None:
        self.path, self.pages, self.shape, self.dtype = path, pages, shape, dtype
        self.colour, self.contiguous, self.kind = colour, contiguous, kind
        self.axes, self.stored_shape, self.notes = axes, stored_shape, notes
        self._lock = threading.Lock()
        self._tif: Any = None  # a tifffile.TiffFile, opened on first read

    @classmethod
    def open(cls, path: Path, channel: int = 0, time: int = 0) -> MultipageReader:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, stored = series.axes, tuple(series.shape)
            kind = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
            if tif.is_bigtiff:
                kind = "big" + kind
            if "Y" not in axes or "X" not in axes:
                raise UnsupportedFormat(f"{path}: TIFF series with axes {axes} has no Y/X")
            lead = [(i, a) for i, a in enumerate(axes) if a not in "YXS"]
            zaxis = next((a for a in "ZQI" if a in axes), None)
            notes: list[str] = []
            picks: dict[str, int] = {}
            for i, a in lead:
                if a == zaxis:
                    continue
                want = channel if a == "C" else time if a == "T" else 0
                if not 0 <= want < stored[i]:
                    raise InvalidArgument(
                        f"{path}: {'channel' if a == 'C' else 'time' if a == 'T' else a} "
                        f"{want} out of range (0..{stored[i] - 1})"
                    )
                if stored[i] > 1:
                    what = {"C": "channels", "T": "time points"}.get(a, f"entries on axis {a}")
                    notes.append(f"{path}: {stored[i]} {what}; opened {a.lower()}={want}")
                picks[a] = want
            lead_shape = tuple(stored[i] for i, _ in lead)
            depth = stored[axes.index(zaxis)] if zaxis else 1
            pages = []
            for z in range(depth):
                idx = tuple(z if a == zaxis else picks[a] for _, a in lead)
                pages.append(int(np.ravel_multi_index(idx, lead_shape)) if lead else 0)
            n_pages = int(np.prod(lead_shape)) if lead else 1
            contiguous = None
            if len(series.pages) != n_pages:
                if series.dataoffset is None:
                    raise UnsupportedFormat(
                        f"{path}: {n_pages} planes but {len(series.pages)} pages and no "
                        "contiguous data; cannot read planes one by one"
                    )
                plane = stored[len(lead) :]
                contiguous = (series.dataoffset, plane, series.dtype.newbyteorder(tif.byteorder))
            y, x = stored[axes.index("Y")], stored[axes.index("X")]
            colour = "S" in axes and stored[axes.index("S")] >= 3
            if colour:
                notes.append(f"{path}: colour planes converted to luminance (ITU-R 601-2)")
            dtype = map_dtype(series.dtype, path)
            check_plane(path, (y, x), dtype)
        return cls(path, pages, (depth, y, x), dtype, colour, contiguous, kind, axes, stored, notes)

    def _open(self) -> Any:
        import tifffile

        if self._tif is None:
            self._tif = tifffile.TiffFile(self.path)
        return self._tif

    def read(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        idx = self.pages[z]
        try:
            with self._lock:
                if self.contiguous is not None:
                    arr = self._read_contiguous(self.contiguous, idx)
                else:
                    page = self._open().series[0].pages[idx]
                    if out is not None and not self.colour and page.dtype == self.dtype:
                        page.asarray(out=out.view())  # a view: tifffile reshapes it in place
                        return out
                    arr = page.asarray()
        except Exception as exc:
            raise UnreadableSlice(f"{self.path}: page {idx} ({type(exc).__name__}: {exc})") from exc
        if self.colour:
            if arr.shape[-1] not in (3, 4) and arr.shape[0] in (3, 4):
                arr = np.moveaxis(arr, 0, -1)
            arr = luminance(arr)
        arr = arr.reshape(self.shape[1:])
        if out is not None:
            np.copyto(out, arr, casting="unsafe")
            return out
        return arr.astype(self.dtype, copy=False)

    def _read_contiguous(
        self, contiguous: tuple[int, tuple[int, ...], np.dtype], idx: int
    ) -> np.ndarray:
        offset, plane, dtype = contiguous
        count = int(np.prod(plane))
        with open(self.path, "rb") as fh:
            fh.seek(offset + idx * count * dtype.itemsize)
            arr = np.fromfile(fh, dtype=dtype, count=count)
        if arr.size != count:
            raise UnreadableSlice(f"{self.path}: plane {idx} is truncated")
        return arr.reshape(plane).astype(dtype.newbyteorder("="))

    def path_of(self, z: int) -> Path | None:
        return self.path

    def sources(self) -> list[Path]:
        return [self.path]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_tif"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class NgffReader(SliceReader):
    """An OME-Zarr image: level 0 from its first dataset, the others as stored levels."""

    def __init__(self, image: NgffImage) -> None:
        from ..ngff import level_dask

        self.image, self.shape, self.dtype = image, image.shape, image.dtype
        self.dask_level0 = level_dask(image, 0, per_slice=True)

    def read(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        try:
            arr = self.image.read_plane(z)
            if out is not None:
                out[...] = arr
                return out
        except Exception as exc:
            raise UnreadableSlice(
                f"{self.image.path}: z={z} ({type(exc).__name__}: {exc})"
            ) from exc
        return arr

    def path_of(self, z: int) -> Path | None:
        return self.image.path

    def extra_levels(self) -> list[da.Array]:
        from ..ngff import level_dask

        return [
            level_dask(self.image, k, per_slice=False) for k in range(1, len(self.image.arrays))
        ]

    def sources(self) -> list[Path]:
        base = self.image.path / self.image.arrays[0].path
        out: list[Path] = []
        for dirpath, _, names in os.walk(base):
            out.extend(Path(dirpath) / n for n in names)
        return sorted(out) or [base]

    def token(self) -> object:
        return str(self.image.path)
