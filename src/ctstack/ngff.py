"""Read an OME-Zarr image (NGFF 0.4 on zarr v2, 0.5 on zarr v3) as (z, y, x) levels.

Only metadata is read at open; the stored levels become the stack's levels, and level 0's
scale and translation give the voxel size and origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidArgument, UnsupportedFormat
from .io import check_plane, map_dtype
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


def _bad(path: Path, what: str) -> UnsupportedFormat:
    return UnsupportedFormat(f"{path}: invalid OME-Zarr metadata: {what}")


def _numbers(path: Path, value: Any, what: str, ndim: int) -> list[float]:
    """A list of at least ``ndim`` JSON numbers (entries past ndim are ignored)."""
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise _bad(path, f"{what} must be a list of numbers, got {json_short(value)}")
    if len(value) < ndim:
        raise _bad(path, f"{what} has {len(value)} values for {ndim} axes")
    return [float(v) for v in value[:ndim]]


def json_short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _transforms(
    path: Path, items: Any, ndim: int, where: str, notes: list[str]
) -> tuple[list[float] | None, list[float] | None]:
    scale = translation = None
    if items is None:
        return None, None
    if not isinstance(items, list):
        notes.append(f"{path}: {where} coordinateTransformations is not a list; ignored")
        return None, None
    for t in items:
        if not isinstance(t, dict):
            notes.append(f"{path}: {where} coordinateTransformations entry {t!r} ignored")
            continue
        if t.get("type") == "scale":
            scale = _numbers(path, t.get("scale"), f"{where} scale", ndim)
        elif t.get("type") == "translation":
            translation = _numbers(path, t.get("translation"), f"{where} translation", ndim)
    return scale, translation


def _level_path(path: Path, dataset: Any, k: int) -> str:
    if not isinstance(dataset, dict):
        raise _bad(path, f"dataset {k} is {json_short(dataset)}, not an object")
    name = dataset.get("path")
    if not isinstance(name, str) or not name.strip():
        raise _bad(path, f"dataset {k} has no path (got {json_short(name)})")
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or ":" in name:
        raise _bad(path, f"dataset {k} path {name!r} is not a plain relative path inside it")
    return name


def _axes(path: Path, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad(path, f"'axes' must be a list, got {json_short(raw)}")
    out: list[dict[str, Any]] = []
    for a in raw:
        if isinstance(a, str):  # NGFF 0.3: names only
            a = {"name": a}
        if not isinstance(a, dict) or not isinstance(a.get("name", ""), str):
            raise _bad(path, f"axis {json_short(a)} is not an object with a name")
        if not isinstance(a.get("type") or "", str):
            raise _bad(path, f"axis {a.get('name')!r} has type {json_short(a.get('type'))}")
        out.append(a)
    return out


def _open_level(group: Any, path: Path, name: str) -> Any:
    import zarr

    try:
        arr = group[name]
    except KeyError as exc:
        raise UnsupportedFormat(
            f"{path}: a level listed in 'multiscales' is missing ({name!r})"
        ) from exc
    except Exception as exc:  # broken .zarray / zarr.json: whatever zarr raised
        raise UnsupportedFormat(
            f"{path}: level {name!r} has unreadable array metadata ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(arr, zarr.Array):
        raise UnsupportedFormat(f"{path}: level {name!r} is not an array")
    if not all(int(n) > 0 for n in arr.shape):
        raise UnsupportedFormat(f"{path}: level {name!r} is empty (shape {tuple(arr.shape)})")
    chunks = getattr(arr, "chunks", None)
    if chunks is not None and not all(int(c) > 0 for c in chunks):
        raise UnsupportedFormat(f"{path}: level {name!r} has chunks {tuple(chunks)}")
    return arr


def open_ngff(path: Path, channel: int = 0, time: int = 0) -> NgffImage:
    """Open the multiscale image at `path`; raise UnsupportedFormat when it is not OME-Zarr.

    The metadata is checked as it is read: anything malformed is an UnsupportedFormat naming
    the image, never a traceback. A scale that is zero, negative or not finite gives unit
    ``pixel`` and a voxel size of 1, with a warning.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs: dict[str, Any] = dict(group.attrs.asdict())
    except Exception as exc:
        raise UnsupportedFormat(f"{path}: not a readable zarr group ({exc})") from exc
    ome = attrs.get("ome")
    if not isinstance(ome, dict):
        ome = {}
    multiscales = ome.get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        raise UnsupportedFormat(f"{path}: a zarr group without OME-Zarr 'multiscales' metadata")
    if not isinstance(multiscales, list):
        raise _bad(path, f"'multiscales' must be a list, got {json_short(multiscales)}")
    ms = multiscales[0]
    if not isinstance(ms, dict):
        raise _bad(path, f"'multiscales' entry {json_short(ms)} is not an object")
    version = str(ome.get("version") or ms.get("version") or "")
    axes = _axes(path, ms.get("axes"))
    datasets = ms.get("datasets")
    if not isinstance(datasets, list):
        raise _bad(path, f"'datasets' must be a list, got {json_short(datasets)}")
    if not datasets:
        raise UnsupportedFormat(f"{path}: OME-Zarr 'multiscales' lists no datasets")
    names = [_level_path(path, d, k) for k, d in enumerate(datasets)]
    arrays: list[Any] = [_open_level(group, path, n) for n in names]
    ndim = arrays[0].ndim
    for name, arr in zip(names, arrays, strict=True):
        if arr.ndim != ndim:
            raise _bad(path, f"level {name!r} has {arr.ndim} dimensions, level 0 has {ndim}")
    if not axes:  # NGFF 0.1-0.3 without axes: assume t, c, z, y, x ending
        if ndim > 5:
            raise _bad(path, f"no axes for a {ndim}-dimensional array")
        axes = [{"name": n} for n in "tczyx"[-ndim:]]
    if len(axes) != ndim:
        raise UnsupportedFormat(f"{path}: {len(axes)} axes in metadata, {ndim} in the array")
    axis_names = [str(a.get("name", "")).lower() for a in axes]
    types = [a.get("type") or _guess_type(n) for a, n in zip(axes, axis_names, strict=True)]
    space = [i for i, t in enumerate(types) if t == "space"][-3:]
    if len(space) < 2:
        raise UnsupportedFormat(f"{path}: OME-Zarr image with fewer than 2 spatial axes")
    notes: list[str] = []
    index: list[int | slice] = []
    for i, (name, typ) in enumerate(zip(axis_names, types, strict=True)):
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
    ds0 = datasets[0]
    scale, translation = _transforms(
        path, ds0.get("coordinateTransformations"), ndim, "level 0", notes
    )
    gscale, gtrans = _transforms(
        path, ms.get("coordinateTransformations"), ndim, "multiscale", notes
    )
    # entries past ndim are ignored (_numbers keeps ndim of them)
    scale = [a * b for a, b in zip(scale or [1.0] * ndim, gscale or [1.0] * ndim, strict=True)]
    translation = [
        a * s + b
        for a, s, b in zip(
            translation or [0.0] * ndim,
            gscale or [1.0] * ndim,
            gtrans or [0.0] * ndim,
            strict=True,
        )
    ]
    vox = [scale[i] for i in space]
    org = [translation[i] for i in space]
    units = set()
    for i in space:
        raw_unit = axes[i].get("unit")
        units.add(normalise_unit(raw_unit) if isinstance(raw_unit, str) else None)
    unit = units.pop() if len(units) == 1 else None
    if unit is None:
        unit = PIXEL
    if not all(math.isfinite(v) and v > 0 for v in vox):
        notes.append(
            f"{path}: OME-Zarr scale {vox} is not a positive finite size; voxel size set to 1 pixel"
        )
        vox, unit = [1.0] * len(vox), PIXEL
    if not all(math.isfinite(v) for v in org):
        notes.append(f"{path}: OME-Zarr translation {org} is not finite; origin set to 0")
        org = [0.0] * len(org)
    add_z = len(space) == 2
    if add_z:
        vox, org = [1.0, *vox], [0.0, *org]
    try:
        dtype = map_dtype(arrays[0].dtype, path)
    except TypeError as exc:
        raise UnsupportedFormat(f"{path}: level 0 has pixel type {arrays[0].dtype}") from exc
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
    check_plane(path, image.shape[1:], dtype)
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
