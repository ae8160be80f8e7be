"""One multi-page TIFF of the region: ImageJ hyperstack where ImageJ allows it (uint8, uint16,
float32, under 4 GiB), else a BigTIFF with OME-XML. Pages are streamed one plane at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .provenance import PROVENANCE_TAG, imagej_metadata, ome_metadata
from .regions import Region
from .slices import IMAGEJ_DTYPES

IMAGEJ_LIMIT = 2**32 - 2**25  # bytes of pixels: classic TIFF offsets are 32-bit


def flavour(region: Region, dtype: np.dtype) -> str:
    """``"imagej"`` or ``"ome-bigtiff"`` for this region and dtype."""
    nbytes = int(np.prod(region.shape)) * np.dtype(dtype).itemsize
    if np.dtype(dtype).name in IMAGEJ_DTYPES and nbytes < IMAGEJ_LIMIT:
        return "imagej"
    return "ome-bigtiff"


def write_stack(
    path: Path, planes: Iterator[np.ndarray], region: Region, dtype: np.dtype, prov: dict[str, Any]
) -> str:
    """Write all planes (in z order) to ``path``; returns the flavour written."""
    import tifffile

    from .. import __version__

    kind = flavour(region, dtype)
    text = json.dumps(prov)
    kwargs: dict[str, Any] = {
        "shape": region.shape,
        "dtype": np.dtype(dtype),
        "photometric": "minisblack",
        "software": f"ctstack {__version__}",
        "extratags": [(PROVENANCE_TAG, "s", 0, text, True)],
    }
    if kind == "imagej":
        meta, resolution = imagej_metadata(region.voxel_size, region.origin, region.unit, text)
        meta["axes"] = "ZYX"
        if resolution is not None:
            kwargs["resolution"] = resolution
        kwargs["metadata"] = meta
        writer = tifffile.TiffWriter(path, imagej=True)
    else:
        n = region.shape[0]
        kwargs["metadata"] = ome_metadata(region.voxel_size, region.origin, region.unit, "ZYX", n)
        writer = tifffile.TiffWriter(path, bigtiff=True, ome=True)
    with writer:
        writer.write(planes, **kwargs)
    return kind
