"""Find the slice series in a folder: name parsing, natural order, numbering step, gaps, ties.

A series is the files sharing prefix, suffix and extension around the LAST run of digits in
the name; the number orders them. DICOM files are grouped later by SeriesInstanceUID instead.
Of several series, ``choose_series`` opens the one asked for (``PickRaster``, ``PickDicom``),
else the one with the most files; ties go to grayscale over colour, then the higher stored bit
depth, then the larger slices, then DICOM over raster, then the prefix A-Z (``tie_key``).
"""

from __future__ import annotations

import fnmatch
import glob
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import reduce
from itertools import pairwise
from pathlib import Path
from typing import Any

from .errors import (
    AccessDenied,
    CTStackError,
    DuplicateSliceNumber,
    NoSliceSeries,
    PathNotFound,
)
from .io.raster import not_regular
from .locations import LOCAL_DIRNAME

RASTER_EXTENSIONS = frozenset({".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".ima"})
# scanner previews and thumbnails that sit beside the slices (SkyScan writes *_spr.bmp)
_PREVIEW = re.compile(r"(_spr|_prv|_preview|_thumb|_thumbnail)$", re.IGNORECASE)
_LAST_DIGITS = re.compile(r"(\d+)(\D*)$")


@dataclass(frozen=True)
class SliceName:
    """A file name split around its last run of digits: prefix, number, suffix, extension."""

    prefix: str
    number: int | None
    digits: str
    suffix: str
    extension: str  # lower case, with the dot ("" when none)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.prefix, self.suffix, self.extension)


def parse_name(name: str) -> SliceName:
    """Split ``scan_rec00001234.bmp`` into ('scan_rec', 1234, '00001234', '', '.bmp')."""
    stem, ext = os.path.splitext(name)
    known = ext.lower() in RASTER_EXTENSIONS or ext.lower() in DICOM_EXTENSIONS
    if ext and not known and ext[1:].isdigit():  # '1.2.840.1.15': a DICOM UID as a name
        stem, ext = name, ""
    match = _LAST_DIGITS.search(stem)
    if match is None:
        return SliceName(stem, None, "", "", ext.lower())
    return SliceName(
        stem[: match.start()], int(match.group(1)), match.group(1), match.group(2), ext.lower()
    )


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value ('s2' before 's10')."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@dataclass
class SeriesInfo:
    """One series found in a folder; `pattern` selects it again through open_stack(pattern=)."""

    prefix: str
    suffix: str
    extension: str
    pattern: str
    files: list[Path]  # in number order
    numbers: list[int | None]
    kind: str = "raster"  # or "dicom"
    series_uid: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def key(self) -> tuple[str, str, str]:
        """(prefix, suffix, extension): what ``PickRaster`` matches."""
        return (self.prefix, self.suffix, self.extension)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (for warnings, the CLI and stack.other_series)."""
        out = {"pattern": self.pattern, "count": self.count, "kind": self.kind}
        if self.series_uid:
            out["series_uid"] = self.series_uid
        if self.description:
            out["description"] = self.description
        return out

    def __str__(self) -> str:
        what = f" ({self.description})" if self.description else ""
        return f"{self.pattern}: {self.count} file{'s' if self.count != 1 else ''}{what}"


@dataclass(frozen=True)
class Numbering:
    """Where each file sits in z: index = (number - first) / step; `missing` are gaps."""

    first: int
    step: int
    z: list[int]
    depth: int
    missing: list[int]


def numbering(numbers: list[int]) -> Numbering:
    """z indices from file numbers: ``(number - first) // step``, with ``step`` the gcd of the
    differences (docs/opening.md, "How the series is found")."""
    if not numbers:
        return Numbering(0, 1, [], 0, [])
    first = min(numbers)
    step = reduce(math.gcd, (n - first for n in numbers), 0) or 1
    z = [(n - first) // step for n in numbers]
    depth = max(z) + 1
    present = set(z)
    return Numbering(first, step, z, depth, [i for i in range(depth) if i not in present])


def check_path(path: Path) -> Path:
    """Raise PathNotFound (naming broken symlinks and loops) unless `path` exists."""
    try:
        path.stat()
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise PathNotFound(f"{path}: broken symbolic link (its target does not exist)") from exc
        raise PathNotFound(f"{path}: no such file or folder") from exc
    except PermissionError as exc:
        raise AccessDenied(f"{path}: permission denied") from exc
    except OSError as exc:  # ELOOP and friends
        raise PathNotFound(f"{path}: cannot be reached ({exc.strerror or exc})") from exc
    return path


def list_candidates(
    folder: Path, skipped: list[tuple[Path, str]] | None = None
) -> tuple[list[Path], list[Path]]:
    """Image files in a folder as (raster, dicom candidates); skips hidden, cache, previews.

    Entries named like an image that are not regular files (a folder, a broken symbolic link,
    a link loop, a named pipe, a device) are never read; each is added to ``skipped`` as
    (path, what it is).
    """
    try:
        entries = list(os.scandir(folder))
    except PermissionError as exc:
        raise AccessDenied(f"{folder}: permission denied, cannot list the folder") from exc
    except OSError as exc:
        raise AccessDenied(f"{folder}: cannot list the folder ({exc.strerror or exc})") from exc
    raster: list[Path] = []
    dicom: list[Path] = []
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name == LOCAL_DIRNAME:
            continue
        stem, ext = os.path.splitext(name)
        ext = ext.lower()
        try:
            regular = entry.is_file()  # follows symlinks; broken links and loops are not files
        except OSError:
            regular = False
        if not regular:
            if skipped is not None and (ext in RASTER_EXTENSIONS or ext in DICOM_EXTENSIONS):
                skipped.append((Path(entry.path), not_regular(entry.path) or "not a file"))
            continue
        if ext in RASTER_EXTENSIONS:
            if not _PREVIEW.search(stem):
                raster.append(Path(entry.path))
        elif ext in DICOM_EXTENSIONS or (
            (ext == "" or ext[1:].isdigit()) and _has_dicom_magic(Path(entry.path))
        ):
            dicom.append(Path(entry.path))
    return raster, dicom


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def matches(path: Path, pattern: str) -> bool:
    """Case-insensitive glob match on the file name."""
    return fnmatch.fnmatchcase(path.name.lower(), pattern.lower())


def group_raster(files: list[Path]) -> list[SeriesInfo]:
    """Group raster files into series by (prefix, suffix, extension), ordered by number."""
    groups: dict[tuple[str, str, str], list[tuple[SliceName, Path]]] = defaultdict(list)
    for path in files:
        parsed = parse_name(path.name)
        groups[parsed.key].append((parsed, path))
    series = []
    for (prefix, suffix, ext), members in groups.items():
        members.sort(key=lambda m: (m[0].number if m[0].number is not None else -1, m[1].name))
        has_number = members[0][0].number is not None
        if has_number:
            pattern = f"{glob.escape(prefix)}*{glob.escape(suffix)}{ext}"
        else:
            pattern = glob.escape(members[0][1].name)
        parts = split_numbers(members) if has_number else [members]
        for part in parts:
            part_pattern = pattern if len(parts) == 1 else _part_pattern(part, members, pattern)
            series.append(
                SeriesInfo(
                    prefix=prefix,
                    suffix=suffix,
                    extension=ext,
                    pattern=part_pattern,
                    files=[p for _, p in part],
                    numbers=[m.number for m, _ in part],
                    extra={"split_from": pattern} if len(parts) > 1 else {},
                )
            )
    return series


def split_gap(numbers: list[int]) -> int:
    """The gap between sorted slice numbers beyond which a series is split in two:
    ``max(100 x step, count)``, with step the gcd of the gaps (docs/opening.md)."""
    gaps = [b - a for a, b in pairwise(numbers)]
    step = reduce(math.gcd, gaps, 0) or 1
    return max(100 * step, len(numbers))


def split_numbers(
    members: list[tuple[SliceName, Path]],
) -> list[list[tuple[SliceName, Path]]]:
    """Split members (sorted by number) wherever a gap exceeds ``split_gap``: a stray file
    numbered like a date (``s_20240315.tif`` among ``s_0000..0015``) is its own series."""
    numbers = [m.number or 0 for m, _ in members]
    limit = split_gap(numbers)
    parts: list[list[tuple[SliceName, Path]]] = [[members[0]]]
    for prev, member in pairwise(members):
        if (member[0].number or 0) - (prev[0].number or 0) > limit:
            parts.append([])
        parts[-1].append(member)
    return parts


def _part_pattern(
    part: list[tuple[SliceName, Path]],
    members: list[tuple[SliceName, Path]],
    fallback: str,
) -> str:
    """A glob that selects exactly the files of one part of a split series."""
    names = [p.name for _, p in part]
    if len(names) == 1:
        return glob.escape(names[0])
    first = part[0][0]
    head, tail = glob.escape(first.prefix), f"{glob.escape(first.suffix)}{first.extension}"
    digits = [m.digits for m, _ in part]
    common = os.path.commonprefix(digits)  # noqa: RUF071 (a prefix of digit strings)
    candidates = [f"{head}{common}*{tail}"]
    if len({len(d) for d in digits}) == 1:  # same width: slice_????.tif, else slice_00??.tif
        width = len(digits[0])
        candidates[:0] = [
            f"{head}{'?' * width}{tail}",
            f"{head}{common}{'?' * (width - len(common))}{tail}",
        ]
    inside = {p.name.lower() for _, p in part}
    for candidate in candidates:
        chosen = {p.name.lower() for _, p in members if matches(p, candidate)}
        if chosen == inside:
            return candidate
    return fallback


def check_duplicates(series: SeriesInfo) -> None:
    """Two files with the same number (``s_1.tif`` and ``s_01.tif``) are an error naming both."""
    seen: dict[int, Path] = {}
    for number, path in zip(series.numbers, series.files, strict=True):
        if number is None:
            continue
        if number in seen:
            raise DuplicateSliceNumber(
                f"{seen[number]} and {path} both carry slice number {number}; "
                "remove one, or pick one series with pattern="
            )
        seen[number] = path


def no_series_error(folder: Path, pattern: str | None) -> NoSliceSeries:
    """The error for a folder (or pattern) that holds no image series, with a hint."""
    if pattern:
        return NoSliceSeries(f"{folder}: no image slices match pattern {pattern!r}")
    return NoSliceSeries(
        f"{folder}: no image series found (looked for TIFF, PNG, BMP, JPEG and DICOM files)"
    )


# --- which series to open ---------------------------------------------------------------------


@dataclass(frozen=True)
class PickRaster:
    """Open the raster series of this (prefix, suffix, extension), the one ``path`` belongs to
    (a file opened by name is opened even if it looks odd)."""

    key: tuple[str, str, str]
    path: Path


@dataclass(frozen=True)
class PickDicom:
    """Open the DICOM series with this SeriesInstanceUID."""

    series_uid: str


Pick = PickRaster | PickDicom


def choose_series(series: list[SeriesInfo], pick: Pick | None = None) -> SeriesInfo:
    """The series to open: the one picked, else the largest; ties by ``tie_key``."""
    for s in series if pick is not None else ():
        if isinstance(pick, PickDicom) and s.kind == "dicom" and s.series_uid == pick.series_uid:
            return s
        if isinstance(pick, PickRaster) and s.kind == "raster" and s.key == pick.key:
            return s
    top = max(s.count for s in series)
    tied = [s for s in series if s.count == top]
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=tie_key)


def tie_key(series: SeriesInfo) -> tuple[int, int, int, int, str, str]:
    """Grayscale before colour, then more stored bits (a palette counts its indices, not its
    expanded colour table), then larger slices, then DICOM over raster, then prefix A-Z."""
    from .io import read_header

    colour = bits = pixels = 0
    if series.kind == "dicom":
        h = series.extra["headers"][0]
        bits, pixels = h.stored_dtype.itemsize * 8, h.shape[0] * h.shape[1]
        colour = int(h.samples >= 3)
    else:
        for f in series.files[:3]:
            try:
                header = read_header(f)
            except CTStackError:
                continue
            colour = int(header.colour)
            bits, pixels = header.stored_bits, header.shape[0] * header.shape[1]
            break
    kind = 0 if series.kind == "dicom" else 1
    return (colour, -bits, -pixels, kind, series.prefix, series.pattern)
