"""The record every export carries: source, region, level, voxel size, origin, program version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .regions import Region

if TYPE_CHECKING:
    from ..stack import Stack

PROVENANCE_TAG = 65000  # private TIFF tag holding the provenance JSON (ASCII)

# ImageJ / OME spellings of the normalised units
IMAGEJ_UNITS = {"nanometer": "nm", "micrometer": "micron", "millimeter": "mm", "centimeter": "cm"}
OME_UNITS = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "centimeter": "cm"}


def record(
    stack: Stack, region: Region, fmt: str, window: tuple[float, float] | None = None
) -> dict[str, Any]:
    """A JSON-friendly provenance dict (stored as TIFF tag / zarr attribute / PNG text)."""
    from .. import __version__

    return {
        "program": f"ctstack {__version__}",
        "source": str(stack.path),
        "series": stack.pattern,
        "source_shape": list(stack.shape),
        "source_dtype": str(stack.dtype),
        "region": [list(r) for r in region.full],
        "level": region.level,
        "level_region": [list(r) for r in region.ranges],
        "voxel_size": list(region.voxel_size),
        "unit": region.unit,
        "origin": list(region.origin),
        "format": fmt,
        "window": list(window) if window is not None else None,
    }


def imagej_metadata(
    voxel: tuple[float, float, float], origin: tuple[float, float, float], unit: str, info: str
) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """ImageJ metadata (spacing, unit, origin in voxels) and the TIFF resolution to pass."""
    vz, vy, vx = voxel
    oz, oy, ox = origin
    meta: dict[str, Any] = {"spacing": vz, "Info": info}
    if unit not in IMAGEJ_UNITS:
        return meta, None
    meta.update(unit=IMAGEJ_UNITS[unit], xorigin=-ox / vx, yorigin=-oy / vy, zorigin=-oz / vz)
    return meta, (1 / vx, 1 / vy)


def ome_metadata(
    voxel: tuple[float, float, float],
    origin: tuple[float, float, float],
    unit: str,
    axes: str,
    n_planes: int,
) -> dict[str, Any]:
    """OME metadata for tifffile: physical sizes and each plane's position, when units are real."""
    vz, vy, vx = voxel
    oz, oy, ox = origin
    meta: dict[str, Any] = {"axes": axes}
    u = OME_UNITS.get(unit)
    if not u:
        return meta
    meta.update(
        PhysicalSizeX=vx,
        PhysicalSizeXUnit=u,
        PhysicalSizeY=vy,
        PhysicalSizeYUnit=u,
        PhysicalSizeZ=vz,
        PhysicalSizeZUnit=u,
        Plane={
            "PositionX": [ox] * n_planes,
            "PositionY": [oy] * n_planes,
            "PositionZ": [oz + i * vz for i in range(n_planes)],
            "PositionXUnit": [u] * n_planes,
            "PositionYUnit": [u] * n_planes,
            "PositionZUnit": [u] * n_planes,
        },
    )
    return meta
