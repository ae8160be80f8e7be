"""Voxel size and unit from what lies beside or inside the slices, and unit normalisation.

Sources, in the order open_stack consults them: the user's override, a SkyScan/NRecon ``.log``
beside the slices, DICOM tags (see ``dicom``), OME-TIFF PhysicalSize*, ImageJ ``spacing`` and
``unit``, TIFF resolution tags with a real unit; else ``(1, 1, 1)`` pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidArgument

UNITS = ("nanometer", "micrometer", "millimeter", "centimeter")
PIXEL = "pixel"
_ALIASES = {
    "nm": "nanometer",
    "nanometer": "nanometer",
    "nanometre": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",  # micro sign
    "μm": "micrometer",  # greek mu
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "micrometre": "micrometer",
    "\\u00b5m": "micrometer",  # ImageJ escapes the micro sign in descriptions
    "mm": "millimeter",
    "millimeter": "millimeter",
    "millimetre": "millimeter",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "centimetre": "centimeter",
    "pixel": PIXEL,
    "pixels": PIXEL,
    "px": PIXEL,
}
# factors to convert into micrometres, for units that are not kept as such
_TO_MICROMETER = {"nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4}


def normalise_unit(unit: str | None) -> str | None:
    """Map 'um', 'µm', 'micron', 'mm', ... to the canonical name; None when not recognised."""
    if unit is None:
        return None
    key = str(unit).strip().lower().rstrip(".")
    return _ALIASES.get(key)


def user_unit(unit: str) -> str:
    """Normalise a unit given by the user, refusing what is not a length unit."""
    norm = normalise_unit(unit)
    if norm is None:
        raise InvalidArgument(f"unknown unit {unit!r}: use nm, um (µm, micron), mm, cm or pixel")
    return norm


def user_voxel_size(value: float | Iterable[float]) -> tuple[float, float, float]:
    """A scalar (isotropic) or a (z, y, x) triple of positive finite numbers."""
    try:
        values = [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"voxel_size {value!r} is not a number or a (z, y, x) triple"
        ) from exc
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidArgument(
            f"voxel_size {value!r} must be one or three positive numbers (z, y, x)"
        )
    return (values[0], values[1], values[2])


@dataclass
class VoxelInfo:
    """A voxel size found in one source, with where it came from and what else it said."""

    voxel_size: tuple[float, float, float]
    unit: str
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


# --- SkyScan / NRecon log ---------------------------------------------------------------------


def parse_ini_log(text: str) -> dict[str, dict[str, str]]:
    """Parse a SkyScan-style ``[Section]`` / ``Key=Value`` log, keeping every value as text."""
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    if not sections[""]:
        del sections[""]
    return sections


def read_text(path: Path) -> str:
    """Read a small text file as UTF-8, falling back to Latin-1 (old SkyScan logs use it)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def find_skyscan_log(folder: Path, prefix: str) -> Path | None:
    """The ``.log`` beside the slices: the one named like the series prefix, else the only one."""
    try:
        logs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".log" and p.is_file())
    except OSError:
        return None
    if not logs:
        return None
    stem = prefix.rstrip("_-. ").lower()
    for log in logs:
        if log.stem.lower() == stem or (stem and log.stem.lower().rstrip("_-. ") == stem):
            return log
    for log in logs:  # scan_rec0000.bmp with scan_rec.log, or scan_.log
        if stem and (stem.startswith(log.stem.lower()) or log.stem.lower().startswith(stem)):
            return log
    return logs[0] if len(logs) == 1 else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    match = re.match(r"\s*([-+]?\d+(?:[.,]\d*)?(?:[eE][-+]?\d+)?)", text)
    if not match:
        return None
    value = float(match.group(1).replace(",", "."))
    return value if math.isfinite(value) and value > 0 else None


