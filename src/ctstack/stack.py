"""The Stack: a lazily read (z, y, x) volume with its files, gaps, bad slices and voxel size.

`open_stack` reads headers only and settles shape and dtype before any pixel is decoded;
`Stack.data` is a dask array with one chunk per slice, and `read_slice` decodes one plane.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import discovery, io, metadata
from .errors import (
    AccessDenied,
    AllSlicesUnreadable,
    CTStackError,
    InconsistentSlices,
    MissingDecoder,
    UnreadableSlice,
    UnsupportedFormat,
)
from .io.readers import DicomReader, MultipageReader, NgffReader, SeriesReader, SliceReader

# compression codes tifffile decodes without imagecodecs (none, zlib, packbits)
_NATIVE_TIFF_CODECS = {1, 8, 32946, 32773}


@dataclass(frozen=True)
class BadSlice:
    """A slice that cannot be decoded or has the wrong shape; it reads as zeros."""

    z: int
    path: Path
    reason: str


Reporter = Callable[[str], Any]
SUMMARY_LINES = 10  # notes shown in one summary; the rest are counted (all stay in .warnings)


def warn_reporter(message: str) -> None:
    """The default reporter: one ``UserWarning`` (what notebook users and scripts see)."""
    warnings.warn(message, UserWarning, stacklevel=4)


def summarize(notes: list[str]) -> str:
    """One message for the notes of an open: each note on its line, at most SUMMARY_LINES."""
    if len(notes) == 1:
        return notes[0]
    shown = notes[:SUMMARY_LINES]
    more = len(notes) - len(shown)
    tail = [f"... and {more} more (see stack.warnings)"] if more else []
    return "\n".join([f"{len(notes)} notes on opening this stack:", *shown, *tail])


class Stack:
    """A CT volume opened lazily: shape, dtype, voxel size and a dask view of its slices."""

    def __init__(
        self,
        *,
        path: Path,
        root: Path,
        name: str,
        pattern: str | None,
        reader: SliceReader,
        voxel_size: tuple[float, float, float],
        unit: str,
        origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
        files: list[Path] | None = None,
        missing: list[int] | None = None,
        bad_slices: list[BadSlice] | None = None,
        other_series: list[discovery.SeriesInfo] | None = None,
        metadata: dict | None = None,
        notes: list[str] | None = None,
        report: Reporter | None = None,
    ) -> None:
        self.path = path
        self.root = root
        self.name = name
        self.pattern = pattern
        self._reader = reader
        self.shape: tuple[int, int, int] = tuple(int(n) for n in reader.shape)
        self.dtype: np.dtype = np.dtype(reader.dtype)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.unit = unit
        self.origin = tuple(float(v) for v in origin)
        self.files = list(files or [])
        self.missing = list(missing or [])
        self.bad_slices: list[BadSlice] = list(bad_slices or [])
        self.other_series = list(other_series or [])
        self.metadata = dict(metadata or {})
        self.warnings: list[str] = []
        self._report: Reporter = report or warn_reporter
        self._lock = threading.Lock()
        self._bad_z = {b.z for b in self.bad_slices}
        self.data = self._make_dask()
        self.stored_levels: list = list(reader.extra_levels())  # OME-Zarr: its own pyramid
        self.levels: list = [self.data, *self.stored_levels]
        self.cache_location: Path | None = None  # set by ctstack.pyramid once levels are cached
        self.warnings.extend(notes or [])
        if notes:
            self._report(summarize(notes))

    # --- reading ------------------------------------------------------------------------------

    def read_slice(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decode z-plane `z` in the stack dtype; zeros (and a bad-slice record) on failure."""
        depth = self.shape[0]
        if z < 0:
            z += depth
        if not 0 <= z < depth:
            raise IndexError(f"slice {z} out of range for a stack of {depth} slices")
        if out is not None and (out.shape != self.shape[1:] or out.dtype != self.dtype):
            raise ValueError(f"out must be {self.shape[1:]} {self.dtype}")
        if z not in self._bad_z:
            try:
                return self._reader.read(z, out)
            except CTStackError as exc:
                self._mark_bad(z, str(exc))
        if out is None:
            return np.zeros(self.shape[1:], self.dtype)
        out.fill(0)
        return out

    def _mark_bad(self, z: int, reason: str) -> None:
        path = self._reader.path_of(z) or self.path
        with self._lock:
            if z in self._bad_z:
                return
            self._bad_z.add(z)
            self.bad_slices.append(BadSlice(z, path, reason))
        self._warn(f"bad slice z={z} ({reason}); it reads as zeros")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self._report(message)

    def _make_dask(self):
        import dask.array as da
        from dask.base import tokenize

        if self._reader.dask_level0 is not None:
            return self._reader.dask_level0
        z, y, x = self.shape
        name = "ctstack-" + tokenize(
            str(self.path), self.pattern, self.shape, str(self.dtype), self._reader.token()
        )
        return da.map_blocks(
            _Block(self),
            chunks=((1,) * z, (y,), (x,)),
            dtype=self.dtype,
            meta=np.empty((0, 0, 0), self.dtype),
            name=name,
        )

    def sources(self) -> list[Path]:
        """Every file the level-0 pixels depend on (for the cache fingerprint)."""
        return self._reader.sources()

    def build_pyramid(
        self, progress=None, cancel=None, max_size=512, rebuild=False, cache_dir=None
    ) -> list:
        """Build (or reuse) the pyramid cache and return the levels, level 0 first."""
        from .pyramid import build_pyramid

        return build_pyramid(
            self,
            progress=progress,
            cancel=cancel,
            max_size=max_size,
            rebuild=rebuild,
            cache_dir=cache_dir,
        )

    # --- plumbing -----------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_report"] = warn_reporter  # a face's reporter stays with the face
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        z, y, x = self.shape
        vz, vy, vx = self.voxel_size
        return (
            f"<Stack {self.name!r} {z} x {y} x {x} {self.dtype} voxel {vz:g} x {vy:g} x {vx:g}"
            f" {self.unit} from {self.path}>"
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (what `ctstack info --json` prints)."""
        return {
            "path": str(self.path),
            "name": self.name,
            "pattern": self.pattern,
            "format": self.metadata.get("source_format"),
            "count": len(self.files),
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "voxel_size": list(self.voxel_size),
            "unit": self.unit,
            "origin": list(self.origin),
            "missing": list(self.missing),
            "bad_slices": [
                {"z": b.z, "path": str(b.path), "reason": b.reason} for b in self.bad_slices
            ],
            "other_series": [s.summary() for s in self.other_series],
            "warnings": list(self.warnings),
            "levels": [list(level.shape) for level in self.levels],
        }


class _Block:
    """The dask block function: chunk (z, 0, 0) is `stack.read_slice(z)` with a leading axis."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __call__(self, block_id=None) -> np.ndarray:
        return self.stack.read_slice(block_id[0])[None]


# --- open_stack -------------------------------------------------------------------------------


def open_stack(
    path,
    pattern: str | None = None,
    voxel_size=None,
    unit: str | None = None,
    channel: int = 0,
    time: int = 0,
    report: Reporter | None = None,
) -> Stack:
    """Open a slice folder, one slice, a multi-page TIFF, a DICOM folder or an OME-Zarr image.

    Only headers are read. `pattern` (a glob, or a DICOM SeriesInstanceUID) picks one series
    in a folder that holds several; `voxel_size` (scalar or (z, y, x)) and `unit` override
    what the metadata says; `channel`/`time` pick a plane of a hyperstack. `report(message)`
    receives what the user should hear (notes at open as one summary, then each bad slice
    found while reading); by default it is a ``UserWarning``.
    """
    path = Path(path).expanduser()
    override = metadata.user_voxel_size(voxel_size) if voxel_size is not None else None
    override_unit = metadata.user_unit(unit) if unit is not None else None
    discovery.check_path(path)
    from .ngff import is_ome_zarr

    if path.is_dir():
        if is_ome_zarr(path):
            plan = _plan_ngff(path, channel, time)
        else:
            plan = _plan_folder(path, pattern, select=None, channel=channel, time=time)
    else:
        plan = _plan_file(path, pattern, channel, time)
    return plan.build(override, override_unit, report)


@dataclass
class _Plan:
    """Everything open_stack settled, before the Stack object is made."""

    path: Path
    root: Path
    name: str
    pattern: str | None
    reader: SliceReader
    voxel: metadata.VoxelInfo | None
    files: list[Path]
    missing: list[int]
    bad: list[BadSlice]
    other: list[discovery.SeriesInfo]
    meta: dict
    notes: list[str]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def single_file(
        cls,
        path: Path,
        name: str,
        reader: SliceReader,
        voxel,
        meta: dict,
        notes: list[str],
        origin=(0.0, 0.0, 0.0),
    ) -> _Plan:
        """A plan for a source that is one file (multi-page TIFF, OME-Zarr): no series facts."""
        return cls(
            path=path,
            root=path.parent,
            name=name,
            pattern=None,
            reader=reader,
            voxel=voxel,
            files=[path],
            missing=[],
            bad=[],
            other=[],
            meta=meta,
            notes=notes,
            origin=origin,
        )

    def build(self, override, override_unit, report: Reporter | None = None) -> Stack:
        found = self.voxel or metadata.VoxelInfo((1.0, 1.0, 1.0), metadata.PIXEL, "default")
        voxel, unit, source = found.voxel_size, found.unit, found.source
        if override is not None:
            voxel, source = override, "user"
        if override_unit is not None:
            unit = override_unit
        meta = {**self.meta, **found.extra, "voxel_size_source": source}
        return Stack(
            path=self.path,
            root=self.root,
            name=self.name,
            pattern=self.pattern,
            reader=self.reader,
            voxel_size=voxel,
            unit=unit,
            origin=self.origin,
            files=self.files,
            missing=self.missing,
            bad_slices=self.bad,
            other_series=self.other,
            metadata=meta,
            notes=self.notes,
            report=report,
        )


def _series_name(prefix: str, fallback: str) -> str:
    name = prefix.rstrip(" _-.")
    return name or fallback


def _plan_file(path: Path, pattern: str | None, channel: int, time: int) -> _Plan:
    try:
        kind = io.sniff(path)
    except PermissionError as exc:
        raise AccessDenied(f"{path}: permission denied") from exc
    except OSError as exc:
        raise UnreadableSlice(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if path.stat().st_size == 0:
        raise UnreadableSlice(f"{path}: empty file (0 bytes)")
    if kind == "tiff" and _is_volume_tiff(path):
        return _plan_multipage(path, channel, time)
    if kind == "dicom" or (kind is None and path.suffix.lower() in discovery.DICOM_EXTENSIONS):
        from .dicom import read_header

        uid = read_header(path).series_uid
        return _plan_folder(
            path.parent, pattern, select=("dicom", uid), channel=channel, time=time, opened=path
        )
    if kind in ("tiff", "png", "bmp", "jpeg"):
        if pattern is None:
            key = discovery.parse_name(path.name).key
            return _plan_folder(
                path.parent,
                None,
                select=("raster", key, path),
                channel=channel,
                time=time,
                opened=path,
            )
        return _plan_folder(
            path.parent, pattern, select=None, channel=channel, time=time, opened=path
        )
    raise UnsupportedFormat(
        f"{path}: not a TIFF, PNG, BMP, JPEG or DICOM image, nor an OME-Zarr folder"
    )


def _is_volume_tiff(path: Path) -> bool:
    """True when a TIFF holds a volume (several pages in its first series), not one slice."""
    import tifffile

    try:
        header = io.read_header(path)
    except CTStackError:
        return False
    if not header.more_pages:
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return (
                any(ax in series.axes for ax in "ZQITC")
                and int(
                    np.prod(
                        [
                            n
                            for n, a in zip(series.shape, series.axes, strict=False)
                            if a not in "YXS"
                        ]
                    )
                )
                > 1
            )
    except Exception:
        return False


# --- folders ----------------------------------------------------------------------------------


def _plan_folder(
    folder: Path,
    pattern: str | None,
    select: tuple | None,
    channel: int,
    time: int,
    opened: Path | None = None,
) -> _Plan:
    from . import dicom

    raster, dicom_files = discovery.list_candidates(folder)
    uid_pattern = False
    notes: list[str] = []
    dicom_headers: list = []
    skipped: list[str] = []
    if dicom_files:
        for f in sorted(dicom_files, key=lambda p: discovery.natural_key(p.name)):
            try:
                dicom_headers.append(dicom.read_header(f))
            except CTStackError as exc:
                skipped.append(str(exc))
    uids = {h.series_uid for h in dicom_headers}
    if pattern is not None:
        if pattern in uids:
            uid_pattern = True
            dicom_headers = [h for h in dicom_headers if h.series_uid == pattern]
            raster = []
        else:
            raster = [p for p in raster if discovery.matches(p, pattern)]
            dicom_headers = [h for h in dicom_headers if discovery.matches(h.path, pattern)]
    if select and select[0] == "raster" and select[2] not in raster:
        raster.append(select[2])  # a file opened by name is opened even if it looks odd
    series = discovery.group_raster(raster)
    groups = dicom.group_by_series(dicom_headers)
    for uid, headers in groups.items():
        exts = sorted({h.path.suffix.lower() for h in headers})
        if uid_pattern or len(groups) > 1:
            pat = uid or "*"
        else:
            pat = "*" + exts[0] if len(exts) == 1 and exts[0] else "*"
        desc = headers[0].info.get("SeriesDescription", "")
        series.append(
            discovery.SeriesInfo(
                prefix=_common_prefix([h.path.name for h in headers]),
                suffix="",
                extension=exts[0] if len(exts) == 1 else "",
                pattern=pat,
                files=[h.path for h in headers],
                numbers=[h.instance for h in headers],
                kind="dicom",
                series_uid=uid,
                description=desc,
                extra={"headers": headers},
            )
        )
    if not series:
        if skipped:
            raise AllSlicesUnreadable(
                f"{folder}: no readable image series; " + "; ".join(skipped[:3])
            )
        raise discovery.no_series_error(folder, pattern)
    chosen = _choose(series, select)
    others = [s for s in series if s is not chosen]
    if others:
        listed = ", ".join(str(s) for s in others)
        notes.append(
            f"{folder}: opened series {chosen.pattern} ({chosen.count} files); "
            f"other series here: {listed} (choose one with pattern=)"
        )
    if skipped and chosen.kind == "dicom":
        notes.append(f"{folder}: {len(skipped)} DICOM file(s) skipped: " + "; ".join(skipped[:3]))
    if chosen.kind == "dicom":
        plan = _plan_dicom(folder, chosen, others, notes)
    else:
        plan = _plan_raster(folder, chosen, others, notes, channel, time)
    if opened is not None and plan.path == folder:
        plan.path = opened
    return plan


def _common_prefix(names: list[str]) -> str:
    import os

    return os.path.commonprefix(names) if names else ""  # noqa: RUF071 (a name prefix)


def _choose(series: list[discovery.SeriesInfo], select: tuple | None) -> discovery.SeriesInfo:
    """The series to open: the one selected, else the largest; ties by the DESIGN rules."""
    if select is not None:
        for s in series:
            if select[0] == "dicom" and s.kind == "dicom" and s.series_uid == select[1]:
                return s
            if (
                select[0] == "raster"
                and s.kind == "raster"
                and (s.prefix, s.suffix, s.extension) == select[1]
            ):
                return s
    top = max(s.count for s in series)
    tied = [s for s in series if s.count == top]
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=_tie_key)


def _tie_key(series: discovery.SeriesInfo) -> tuple:
    """Higher bit depth, then larger slices, then DICOM over raster, then prefix A-Z."""
    bits = pixels = 0
    if series.kind == "dicom":
        h = series.extra["headers"][0]
        bits, pixels = h.stored_dtype.itemsize * 8, h.shape[0] * h.shape[1]
    else:
        for f in series.files[:3]:
            try:
                h = io.read_header(f)
            except CTStackError:
                continue
            bits, pixels = h.bits, h.shape[0] * h.shape[1]
            break
    return (-bits, -pixels, 0 if series.kind == "dicom" else 1, series.prefix, series.pattern)


def _majority_shape(shapes: dict[Path, tuple[int, int]], where: str) -> tuple[int, int]:
    """The shape held by more than half of the readable slices, else InconsistentSlices."""
    counts = Counter(shapes.values())
    shape, n = counts.most_common(1)[0]
    if n * 2 <= len(shapes):
        examples = []
        for s, _ in counts.most_common(4):
            f = next(p for p, v in shapes.items() if v == s)
            examples.append(f"{f.name} is {s[1]} x {s[0]} ({counts[s]} files)")
        raise InconsistentSlices(
            f"{where}: slices have different sizes and none holds a majority: "
            + "; ".join(examples)
            + " (pick one size with pattern=, or move the odd files away)"
        )
    return shape


def _plan_raster(
    folder: Path,
    chosen: discovery.SeriesInfo,
    others: list[discovery.SeriesInfo],
    notes: list[str],
    channel: int,
    time: int,
) -> _Plan:
    discovery.check_duplicates(chosen)
    where = f"{folder}/{chosen.pattern}"
    numbers = [n if n is not None else 0 for n in chosen.numbers]
    num = discovery.numbering(numbers)
    headers: dict[int, io.SliceHeader] = {}
    bad: list[BadSlice] = []
    errors: list[CTStackError] = []
    for z, f in zip(num.z, chosen.files, strict=False):
        try:
            headers[z] = io.read_header(f)
        except CTStackError as exc:
            bad.append(BadSlice(z, f, str(exc)))
            errors.append(exc)
    if not headers:
        if len(chosen.files) == 1:
            raise errors[0]
        raise AllSlicesUnreadable(
            f"{where}: none of the {len(chosen.files)} files can be read, e.g. "
            + "; ".join(b.reason for b in bad[:3])
        )
    if len(chosen.files) == 1:
        only = next(iter(headers.values()))
        if only.format == "tiff" and only.more_pages and _is_volume_tiff(only.path):
            plan = _plan_multipage(only.path, channel, time)
            plan.other, plan.notes = others, [*notes, *plan.notes]
            return plan
    shape = _majority_shape({h.path: h.shape for h in headers.values()}, where)
    for z, h in list(headers.items()):
        if h.shape != shape:
            reason = (
                f"{h.path}: slice is {h.shape[1]} x {h.shape[0]}, the series is "
                f"{shape[1]} x {shape[0]}"
            )
            bad.append(BadSlice(z, h.path, reason))
            del headers[z]
    bad.sort(key=lambda b: b.z)
    dtypes = Counter(h.dtype for h in headers.values())
    dtype = io.map_dtype(np.result_type(*dtypes), where) if len(dtypes) > 1 else next(iter(dtypes))
    if len(dtypes) > 1:
        mix = ", ".join(f"{n} x {d}" for d, n in dtypes.most_common())
        example = ", ".join(
            next(h.path.name for h in headers.values() if h.dtype == d) for d in dtypes
        )
        notes.append(f"{where}: mixed pixel types ({mix}; e.g. {example}); opened as {dtype}")
    colour = [h for h in headers.values() if h.colour]
    if colour:
        notes.append(
            f"{where}: {len(colour)} colour slice(s) (e.g. {colour[0].path.name}) converted "
            "to luminance (ITU-R 601-2 weights, alpha dropped)"
        )
    _check_tiff_codecs(headers.values())
    for b in bad:
        notes.append(f"bad slice z={b.z} ({b.reason}); it reads as zeros")
    first = next(iter(headers.values()))
    voxel = None
    log = metadata.find_skyscan_log(folder, chosen.prefix)
    if log is not None:
        voxel = metadata.skyscan_voxel(log, step=num.step)
    if (voxel is None or voxel.unit == metadata.PIXEL) and first.format == "tiff":
        voxel = metadata.tiff_voxel(first.path) or voxel
    by_z: list[io.SliceHeader | None] = [None] * num.depth
    for z, h in headers.items():
        by_z[z] = h
    files_by_z = dict(zip(num.z, chosen.files, strict=False))
    reader = SeriesReader(by_z, files_by_z, (num.depth, *shape), dtype)
    name = _series_name(
        chosen.prefix, first.path.stem if chosen.numbers[0] is None else folder.name
    )
    single = len(chosen.files) == 1 and chosen.numbers[0] is None
    meta = {
        "source_format": first.format,
        "series": chosen.pattern,
        "numbering": {"first": num.first, "step": num.step, "last": max(numbers)},
        "compressed": any(h.compressed for h in headers.values()),
    }
    return _Plan(
        path=folder,
        root=folder,
        name=name,
        pattern=None if single else chosen.pattern,
        reader=reader,
        voxel=voxel,
        files=list(chosen.files),
        missing=num.missing,
        bad=bad,
        other=others,
        meta=meta,
        notes=notes,
    )


def _check_tiff_codecs(headers) -> None:
    needs = [
        h
        for h in headers
        if h.format == "tiff" and h.info.get("compression", 1) not in _NATIVE_TIFF_CODECS
    ]
    if not needs:
        return
    try:
        import imagecodecs  # noqa: F401
    except ImportError as exc:
        raise MissingDecoder(
            f"{needs[0].path}: compressed TIFF (compression {needs[0].info['compression']}) "
            "needs the imagecodecs package: pip install imagecodecs"
        ) from exc


# --- DICOM ------------------------------------------------------------------------------------


def _plan_dicom(
    folder: Path,
    chosen: discovery.SeriesInfo,
    others: list[discovery.SeriesInfo],
    notes: list[str],
) -> _Plan:
    from . import dicom

    headers = chosen.extra["headers"]
    where = f"{folder} (DICOM series {chosen.series_uid or '?'})"
    shape = _majority_shape({h.path: h.shape for h in headers}, where)
    dicom.check_decoder(headers[0])
    plan = dicom.plan_series(headers, shape)
    bad = [
        BadSlice(
            z,
            h.path,
            f"{h.path}: slice is {h.shape[1]} x {h.shape[0]}, the series is "
            f"{shape[1]} x {shape[0]}",
        )
        for z, h in enumerate(plan.headers)
        if h.shape != shape
    ]
    notes.extend(plan.warnings)
    for b in bad:
        notes.append(f"bad slice z={b.z} ({b.reason}); it reads as zeros")
    good = [h if h.shape == shape else None for h in plan.headers]
    reader = DicomReader(
        good, [h.path for h in plan.headers], (len(good), *shape), plan.dtype, plan.rescale
    )
    info = plan.headers[0].info
    meta = {
        "source_format": "dicom",
        "series_uid": chosen.series_uid,
        "ordered_by": plan.ordered_by,
        "rescaled": plan.rescale,
        "transfer_syntax": plan.headers[0].transfer_syntax,
        **{k.lower(): v for k, v in info.items()},
    }
    if "manufacturer" in meta:
        meta["scanner"] = " ".join(
            v for v in (info.get("Manufacturer"), info.get("ManufacturerModelName")) if v
        )
    voxel = metadata.VoxelInfo(plan.voxel_size, "millimeter", "DICOM PixelSpacing and positions")
    return _Plan(
        path=folder,
        root=folder,
        name=_series_name(chosen.prefix, folder.name),
        pattern=chosen.pattern,
        reader=reader,
        voxel=voxel,
        files=[h.path for h in plan.headers],
        missing=[],
        bad=bad,
        other=others,
        meta=meta,
        notes=notes,
    )


# --- multi-page TIFF and OME-Zarr -------------------------------------------------------------


def _plan_multipage(path: Path, channel: int, time: int) -> _Plan:
    reader = MultipageReader.open(path, channel, time)
    voxel = metadata.tiff_voxel(path)
    meta = {"source_format": reader.kind, "axes": reader.axes, "stored_shape": reader.stored_shape}
    name = path.name.split(".")[0] or path.stem
    return _Plan.single_file(path, name, reader, voxel, meta, list(reader.notes))


def _plan_ngff(path: Path, channel: int, time: int) -> _Plan:
    from .ngff import open_ngff

    image = open_ngff(path, channel, time)
    reader = NgffReader(image)
    voxel = metadata.VoxelInfo(image.voxel_size, image.unit, "OME-Zarr scale")
    name = path.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    meta = {"source_format": "ome-zarr", "ngff_version": image.version}
    return _Plan.single_file(
        path, name or path.name, reader, voxel, meta, list(image.warnings), image.origin
    )
