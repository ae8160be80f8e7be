"""Read an OME-Zarr image (NGFF 0.4 on zarr v2, 0.5 on zarr v3) as (z, y, x) levels.

Only metadata is read at open; the stored levels become the stack's levels, and level 0's
scale and translation give the voxel size and origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidArgument, UnsupportedFormat
from .io import map_dtype
from .metadata import PIXEL, normalise_unit


def is_ome_zarr(path: Path) -> bool:
    """A folder with zarr group metadata (zarr.json for v3, .zgroup/.zattrs for v2)."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup")
    )


@dataclass
class NgffImage:
    """One multiscale image: arrays per level and the index that reduces each to (z, y, x)."""

    path: Path
    version: str
    arrays: list[Any]  # zarr arrays, level 0 first
    # per stored axis: an int (channel/time chosen) or slice(None) for z, y, x
    index: tuple[int | slice, ...]
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    unit: str
    dtype: np.dtype
    shape: tuple[int, int, int]
    add_z: bool = False  # a 2D image: z of length 1 is added
    warnings: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def level_shape(self, level: int) -> tuple[int, int, int]:
        arr = self.arrays[level]
        dims = [n for n, i in zip(arr.shape, self.index, strict=True) if isinstance(i, slice)]
        z, y, x = [1, *dims] if self.add_z else dims
        return (z, y, x)

    def read_plane(self, z: int, level: int = 0) -> np.ndarray:
        """One (y, x) plane of a level, converted to the stack dtype."""
        arr = self.arrays[level]
        index: list[int | slice] = list(self.index)
        if not self.add_z:
            zpos = next(i for i, v in enumerate(index) if isinstance(v, slice))
            index[zpos] = z
        return np.asarray(arr[tuple(index)]).astype(self.dtype, copy=False)


def _transforms(
    items: list[dict[str, Any]] | None,
) -> tuple[list[float] | None, list[float] | None]:
    scale = translation = None
    for t in items or []:
        if t.get("type") == "scale":
            scale = [float(v) for v in t.get("scale", [])]
        elif t.get("type") == "translation":
            translation = [float(v) for v in t.get("translation", [])]
    return scale, translation


def open_ngff(path: Path, channel: int = 0, time: int = 0) -> NgffImage:
    """Open the multiscale image at `path`; raise UnsupportedFormat when it is not OME-Zarr."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise UnsupportedFormat(f"{path}: not a readable zarr group ({exc})") from exc
    attrs: dict[str, Any] = group.attrs.asdict()  # JSON: checked as it is read
    ome = attrs.get("ome", {})
    multiscales = ome.get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        raise UnsupportedFormat(f"{path}: a zarr group without OME-Zarr 'multiscales' metadata")
    ms = multiscales[0]
    version = str(ome.get("version") or ms.get("version") or "")
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
    datasets = ms.get("datasets", [])
    try:
        arrays: list[Any] = [group[d["path"]] for d in datasets]
    except (KeyError, TypeError) as exc:
        raise UnsupportedFormat(
            f"{path}: a level listed in 'multiscales' is missing ({exc})"
        ) from exc
    if not arrays:
        raise UnsupportedFormat(f"{path}: OME-Zarr 'multiscales' lists no datasets")
    ndim = arrays[0].ndim
    if not axes:  # NGFF 0.1-0.3 without axes: assume t, c, z, y, x ending
        axes = [{"name": n} for n in "tczyx"[-ndim:]]
    if len(axes) != ndim:
        raise UnsupportedFormat(f"{path}: {len(axes)} axes in metadata, {ndim} in the array")
    names = [a.get("name", "").lower() for a in axes]
    types = [a.get("type") or _guess_type(n) for a, n in zip(axes, names, strict=True)]
    space = [i for i, t in enumerate(types) if t == "space"][-3:]
    if len(space) < 2:
        raise UnsupportedFormat(f"{path}: OME-Zarr image with fewer than 2 spatial axes")
    notes: list[str] = []
    index: list[int | slice] = []
    for i, (name, typ) in enumerate(zip(names, types, strict=True)):
        if i in space:
            index.append(slice(None))
            continue
        size = arrays[0].shape[i]
        want = channel if typ == "channel" else time if typ == "time" else 0
        if not 0 <= want < size:
            raise InvalidArgument(f"{path}: {name or typ} {want} out of range (0..{size - 1})")
        if size > 1:
            notes.append(f"{path}: {size} {typ or name} entries; showing {name} {want}")
        index.append(want)
    scale, translation = _transforms(datasets[0].get("coordinateTransformations"))
    gscale, gtrans = _transforms(ms.get("coordinateTransformations"))
    # The file's transforms are not checked against ndim: entries past it are ignored.
    scale = [a * b for a, b in zip(scale or [1.0] * ndim, gscale or [1.0] * ndim, strict=False)]
    translation = [
        a * s + b
        for a, s, b in zip(
            translation or [0.0] * ndim,
            gscale or [1.0] * ndim,
            gtrans or [0.0] * ndim,
            strict=False,  # as above: the file's transforms may be longer than ndim
        )
    ]
    vox = [scale[i] for i in space]
    org = [translation[i] for i in space]
    units = {normalise_unit(axes[i].get("unit")) for i in space}
    unit = units.pop() if len(units) == 1 else None
    if unit is None:
        unit = PIXEL
    add_z = len(space) == 2
    if add_z:
        vox, org = [1.0, *vox], [0.0, *org]
    dtype = map_dtype(arrays[0].dtype, path)
    image = NgffImage(
        path=path,
        version=version,
        arrays=arrays,
        index=tuple(index),
        voxel_size=(vox[0], vox[1], vox[2]),
        origin=(org[0], org[1], org[2]),
        unit=unit,
        dtype=dtype,
        shape=(0, 0, 0),
        add_z=add_z,
        warnings=notes,
        attrs=attrs,
    )
    image.shape = image.level_shape(0)
    return image


def _guess_type(name: str) -> str | None:
    return {"x": "space", "y": "space", "z": "space", "c": "channel", "t": "time"}.get(name)


def level_dask(image: NgffImage, level: int, per_slice: bool) -> Any:
    """A dask view of one level as (z, y, x); level 0 gets one chunk per z slice."""
    import dask.array as da

    arr = image.arrays[level]
    if per_slice:
        chunks = tuple(
            1 if not isinstance(i, slice) else n
            for i, n in zip(image.index, arr.shape, strict=True)
        )
        if not image.add_z:
            zpos = next(i for i, v in enumerate(image.index) if isinstance(v, slice))
            chunks = tuple(1 if i == zpos else c for i, c in enumerate(chunks))
        data = da.from_zarr(arr, chunks=chunks)
    else:
        data = da.from_zarr(arr)
    data = data[image.index]
    if image.add_z:
        data = data[None]
    if data.dtype != image.dtype:
        data = data.astype(image.dtype)
    return data
