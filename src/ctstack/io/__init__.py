"""Reading pixels: raster slice headers and decoding (``raster``), per-source slice readers."""

from __future__ import annotations

from .raster import (
    MAX_SLICE_PIXELS,
    SliceHeader,
    decode,
    luminance,
    map_dtype,
    read_header,
    sniff,
)

__all__ = [
    "MAX_SLICE_PIXELS",
    "SliceHeader",
    "decode",
    "luminance",
    "map_dtype",
    "read_header",
    "sniff",
]
