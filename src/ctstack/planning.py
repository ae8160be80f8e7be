"""Planning an open: what each kind of source (slice folder, DICOM series, multi-page TIFF,
OME-Zarr) settles from headers alone, before a Stack is made.

``plan_path`` dispatches on what the path is; the ``plan_*`` functions each return a
:class:`Plan` (the reader, facts, voxel size, notes), which ``ctstack.stack`` turns into a
Stack. Which series of a folder is opened is ``discovery.choose_series``'s decision.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
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
from .io.raster import SliceHeader
from .io.readers import DicomReader, MultipageReader, NgffReader, SeriesReader, SliceReader

# compression codes tifffile decodes without imagecodecs (none, zlib, packbits)
_NATIVE_TIFF_CODECS = {1, 8, 32946, 32773}


@dataclass(frozen=True)
class BadSlice:
    """A slice that cannot be decoded or has the wrong shape; it reads as zeros."""

    z: int
    path: Path
    reason: str


def plan_path(path: Path, pattern: str | None, channel: int = 0, time: int = 0) -> Plan:
    """The plan for any path ``open_stack`` takes (checked to exist and be readable first)."""
    discovery.check_path(path)
    from .ngff import is_ome_zarr

    if path.is_dir():
        if is_ome_zarr(path):
            return plan_ngff(path, channel, time)
        return plan_folder(path, pattern, pick=None, channel=channel, time=time)
    return plan_file(path, pattern, channel, time)


@dataclass
class Plan:
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
    meta: dict[str, Any]
    notes: list[str]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def single_file(
        cls,
        path: Path,
        name: str,
        reader: SliceReader,
        voxel: metadata.VoxelInfo | None,
        meta: dict[str, Any],
        notes: list[str],
        origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> Plan:
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


def series_name(prefix: str, fallback: str) -> str:
    name = prefix.rstrip(" _-.")
    return name or fallback


def plan_file(path: Path, pattern: str | None, channel: int, time: int) -> Plan:
    try:
        kind = io.sniff(path)
    except PermissionError as exc:
        raise AccessDenied(f"{path}: permission denied") from exc
    except OSError as exc:
        raise UnreadableSlice(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if path.stat().st_size == 0:
        raise UnreadableSlice(f"{path}: empty file (0 bytes)")
    if kind == "tiff" and is_volume_tiff(path):
        return plan_multipage(path, channel, time)
    if kind == "dicom" or (kind is None and path.suffix.lower() in discovery.DICOM_EXTENSIONS):
        from .dicom import read_header

        uid = read_header(path).series_uid
        return plan_folder(
            path.parent,
            pattern,
            pick=discovery.PickDicom(uid),
            channel=channel,
            time=time,
            opened=path,
        )
    if kind in ("tiff", "png", "bmp", "jpeg"):
        if pattern is None:
            key = discovery.parse_name(path.name).key
            return plan_folder(
                path.parent,
                None,
                pick=discovery.PickRaster(key, path),
                channel=channel,
                time=time,
                opened=path,
            )
        return plan_folder(path.parent, pattern, pick=None, channel=channel, time=time, opened=path)
    raise UnsupportedFormat(
        f"{path}: not a TIFF, PNG, BMP, JPEG or DICOM image, nor an OME-Zarr folder"
    )


def is_volume_tiff(path: Path) -> bool:
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
                            for n, a in zip(series.shape, series.axes, strict=True)
                            if a not in "YXS"
                        ]
                    )
                )
                > 1
            )
    except Exception:
        return False


# --- folders ----------------------------------------------------------------------------------


def plan_folder(
    folder: Path,
    pattern: str | None,
    pick: discovery.Pick | None,
    channel: int,
    time: int,
    opened: Path | None = None,
) -> Plan:
    from . import dicom

    odd: list[tuple[Path, str]] = []
    raster, dicom_files = discovery.list_candidates(folder, odd)
    uid_pattern = False
    notes: list[str] = []
    if pattern is not None:
        odd = [(p, what) for p, what in odd if discovery.matches(p, pattern)]
    dicom_headers: list[dicom.DicomHeader] = []
    skipped: list[str] = []
    if dicom_files:
        for f in sorted(dicom_files, key=lambda p: discovery.natural_key(p.name)):
            try:
                dicom_headers.append(dicom.read_header(f))
            except CTStackError as exc:
                skipped.append(str(exc))
    uids = {h.series_uid for h in dicom_headers}
    every_raster = list(raster)
    if pattern is not None:
        if pattern in uids:
            uid_pattern = True
            dicom_headers = [h for h in dicom_headers if h.series_uid == pattern]
            raster = []
        else:
            raster = [p for p in raster if discovery.matches(p, pattern)]
            dicom_headers = [h for h in dicom_headers if discovery.matches(h.path, pattern)]
    if isinstance(pick, discovery.PickRaster) and pick.path not in raster:
        raster.append(pick.path)  # a file opened by name is opened even if it looks odd
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
    chosen = discovery.choose_series(series, pick)
    if pattern is not None and chosen.kind == "raster":
        inside = set(chosen.files)
        if any(p not in inside for p in every_raster if discovery.matches(p, chosen.pattern)):
            chosen.pattern = pattern  # its own glob would select more: keep the one given
    others = [s for s in series if s is not chosen]
    notes.extend(f"{p}: named like a slice but is {what}; skipped" for p, what in odd)
    split = sorted({s.extra["split_from"] for s in series if "split_from" in s.extra})
    for glob_ in split:
        parts = [s for s in series if s.extra.get("split_from") == glob_]
        notes.append(
            f"{folder}: the numbers of {glob_} jump by more than max(100 x step, count), so it "
            "is split into " + ", ".join(f"{s.pattern} ({s.count})" for s in parts)
        )
    if others:
        listed = ", ".join(str(s) for s in others)
        notes.append(
            f"{folder}: opened series {chosen.pattern} ({chosen.count} files); "
            f"other series here: {listed} (choose one with pattern=)"
        )
    if skipped and chosen.kind == "dicom":
        notes.append(f"{folder}: {len(skipped)} DICOM file(s) skipped: " + "; ".join(skipped[:3]))
    if chosen.kind == "dicom":
        plan = plan_dicom(folder, chosen, others, notes)
    else:
        plan = plan_raster(folder, chosen, others, notes, channel, time)
    if opened is not None and plan.path == folder:
        plan.path = opened
    return plan


def _common_prefix(names: list[str]) -> str:
    return os.path.commonprefix(names) if names else ""  # noqa: RUF071 (a name prefix)


def majority_shape(shapes: dict[Path, tuple[int, int]], where: str) -> tuple[int, int]:
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


def plan_raster(
    folder: Path,
    chosen: discovery.SeriesInfo,
    others: list[discovery.SeriesInfo],
    notes: list[str],
    channel: int,
    time: int,
) -> Plan:
    discovery.check_duplicates(chosen)
    where = f"{folder}/{chosen.pattern}"
    numbers = [n if n is not None else 0 for n in chosen.numbers]
    num = discovery.numbering(numbers)
    headers: dict[int, io.SliceHeader] = {}
    bad: list[BadSlice] = []
    errors: list[CTStackError] = []
    for z, f in zip(num.z, chosen.files, strict=True):
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
        if only.format == "tiff" and only.more_pages and is_volume_tiff(only.path):
            plan = plan_multipage(only.path, channel, time)
            plan.other, plan.notes = others, [*notes, *plan.notes]
            return plan
    shape = majority_shape({h.path: h.shape for h in headers.values()}, where)
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
    if len(headers) > 1:
        paged = [h for h in headers.values() if h.more_pages and is_volume_tiff(h.path)]
        if paged:
            notes.append(
                f"{where}: {len(paged)} slice file(s) hold several pages (e.g. "
                f"{paged[0].path}); only the first page of each is read as its slice"
            )
    colour = [h for h in headers.values() if h.colour]
    if colour:
        notes.append(
            f"{where}: {len(colour)} colour slice(s) (e.g. {colour[0].path.name}) converted "
            "to luminance (ITU-R 601-2 weights, alpha dropped)"
        )
    check_tiff_codecs(headers.values())
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
    files_by_z = dict(zip(num.z, chosen.files, strict=True))
    reader = SeriesReader(by_z, files_by_z, (num.depth, *shape), dtype)
    name = series_name(chosen.prefix, first.path.stem if chosen.numbers[0] is None else folder.name)
    single = len(chosen.files) == 1 and chosen.numbers[0] is None
    meta = {
        "source_format": first.format,
        "series": chosen.pattern,
        "numbering": {"first": num.first, "step": num.step, "last": max(numbers)},
        "compressed": any(h.compressed for h in headers.values()),
    }
    return Plan(
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


def check_tiff_codecs(headers: Iterable[SliceHeader]) -> None:
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


def plan_dicom(
    folder: Path,
    chosen: discovery.SeriesInfo,
    others: list[discovery.SeriesInfo],
    notes: list[str],
) -> Plan:
    from . import dicom

    headers = chosen.extra["headers"]
    where = f"{folder} (DICOM series {chosen.series_uid or '?'})"
    shape = majority_shape({h.path: h.shape for h in headers}, where)
    dicom.check_decoder(headers[0])
    plan = dicom.plan_series(headers, shape)
    bad = [
        BadSlice(
            z,
            h.path,
            f"{h.path}: slice is {h.shape[1]} x {h.shape[0]}, the series is "
            f"{shape[1]} x {shape[0]}",
        )
        for z, h in enumerate(plan.slots)
        if h is not None and h.shape != shape
    ]
    notes.extend(plan.warnings)
    for b in bad:
        notes.append(f"bad slice z={b.z} ({b.reason}); it reads as zeros")
    good = [h if h is not None and h.shape == shape else None for h in plan.slots]
    reader = DicomReader(
        good,
        [None if h is None else h.path for h in plan.slots],
        (len(good), *shape),
        plan.dtype,
        plan.rescale,
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
    return Plan(
        path=folder,
        root=folder,
        name=series_name(chosen.prefix, folder.name),
        pattern=chosen.pattern,
        reader=reader,
        voxel=voxel,
        files=[h.path for h in plan.headers],
        missing=list(plan.missing),
        bad=bad,
        other=others,
        meta=meta,
        notes=notes,
    )


# --- multi-page TIFF and OME-Zarr -------------------------------------------------------------


def plan_multipage(path: Path, channel: int, time: int) -> Plan:
    reader = MultipageReader.open(path, channel, time)
    voxel = metadata.tiff_voxel(path)
    meta = {"source_format": reader.kind, "axes": reader.axes, "stored_shape": reader.stored_shape}
    name = path.name.split(".")[0] or path.stem
    return Plan.single_file(path, name, reader, voxel, meta, list(reader.notes))


def plan_ngff(path: Path, channel: int, time: int) -> Plan:
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
    return Plan.single_file(
        path, name or path.name, reader, voxel, meta, list(image.warnings), image.origin
    )
