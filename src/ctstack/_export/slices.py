"""A folder of 2D slices (TIFF, PNG or BMP), named and numbered as docs/export.md says.

Level 0 keeps the source prefix, padding and file numbers (a z-crop 120..860 keeps 120..859);
other levels are numbered from 0 with the same prefix and padding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .._readahead import ReadAhead
from ..discovery import parse_name
from ..errors import UnsupportedExport
from .guard import staged_file
from .provenance import PROVENANCE_TAG, imagej_metadata, ome_metadata
from .regions import Region
from .writing import named

if TYPE_CHECKING:
    from ..stack import Stack

EXTENSIONS = {"tiff": ".tif", "png": ".png", "bmp": ".bmp"}
ALLOWED = {"png": ("uint8", "uint16"), "bmp": ("uint8",)}
IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
WRITE_THREADS = 2
WRITE_AHEAD = 4  # files in flight


def check_dtype(fmt: str, dtype: np.dtype) -> None:
    """PNG holds 8/16-bit unsigned, BMP 8-bit; TIFF anything the engine reads."""
    allowed = ALLOWED.get(fmt)
    if allowed is not None and np.dtype(dtype).name not in allowed:
        raise UnsupportedExport(
            f"{fmt.upper()} cannot hold {np.dtype(dtype).name} data (it takes "
            f"{' or '.join(allowed)}); pass window=(low, high) for 8-bit output or use tiff"
        )


def naming(
    stack: Stack, region: Region, fmt: str, prefix: str | None = None
) -> Callable[[int], str]:
    """File name of region plane i: source prefix/padding, numbers kept at level 0."""
    ext = EXTENSIONS[fmt]
    numbering = stack.metadata.get("numbering") or {}
    src_prefix, suffix, digits = f"{stack.name}_", "", 4
    first, step = 0, 1
    if numbering and stack.files:
        parsed = parse_name(Path(stack.files[0]).name)
        if parsed.number is not None:
            src_prefix, suffix, digits = parsed.prefix, parsed.suffix, len(parsed.digits)
            first, step = int(numbering.get("first", 0)), int(numbering.get("step", 1))
    prefix = src_prefix if prefix is None else prefix
    z0 = region.ranges[0][0]
    if region.level == 0:

        def number(i: int) -> int:
            return first + (z0 + i) * step
    else:

        def number(i: int) -> int:
            return i

    width = max(digits, len(str(number(region.shape[0] - 1))))
    return lambda i: f"{prefix}{number(i):0{width}d}{suffix}{ext}"


def plane_bytes(region: Region, dtype: np.dtype) -> int:
    return region.shape[1] * region.shape[2] * np.dtype(dtype).itemsize


class SliceWriter:
    """Writes plane i of the region as one file in ``folder``."""

    def __init__(
        self,
        folder: Path,
        fmt: str,
        region: Region,
        name: Callable[[int], str],
        prov: dict[str, Any],
    ) -> None:
        self.folder = folder
        self.fmt = fmt
        self.region = region
        self.name = name
        self.prov = prov
        self.pool: ReadAhead[tuple[int, np.ndarray], Path] = ReadAhead(
            self._write_item, threads=WRITE_THREADS, ahead=WRITE_AHEAD, name="ctstack-write"
        )

    def __enter__(self) -> SliceWriter:
        self.pool.__enter__()
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Wait for the files in flight (errors surface here) or, on an error, drop them."""
        self.pool.__exit__(typ, exc, tb)

    def submit(self, i: int, plane: np.ndarray) -> None:
        """Write plane i on a writer thread (a few in flight; the plane must not be reused)."""
        self.pool.put((i, plane))

    def _write_item(self, item: tuple[int, np.ndarray]) -> Path:
        return self.write(*item)

    def write(self, i: int, plane: np.ndarray) -> Path:
        path = staged_file(self.folder, self.name(i))
        try:
            if self.fmt == "tiff":
                self._tiff(path, i, plane)
            else:
                self._pillow(path, i, plane)
        except OSError as exc:  # a short write names no file: name the slice being written
            named(exc, path)
            raise
        return path

    def _meta(self, i: int) -> str:
        return json.dumps({**self.prov, "z_index": self.region.ranges[0][0] + i})

    def _tiff(self, path: Path, i: int, plane: np.ndarray) -> None:
        import tifffile

        from .. import __version__

        vz = self.region.voxel_size[0]
        oz, oy, ox = self.region.origin
        z = oz + i * vz
        unit = self.region.unit
        kwargs: dict[str, Any] = {
            "photometric": "minisblack",
            "software": f"ctstack {__version__}",
            "extratags": [(PROVENANCE_TAG, "s", 0, self._meta(i), True)],
        }
        origin = (z, oy, ox)
        if plane.dtype.name in IMAGEJ_DTYPES:
            meta, resolution = imagej_metadata(self.region.voxel_size, origin, unit, self._meta(i))
            if resolution is not None:
                kwargs["resolution"] = resolution
            kwargs.update(imagej=True, metadata=meta)
        else:
            meta = ome_metadata(self.region.voxel_size, origin, unit, "YX", 1)
            kwargs.update(ome=True, metadata=meta)
        tifffile.imwrite(path, plane, **kwargs)

    def _pillow(self, path: Path, i: int, plane: np.ndarray) -> None:
        from PIL import Image, PngImagePlugin

        image = Image.fromarray(plane)
        with open(path, "wb") as fh:
            if self.fmt == "png":
                info = PngImagePlugin.PngInfo()
                info.add_text("ctstack", self._meta(i))
                image.save(fh, format="PNG", pnginfo=info, compress_level=1)
            else:
                image.save(fh, format="BMP")