def skyscan_voxel(log: Path, step: int = 1) -> VoxelInfo | None:
    """Voxel size from a SkyScan/NRecon log; z is the pixel size times the numbering step.

    NRecon numbers slices by their position in pixels, so a series saved every 2nd slice
    (numbers 0, 2, 4, ...) has slices 2 pixels apart.
    """
    try:
        sections = parse_ini_log(read_text(log))
    except OSError:
        return None
    recon = sections.get("Reconstruction", {})
    acq = sections.get("Acquisition", {})
    size = _number(recon.get("Pixel Size (um)"))
    where = "[Reconstruction] Pixel Size (um)"
    if size is None:
        size = _number(acq.get("Image Pixel Size (um)"))
        where = "[Acquisition] Image Pixel Size (um)"
    extra = {
        "log": str(log),
        "log_sections": sections,
        "scanner": sections.get("System", {}).get("Scanner"),
        "study_date": acq.get("Study Date and Time"),
        "reconstruction": recon or None,
    }
    extra = {k: v for k, v in extra.items() if v is not None}
    if size is None:
        return VoxelInfo((1.0, 1.0, 1.0), PIXEL, f"{log.name} (no pixel size)", extra)
    return VoxelInfo((size * step, size, size), "micrometer", f"{log.name} {where}", extra)


# --- TIFF metadata ----------------------------------------------------------------------------


def tiff_voxel(path: Path) -> VoxelInfo | None:
    """Voxel size from an OME-TIFF, an ImageJ TIFF, or resolution tags in centimetres."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = _ome_voxel(tif.ome_metadata)
                if found:
                    return found
            page = tif.pages.first
            if tif.is_imagej and tif.imagej_metadata is not None:
                found = _imagej_voxel(tif.imagej_metadata, page)
                if found:
                    return found
            return _resolution_voxel(page)
    except Exception:  # metadata is a nicety: never let it stop the open
        return None


def _ome_voxel(xml: str) -> VoxelInfo | None:
    match = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", xml)
    if not match:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
    sizes: list[float | None] = []
    units: list[str | None] = []
    for axis in "ZYX":
        value = _number(attrs.get(f"PhysicalSize{axis}"))
        unit = normalise_unit(attrs.get(f"PhysicalSize{axis}Unit", "µm"))
        sizes.append(value)
        units.append(unit)
    if sizes[1] is None and sizes[2] is None:
        return None
    unit = units[2] or units[1]
    if unit is None or unit == PIXEL:
        return None
    conv = [
        _convert(s, u, unit) if s is not None else None for s, u in zip(sizes, units, strict=True)
    ]
    y = conv[1] or conv[2]
    x = conv[2] or conv[1]
    if x is None or y is None:  # not reached: y or x was found above
        return None
    z = conv[0] or x
    return VoxelInfo((z, y, x), unit, "OME-TIFF PhysicalSize")


def _convert(value: float, unit: str | None, target: str) -> float:
    if unit in _TO_MICROMETER and target in _TO_MICROMETER:
        return value * _TO_MICROMETER[unit] / _TO_MICROMETER[target]
    return value


def _rational(value: Any) -> float | None:
    try:
        num, den = value
        return num / den if den else None
    except (TypeError, ValueError):
        return float(value) if value else None


def _imagej_voxel(meta: dict[str, Any], page: Any) -> VoxelInfo | None:
    unit = normalise_unit(meta.get("unit"))
    if unit is None or unit == PIXEL:
        return None
    xres = _rational(page.tags.valueof("XResolution"))
    yres = _rational(page.tags.valueof("YResolution"))
    x = 1 / xres if xres else None
    y = 1 / yres if yres else x
    x = x or y
    if x is None or y is None:  # y is None only when x is
        return None
    z = _number(str(meta.get("spacing"))) if meta.get("spacing") is not None else None
    return VoxelInfo((z or x, y, x), unit, "ImageJ unit/spacing")


def _resolution_voxel(page: Any) -> VoxelInfo | None:
    unit_tag = page.tags.valueof("ResolutionUnit")
    if int(unit_tag or 0) != 3:  # only centimetres: inch is the 72-dpi default, none is none
        return None
    xres = _rational(page.tags.valueof("XResolution"))
    if not xres:
        return None
    yres = _rational(page.tags.valueof("YResolution")) or xres
    x, y = 1e4 / xres, 1e4 / yres  # pixels per cm -> micrometres per pixel
    unit = "micrometer"
    if x >= 100:  # clinical CT: say 3.2 millimeter rather than 3200 micrometer
        x, y, unit = x / 1e3, y / 1e3, "millimeter"
    # the tags hold no z spacing: assume isotropic voxels and say so
    return VoxelInfo(
        (x, y, x), unit, "TIFF resolution tags (cm); z assumed equal to x", {"z_assumed": True}
    )
