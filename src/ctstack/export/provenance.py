"""The record every export carries: source, region, level, voxel size, origin, program version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .regions import Region

if TYPE_CHECKING:
    from ..stack import Stack

# ImageJ / OME spellings of the normalised units
IMAGEJ_UNITS = {"nanometer": "nm", "micrometer": "micron", "millimeter": "mm", "centimeter": "cm"}
OME_UNITS = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "centimeter": "cm"}


def record(stack: Stack, region: Region, fmt: str, window=None) -> dict:
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
