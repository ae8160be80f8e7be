"""Reading pixels: raster slice headers and decoding (``raster``), per-source slice readers."""

from __future__ import annotations

from .raster import (
    MAX_SLICE_BYTES_ENV,
    MAX_SLICE_PIXELS,
    SliceHeader,
    check_plane,
    decode,
    luminance,
    map_dtype,
    max_slice_bytes,
    not_regular,
    read_header,
    sniff,
)

__all__ = [
    "MAX_SLICE_BYTES_ENV",
    "MAX_SLICE_PIXELS",
    "SliceHeader",
    "check_plane",
    "decode",
    "luminance",
    "map_dtype",
    "max_slice_bytes",
    "not_regular",
    "read_header",
    "sniff",
]
