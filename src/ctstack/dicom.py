"""DICOM series: group files by SeriesInstanceUID, order by position, rescale to Hounsfield.

Slices are ordered by their position along the slice normal (ImagePositionPatient projected on
the cross product of ImageOrientationPatient's row and column directions), never by file name
or InstanceNumber. RescaleSlope/Intercept give int16 when the header's value range fits, else
float32. Only headers are read at open; pixels are decoded one slice at a time.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    DuplicateSliceNumber,
    MissingDecoder,
    UnreadableSlice,
    UnsupportedFormat,
)
from .io import MAX_SLICE_PIXELS, check_plane, luminance, map_dtype

_HEADER_TAGS = [
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "StudyDate",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "InstanceNumber",
    "NumberOfFrames",
]
# transfer syntaxes whose pixel data is stored uncompressed
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
# relative spread of slice distances above which the spacing is reported as uneven
UNEVEN_TOLERANCE = 0.01


@dataclass
class DicomHeader:
    """The tags of one DICOM file that ordering, dtype and voxel size need."""

    path: Path
    series_uid: str
    shape: tuple[int, int]
    stored_dtype: np.dtype
    bits_stored: int
    samples: int
    slope: float
    intercept: float
    has_rescale: bool
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    spacing: tuple[float, float] | None
    instance: int | None
    transfer_syntax: str
    info: dict[str, str] = field(default_factory=dict)

    def value_range(self) -> tuple[float, float]:
        """The stored value range the header allows, after rescaling."""
        signed = self.stored_dtype.kind == "i"
        bits = self.bits_stored
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        ends = (lo * self.slope + self.intercept, hi * self.slope + self.intercept)
        return min(ends), max(ends)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _point(value: Any) -> tuple[float, float, float] | None:
    """A position; None when absent or not finite (a NaN position is no position)."""
    out = _floats(value, 3)
    if out is None or not all(math.isfinite(v) for v in out):
        return None
    return (out[0], out[1], out[2])


def _pair(value: Any) -> tuple[float, float] | None:
    """A pixel spacing; None unless both values are positive and finite."""
    out = _floats(value, 2)
    if out is None or not all(math.isfinite(v) and v > 0 for v in out):
        return None
    return (out[0], out[1])


def _orientation(value: Any) -> tuple[float, ...] | None:
    out = _floats(value, 6)
    return out if out is not None and all(math.isfinite(v) for v in out) else None


def read_header(path: Path) -> DicomHeader:
    """Read one DICOM file's header (no pixels); raise UnreadableSlice when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except PermissionError as exc:
        raise UnreadableSlice(f"{path}: permission denied") from exc
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableSlice(f"{path}: not a readable DICOM file ({exc})") from exc
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        signed = int(ds.get("PixelRepresentation", 0)) == 1
    except (AttributeError, TypeError, ValueError) as exc:
        raise UnreadableSlice(f"{path}: DICOM file without image (no Rows/Columns)") from exc
    if rows * cols > MAX_SLICE_PIXELS:
        from .errors import ImageTooLarge

        raise ImageTooLarge(f"{path}: header claims {cols} x {rows} pixels")
    check_plane(path, (rows, cols), np.dtype(f"u{max(bits, 8) // 8}"))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    meta_: Any = ds.file_meta if hasattr(ds, "file_meta") else {}
    syntax = str(getattr(meta_, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
    if syntax in _NATIVE_SYNTAXES:  # uncompressed: the file must hold the pixels it claims
        need = rows * cols * samples * max(bits, 8) // 8
        size = path.stat().st_size
        if size < need:
            raise UnreadableSlice(
                f"{path}: truncated ({size} bytes, a {cols} x {rows} image needs {need})"
            )
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise UnsupportedFormat(f"{path}: multi-frame DICOM is not supported yet")
    if bits not in (1, 8, 16, 32):
        raise UnsupportedFormat(f"{path}: {bits}-bit DICOM pixels are not supported")
    stored = np.dtype(f"{'i' if signed else 'u'}{max(bits, 8) // 8}")
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds
    meta: Any = ds.file_meta if hasattr(ds, "file_meta") else {}
    tsuid = str(getattr(meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
    info = {
        k: str(ds.get(k))
        for k in ("Modality", "Manufacturer", "ManufacturerModelName", "SeriesDescription")
        if ds.get(k) not in (None, "")
    }
    return DicomHeader(
        path=Path(path),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        shape=(rows, cols),
        stored_dtype=stored,
        bits_stored=int(ds.get("BitsStored", bits) or bits),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        slope=float(ds.get("RescaleSlope", 1) or 1),
        intercept=float(ds.get("RescaleIntercept", 0) or 0),
        has_rescale=has_rescale,
        position=_point(ds.get("ImagePositionPatient")),
        orientation=_orientation(ds.get("ImageOrientationPatient")),
        spacing=_pair(ds.get("PixelSpacing")),
        instance=int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
        transfer_syntax=tsuid,
        info=info,
    )


def group_by_series(headers: list[DicomHeader]) -> dict[str, list[DicomHeader]]:
    """Group headers by SeriesInstanceUID (files without one share the key '')."""
    groups: dict[str, list[DicomHeader]] = defaultdict(list)
    for header in headers:
        groups[header.series_uid].append(header)
    return dict(groups)


def check_decoder(header: DicomHeader) -> None:
    """Raise MissingDecoder naming the package to install when pixels cannot be decoded here."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(header.transfer_syntax)
    if not uid.is_compressed:
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise UnsupportedFormat(
            f"{header.path}: DICOM transfer syntax {uid.name} ({uid}) cannot be decoded"
        ) from exc
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a pydicom pixel decoder plugin"
        raise MissingDecoder(
            f"{header.path}: pixel data is compressed as {uid.name}; install a decoder for it "
            f"(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or: {needs})"
        )


@dataclass
class DicomPlan:
    """A DICOM series settled at open: files in z order, dtype, voxel size, notes.

    ``slots`` has one entry per z: the header, or None where the positions show a slice is
    missing (listed in ``missing``; it reads as zeros).
    """

    headers: list[DicomHeader]  # z order, the files present
    dtype: np.dtype
    rescale: bool
    voxel_size: tuple[float, float, float]
    warnings: list[str]
    ordered_by: str
    slots: list[DicomHeader | None] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)


# a gap of k times the median spacing, within this fraction of it, holds k - 1 missing slices
GAP_TOLERANCE = 0.10


def plan_series(headers: list[DicomHeader], shape: tuple[int, int]) -> DicomPlan:
    """Order one series along its normal and settle dtype, voxel size and missing slices."""
    notes: list[str] = []
    headers, ordered_by = _order(headers, notes)
    # dtype: Hounsfield units as int16 when every slope agrees and the range fits
    rescale = any(h.has_rescale and (h.slope != 1 or h.intercept != 0) for h in headers)
    if rescale:
        slopes = {h.slope for h in headers}
        lo = min(h.value_range()[0] for h in headers)
        hi = max(h.value_range()[1] for h in headers)
        integral = all(
            float(h.slope).is_integer() and float(h.intercept).is_integer() for h in headers
        )
        fits = integral and len(slopes) == 1 and lo >= -32768 and hi <= 32767
        dtype = np.dtype("int16") if fits else np.dtype("float32")
    else:
        kinds = Counter(h.stored_dtype for h in headers)
        dtype = map_dtype(np.result_type(*kinds), headers[0].path)
    voxel, slots = _voxel_size(headers, shape, notes)
    missing = [z for z, h in enumerate(slots) if h is None]
    return DicomPlan(headers, dtype, rescale, voxel, notes, ordered_by, slots, missing)


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    if orientation is None:
        return None
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else None


def _positions(headers: list[DicomHeader]) -> list[tuple[float, float, float]] | None:
    """Every header's ImagePositionPatient, in order; None when one of them lacks it."""
    out = [h.position for h in headers if h.position is not None]
    return out if len(out) == len(headers) else None


def _order(headers: list[DicomHeader], notes: list[str]) -> tuple[list[DicomHeader], str]:
    normal = next((n for h in headers if (n := _normal(h.orientation)) is not None), None)
    positions = _positions(headers)
    if normal is not None and positions is not None:
        placed = sorted(
            zip(headers, positions, strict=True),
            key=lambda hp: (float(np.dot(hp[1], normal)), hp[0].path.name),
        )
        keyed = [h for h, _ in placed]
        dist = [float(np.dot(p, normal)) for _, p in placed]
        for (a, ha), (b, hb) in pairwise(zip(dist, keyed, strict=True)):
            if abs(b - a) < 1e-4:
                raise DuplicateSliceNumber(
                    f"{ha.path} and {hb.path} lie at the same slice position ({a:.4f} mm); "
                    "remove one"
                )
        return keyed, "ImagePositionPatient along the slice normal"
    lacking = [h for h in headers if h.position is None]
    if normal is not None and len(lacking) < len(headers):
        shown = ", ".join(h.path.name for h in lacking[:3])
        more = f" and {len(lacking) - 3} more" if len(lacking) > 3 else ""
        notes.append(
            f"{headers[0].path.parent}: {len(lacking)} DICOM file(s) have no usable "
            f"ImagePositionPatient (missing or NaN: {shown}{more}); they are left out of the "
            "slice spacing"
        )
    if all(h.instance is not None for h in headers):
        notes.append(
            f"{headers[0].path.parent}: DICOM files lack ImagePositionPatient/"
            "ImageOrientationPatient; ordered by InstanceNumber"
        )
        return sorted(headers, key=lambda h: (h.instance, h.path.name)), "InstanceNumber"
    notes.append(f"{headers[0].path.parent}: DICOM files lack positions; ordered by file name")
    from .discovery import natural_key

    return sorted(headers, key=lambda h: natural_key(h.path.name)), "file name"


def _voxel_size(
    headers: list[DicomHeader], shape: tuple[int, int], notes: list[str]
) -> tuple[tuple[float, float, float], list[DicomHeader | None]]:
    """(z, y, x) in mm and the z slots (None: a slice the positions show is missing).

    z is the median distance between neighbours along the normal, from the slices that have
    a position. Where every slice has one, a gap of k times that median (within 10 %) holds
    k - 1 missing slices; other irregular spacing is reported, never guessed.
    """
    spacing = next((h.spacing for h in headers if h.spacing), None)
    y, x = (spacing[0], spacing[1]) if spacing else (1.0, 1.0)
    normal = next((n for h in headers if (n := _normal(h.orientation)) is not None), None)
    slots: list[DicomHeader | None] = list(headers)
    where = headers[0].path.parent
    z = None
    if normal is not None:
        placed = [
            (i, float(np.dot(h.position, normal)))
            for i, h in enumerate(headers)
            if h.position is not None
        ]
        steps = [abs(b - a) / (j - i) for (i, a), (j, b) in pairwise(placed)]
        if steps:
            z = float(statistics.median(steps))
        if z and len(placed) == len(headers):
            dist = np.diff([d for _, d in placed])
            slots, per_slice = _fill_gaps(headers, dist, z, notes)
            if (per_slice.max() - per_slice.min()) > UNEVEN_TOLERANCE * z:
                notes.append(
                    f"{where}: uneven DICOM slice spacing, from "
                    f"{per_slice.min():.4g} to {per_slice.max():.4g} mm (median {z:.4g} mm used)"
                )
        elif z and len(steps) > 1 and (max(steps) - min(steps)) > UNEVEN_TOLERANCE * z:
            notes.append(
                f"{where}: uneven DICOM slice spacing, from {min(steps):.4g} to "
                f"{max(steps):.4g} mm (median {z:.4g} mm used)"
            )
    if not z or not math.isfinite(z):
        z = x
    return (z, y, x), slots


def _fill_gaps(
    headers: list[DicomHeader], dist: np.ndarray, z: float, notes: list[str]
) -> tuple[list[DicomHeader | None], np.ndarray]:
    """Slots with k - 1 empty ones where a gap is k times ``z`` (within GAP_TOLERANCE), and
    the distance per slot step of every gap (what the evenness check looks at)."""
    slots: list[DicomHeader | None] = [headers[0]]
    per_slice = []
    for d, header in zip(dist, headers[1:], strict=True):
        k = round(d / z)
        if k >= 2 and abs(d - k * z) <= GAP_TOLERANCE * z:
            first = len(slots)
            slots.extend([None] * (k - 1))
            notes.append(
                f"{header.path.parent}: {k - 1} DICOM slice(s) missing before {header.path.name} "
                f"(a gap of {d:.4g} mm, {k} x the {z:.4g} mm spacing); z={first}"
                + (f"-{first + k - 2}" if k > 2 else "")
                + " read as zeros"
            )
            per_slice.append(d / k)
        else:
            per_slice.append(d)
        slots.append(header)
    return slots, np.asarray(per_slice)


def decode(header: DicomHeader, dtype: np.dtype, rescale: bool) -> np.ndarray:
    """Decode one DICOM slice, rescaled (when the series is) and cast to the stack dtype."""
    import pydicom

    try:
        ds = pydicom.dcmread(header.path)
        arr = ds.pixel_array
    except MissingDecoder:
        raise
    except Exception as exc:
        raise UnreadableSlice(
            f"{header.path}: cannot decode DICOM pixels ({type(exc).__name__}: {exc})"
        ) from exc
    if arr.ndim == 3 and header.samples >= 3:
        arr = luminance(arr)
    if arr.shape != header.shape:
        raise UnreadableSlice(f"{header.path}: decoded shape {arr.shape} differs from header")
    if rescale:
        if dtype.kind == "f":
            return (arr.astype(np.float64) * header.slope + header.intercept).astype(dtype)
        wide = arr.astype(np.int64) * int(header.slope) + int(header.intercept)
        return np.clip(wide, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    return arr.astype(dtype, copy=False)
