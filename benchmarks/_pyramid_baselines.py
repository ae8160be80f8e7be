"""The competitors of ``ctstack pyramid`` in ``bench_pyramid.py``, each a careful, ordinary use
of its tool, written for this benchmark (no ctstack code: each runs in its own process).

Every builder takes the sorted slice files, writes levels 1..n (halving, rounding up, until
the largest axis is at most ``max_size``, the same levels as ctstack) as uncompressed zarr v3
arrays ``out/1``, ``out/2``, ... with one chunk per z-plane, and returns the level shapes.
Each level is made from the previous one, as ctstack's cascade does. The read floor reads
every slice and nothing else.

- ``read_floor``: ``tifffile.imread(out=buf)`` per slice into one reused buffer, one thread.
- ``build_dask``: a stack of ``dask.delayed(tifffile.imread)``, ``da.coarsen(np.mean)`` per
  level rounded half up (the sums of 8 integers are exact in float64, so this is ctstack's
  rounding), every level written by one ``da.store`` (threaded scheduler, shared graph).
- ``build_tensorstore``: the slices as a ``ts.virtual_chunked`` array (tifffile reads one slice
  per chunk; tensorstore has no uint16 TIFF driver), ``ts.downsample(..., "mean")`` written to
  a ``zarr3`` array, level after level (tensorstore's own integer rounding).
- ``build_pillow``: the reference desktop app's method: per pair of slices, their average
  (integer, half up), then Pillow's ``BOX`` resize to half size; level after level, each
  level read back from the one just written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

Shape = tuple[int, int, int]


def slice_files(folder: str | Path) -> list[Path]:
    """The TIFF slices of a phantom stack folder, in order."""
    return sorted(Path(folder).glob("*.tif"))


def stack_geometry(files: Sequence[Path]) -> tuple[Shape, np.dtype]:
    """(z, y, x) and dtype from the first slice's header (all slices alike)."""
    import tifffile

    with tifffile.TiffFile(files[0]) as tif:
        page = tif.pages.first
        ny, nx = page.shape
        return (len(files), int(ny), int(nx)), np.dtype(page.dtype)


def level_shapes(shape: Shape, max_size: int) -> list[Shape]:
    """Halve (rounding up) until the largest axis is at most max_size: ctstack's levels."""
    shapes = []
    current = tuple(int(n) for n in shape)
    while max(current) > max_size:
        current = tuple((n + 1) // 2 for n in current)
        shapes.append(current)
    return shapes  # type: ignore[return-value]


def _zarr_level(out: Path, level: int, shape: Shape, dtype: np.dtype):
    """An uncompressed zarr v3 array, one chunk per z-plane, for one level."""
    import zarr

    return zarr.create_array(
        store=str(out / str(level)),
        shape=shape,
        chunks=(1, shape[1], shape[2]),
        dtype=dtype,
        compressors=None,
        fill_value=0,
        zarr_format=3,
        overwrite=True,
    )


# ---------------------------------------------------------------- 1. the read floor


def read_floor(files: Sequence[Path]) -> int:
    """Decode every slice into one reused buffer; returns a checksum-ish value."""
    import tifffile

    shape, dtype = stack_geometry(files)
    buf = np.empty(shape[1:], dtype)
    for f in files:
        tifffile.imread(f, out=buf)
    return int(buf[0, 0])


# ---------------------------------------------------------------- 3. dask


def build_dask(files: Sequence[Path], out: Path, max_size: int) -> list[Shape]:
    import dask
    import dask.array as da
    import tifffile

    shape, dtype = stack_geometry(files)
    shapes = level_shapes(shape, max_size)
    read = dask.delayed(tifffile.imread, pure=True)
    current = da.stack(
        [da.from_delayed(read(f), shape=shape[1:], dtype=dtype) for f in files], axis=0
    )
    levels = []
    for _ in shapes:
        odd = [(0, n % 2) for n in current.shape]
        if any(p for _, p in odd):  # edge padding: a partial block averages the voxels present
            current = da.pad(current, odd, mode="edge")
        mean = da.coarsen(np.mean, current, {0: 2, 1: 2, 2: 2}, trim_excess=False)
        current = da.floor(mean + 0.5).astype(dtype)
        levels.append(current.rechunk((1, -1, -1)))
    targets = [_zarr_level(out, i, s, dtype) for i, s in enumerate(shapes, start=1)]
    da.store(levels, targets, lock=False)
    return shapes


# ---------------------------------------------------------------- 4. tensorstore


def build_tensorstore(files: Sequence[Path], out: Path, max_size: int) -> list[Shape]:
    import tensorstore as ts
    import tifffile

    shape, dtype = stack_geometry(files)
    shapes = level_shapes(shape, max_size)

    def read_chunk(domain, array, _params):
        z0, z1 = domain.inclusive_min[0], domain.exclusive_max[0]
        for i, z in enumerate(range(z0, z1)):
            if array[i].flags.c_contiguous:
                tifffile.imread(files[z], out=array[i])
            else:
                array[i] = tifffile.imread(files[z])

    source = ts.virtual_chunked(
        read_chunk,
        dtype=dtype,
        shape=shape,
        chunk_layout=ts.ChunkLayout(read_chunk_shape=[1, shape[1], shape[2]]),
    )
    for level, s in enumerate(shapes, start=1):
        target = ts.open(
            {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(out / str(level))},
                "metadata": {
                    "shape": list(s),
                    "data_type": dtype.name,
                    "chunk_grid": {
                        "name": "regular",
                        "configuration": {"chunk_shape": [1, s[1], s[2]]},
                    },
                    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                    "fill_value": 0,
                },
            },
            create=True,
            delete_existing=True,
        ).result()
        target.write(ts.downsample(source, [2, 2, 2], method="mean")).result()
        source = target
    return shapes


# ---------------------------------------------------------------- 5. Pillow (reference app)


def _box_half(plane: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Pillow's BOX resize to half size (odd edges padded so a box never straddles)."""
    from PIL import Image

    ny, nx = plane.shape
    if ny % 2 or nx % 2:
        plane = np.pad(plane, ((0, ny % 2), (0, nx % 2)), mode="edge")
    image = Image.fromarray(plane)
    half = image.resize((plane.shape[1] // 2, plane.shape[0] // 2), Image.Resampling.BOX)
    return np.asarray(half, dtype=dtype)


def build_pillow(files: Sequence[Path], out: Path, max_size: int) -> list[Shape]:
    import tifffile
    import zarr

    shape, dtype = stack_geometry(files)
    shapes = level_shapes(shape, max_size)
    wide = np.uint32 if dtype.itemsize <= 2 else np.uint64
    source = None  # None: the TIFF slices; else the zarr array of the level just written
    nz = shape[0]
    for level, s in enumerate(shapes, start=1):
        a = np.empty(_plane_shape(shape, level - 1, shapes), dtype)
        b = np.empty_like(a)
        pair = np.empty(a.shape, wide)
        target = _zarr_level(out, level, s, dtype)
        for zo in range(s[0]):
            for z, buf in ((2 * zo, a), (min(2 * zo + 1, nz - 1), b)):
                if source is None:
                    tifffile.imread(files[z], out=buf)
                else:
                    buf[...] = source[z]
            np.add(a, b, out=pair, dtype=wide)
            pair += 1
            pair >>= 1
            target[zo] = _box_half(pair.astype(dtype), dtype)
        source = zarr.open_array(str(out / str(level)), mode="r")
        nz = s[0]
    return shapes


def _plane_shape(shape: Shape, level: int, shapes: Sequence[Shape]) -> tuple[int, int]:
    """(y, x) of level ``level`` (0: the source)."""
    s = shape if level == 0 else shapes[level - 1]
    return s[1], s[2]


BUILDERS = {"dask": build_dask, "tensorstore": build_tensorstore, "pillow": build_pillow}
