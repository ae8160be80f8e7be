"""Regions of interest: an automatic proposal (Otsu on the coarsest level) and persistence.

An :class:`ROI` is a box and a Z range, nothing else. The iso threshold is a separate piece of
state (owned by the view model, ``ctstack.viewmodel``); a :class:`Selection` pairs the two where
both travel together: what ``roi.json`` holds for a series, and what :func:`suggest` proposes.

The ROI file is ``<stack.root>/.ctstack/roi.json`` (not cache: rebuilds and ``cache clean``
keep it), keyed by series so several series in one folder keep their own. When the stack
folder cannot be written, or ``.ctstack`` is a symbolic link (read, never written through),
the file lives in the per-stack folder of the user cache dir.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._types import Progress
from .errors import CTStackError

if TYPE_CHECKING:
    from .stack import Stack

ROI_VERSION = 2  # 1: each entry was a flat ROI with its threshold; 2: {"roi": ..., "threshold"}
MIN_EFFECTIVENESS = 0.8  # Otsu between-class / total variance; noise gives 0.64-0.75
MAX_VALLEY = 0.5  # histogram at the threshold vs the smaller of the two peaks
MARGIN = 0.05  # fraction of the object's extent added on each side
BOX_MIN = 64  # the box is found on the coarsest level whose largest axis has this many voxels


@dataclass
class ROI:
    """A level-0 region ``[start, stop)`` per axis, and how it was found."""

    z: tuple[int, int]
    y: tuple[int, int]
    x: tuple[int, int]
    source: str = "user"  # "user", "auto", or "full" (auto declined / nothing saved)
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slices(self) -> dict[str, slice]:
        """Region as z, y, x slices, ready for ``export(stack, out, **roi.slices)``."""
        return {a: slice(*getattr(self, a)) for a in "zyx"}

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z[1] - self.z[0], self.y[1] - self.y[0], self.x[1] - self.x[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            **{a: list(getattr(self, a)) for a in "zyx"},
            "source": self.source,
            "reason": self.reason,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ROI:
        """An ROI from :meth:`to_dict` output (a version-1 entry's ``threshold`` is ignored)."""
        return cls(
            z=_range(d["z"]),
            y=_range(d["y"]),
            x=_range(d["x"]),
            source=str(d.get("source", "user")),
            reason=str(d.get("reason", "")),
            extra=dict(d.get("extra") or {}),
        )

    @classmethod
    def full(cls, stack: Stack, reason: str = "") -> ROI:
        z, y, x = stack.shape
        return cls((0, z), (0, y), (0, x), "full", reason)

    def clamp(self, shape: tuple[int, int, int]) -> ROI:
        """The same ROI cut to a stack of ``shape`` (an empty axis becomes the full axis)."""
        ranges: list[tuple[int, int]] = []
        for (a, b), n in zip((self.z, self.y, self.x), shape, strict=True):
            a, b = max(0, min(a, n)), max(0, min(b, n))
            ranges.append((a, b) if b > a else (0, n))
        z, y, x = ranges
        return ROI(z, y, x, self.source, self.reason, dict(self.extra))


def _range(value: Any) -> tuple[int, int]:
    """``[start, stop]`` from a dict or a JSON file as a pair of ints."""
    start, stop = (int(v) for v in value)
    return (start, stop)


@dataclass(frozen=True)
class Selection:
    """An ROI with the iso threshold chosen for it (None: no threshold chosen or found)."""

    roi: ROI
    threshold: float | None = None

    def clamp(self, shape: tuple[int, int, int]) -> Selection:
        return Selection(self.roi.clamp(shape), self.threshold)


# --- automatic proposal -----------------------------------------------------------------------


def _separation(values: np.ndarray, threshold: float) -> tuple[float, float]:
    """(Otsu effectiveness, valley ratio) of a 256-bin histogram split at ``threshold``."""
    lo, hi = float(values.min()), float(values.max())
    hist, edges = np.histogram(values, bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    p = hist / hist.sum()
    below = centres <= threshold
    w0, w1 = p[below].sum(), p[~below].sum()
    if w0 == 0 or w1 == 0:
        return 0.0, 1.0
    mean = (p * centres).sum()
    m0, m1 = (p[below] * centres[below]).sum() / w0, (p[~below] * centres[~below]).sum() / w1
    total = (p * (centres - mean) ** 2).sum()
    eta = float((w0 * (m0 - mean) ** 2 + w1 * (m1 - mean) ** 2) / total) if total else 0.0
    smooth = np.convolve(hist, np.ones(5) / 5, mode="same")
    i = int(np.searchsorted(centres, threshold))
    i0, i1 = int(np.argmax(smooth[:i])), i + int(np.argmax(smooth[i:]))
    valley = float(smooth[i0 : i1 + 1].min())
    peak = float(min(smooth[i0], smooth[i1]))
    return eta, (valley / peak if peak else 1.0)


def _extent(profile: np.ndarray, keep: float = 0.01) -> tuple[int, int]:
    """[first, last + 1) of the profile entries above ``keep`` times its maximum (drops specks)."""
    idx = np.nonzero(profile > keep * profile.max())[0]
    return int(idx[0]), int(idx[-1]) + 1


def suggest_roi(
    stack: Stack,
    margin: float = MARGIN,
    build: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ROI:
    """A box around the object (see :func:`suggest`, which also returns the threshold)."""
    return suggest(stack, margin, build, progress, cancel).roi


def suggest(
    stack: Stack,
    margin: float = MARGIN,
    build: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Selection:
    """Propose a threshold (Otsu on the coarsest level) and a box around the object.

    The box comes from the coarsest level with at least BOX_MIN voxels on its largest axis.
    Builds the pyramid first when ``build`` (and the stack is large enough to have levels).
    Declines, returning the full volume and no threshold, with ``roi.reason`` saying why, when
    the histogram does not separate object from background. ``roi.reason`` reports what was
    found in words.
    """
    from skimage.filters import threshold_otsu

    if build and len(stack.levels) == 1:
        stack.build_pyramid(progress=progress, cancel=cancel)
    n = len(stack.levels) - 1
    vol = np.asarray(stack.levels[n].compute())
    finite = vol[np.isfinite(vol)] if vol.dtype.kind == "f" else vol.ravel()
    sample = finite[:: max(1, finite.size // 4_000_000)]
    if sample.size == 0 or sample.min() == sample.max():
        return Selection(ROI.full(stack, "auto-ROI declined: the volume holds a single value"))
    threshold = float(threshold_otsu(sample))
    eta, valley = _separation(sample, threshold)
    facts: dict[str, Any] = {"level": n, "otsu": threshold, "effectiveness": eta, "valley": valley}
    if eta < MIN_EFFECTIVENESS or valley > MAX_VALLEY:
        roi = ROI.full(
            stack,
            (
                f"auto-ROI declined: the histogram does not separate object from background "
                f"(Otsu {threshold:g} on level {n}, effectiveness {eta:.2f}, valley {valley:.2f}); "
                "using the full volume"
            ),
        )
        roi.extra = facts
        return Selection(roi)
    box_level = max([i for i, a in enumerate(stack.levels) if max(a.shape) >= BOX_MIN] or [0])
    if box_level != n:  # too coarse to see thin walls: look one finer (at most ~128 per axis)
        vol = np.asarray(stack.levels[box_level].compute())
    facts["box_level"] = box_level
    mask = vol > threshold
    fz, fy, fx = (s / c for s, c in zip(stack.shape, vol.shape, strict=True))
    boxes = [_extent(mask.sum(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    ranges: list[tuple[int, int]] = []
    for (a, b), f, size in zip(boxes, (fz, fy, fx), stack.shape, strict=True):
        a0, b0 = math.floor(a * f), min(size, math.ceil(b * f))
        pad = max(math.ceil(margin * (b0 - a0)), math.ceil(f))
        ranges.append((max(0, a0 - pad), min(size, b0 + pad)))
        facts.setdefault("object", []).append([a0, b0])
    (oz, oy, ox) = facts["object"]
    frame = (oy[1] - oy[0]) * (ox[1] - ox[0]) / (stack.shape[1] * stack.shape[2])
    z0, z1 = ranges[0]
    reason = (
        f"object occupies {100 * frame:.0f} % of the frame, slices {oz[0]}-{oz[1] - 1}; "
        f"ROI z {z0}:{z1}, y {ranges[1][0]}:{ranges[1][1]}, x {ranges[2][0]}:{ranges[2][1]}"
        f" with a {100 * margin:.0f} % margin; threshold {threshold:g} (Otsu on level {n})"
    )
    return Selection(ROI(ranges[0], ranges[1], ranges[2], "auto", reason, facts), threshold)


# --- persistence ------------------------------------------------------------------------------


def series_key(stack: Stack) -> str:
    """The key of this series inside roi.json: its pattern, else its file or folder name."""
    return stack.pattern or Path(stack.path).name


def _paths(stack: Stack) -> tuple[Path, Path]:
    """(beside the stack, in the shared cache dir): the two places a ROI file may be."""
    from . import locations

    return locations.roi_files(stack.root)


def _locations(stack: Stack) -> tuple[Path, Path]:
    """Both ROI files, the one saves go to first: a new save must win over an older file."""
    from . import locations

    return locations.roi_read_order(stack.root)


def roi_path(stack: Stack, for_writing: bool = False) -> Path:
    """Where this stack's ROI file is (or would be written): beside the stack when writable.

    A ``.ctstack`` that is a symbolic link is read but never written through.
    """
    from . import locations

    return locations.roi_path(stack.root, for_writing)


def _read(path: Path) -> dict[str, Any]:
    """The ROI file as ``{"version": 2, "series": {key: v2 entry}}`` (version 1 is migrated)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": ROI_VERSION, "series": {}}
    except (OSError, ValueError) as exc:
        raise CTStackError(f"{path}: unreadable ROI file ({exc}); move it away") from exc
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        raise CTStackError(f"{path}: not a ctstack ROI file (no 'series' table)")
    version = data.get("version", 1)
    if not isinstance(version, int) or version > ROI_VERSION:
        raise CTStackError(
            f"{path}: ROI file version {version!r} is newer than this ctstack reads "
            f"(up to {ROI_VERSION}); update ctstack"
        )
    data["series"] = {key: _entry_v2(entry) for key, entry in data["series"].items()}
    data["version"] = ROI_VERSION
    return data


def _entry_v2(entry: Any) -> Any:
    """A version-2 entry: a version-1 entry (a flat ROI with its threshold) is split in two."""
    if not isinstance(entry, dict) or "roi" in entry or "z" not in entry:
        return entry
    keep = ("shape", "saved")
    return {
        "roi": {k: v for k, v in entry.items() if k not in (*keep, "threshold")},
        "threshold": entry.get("threshold"),
        **{k: entry[k] for k in keep if k in entry},
    }


def _selection(entry: dict[str, Any]) -> Selection:
    threshold = entry.get("threshold")
    return Selection(ROI.from_dict(entry["roi"]), None if threshold is None else float(threshold))


def load_selection(stack: Stack) -> Selection | None:
    """The ROI and threshold saved for this stack's series (the ROI cut to the stack's shape);
    None when nothing is saved."""
    for path in _locations(stack):
        if path.is_file():
            entry = _read(path)["series"].get(series_key(stack))
            if entry is not None:
                return _selection(entry).clamp(stack.shape)
    return None


def load_roi(stack: Stack) -> ROI | None:
    """The ROI saved for this stack's series, cut to the stack's shape; None when none is saved."""
    saved = load_selection(stack)
    return None if saved is None else saved.roi


def load_threshold(stack: Stack) -> float | None:
    """The threshold saved for this stack's series, or None."""
    saved = load_selection(stack)
    return None if saved is None else saved.threshold


_KEEP: Any = object()  # save_roi's default: keep the threshold already saved


def save_roi(stack: Stack, roi: ROI, threshold: float | None = _KEEP) -> Path:
    """Save (or replace) the ROI of this stack's series atomically; returns the file written.

    The saved threshold stays unless ``threshold`` is given (None removes it).
    """
    if threshold is _KEEP:
        threshold = load_threshold(stack)
    return save_selection(stack, Selection(roi, threshold))


def save_selection(stack: Stack, selection: Selection) -> Path:
    """Save the ROI and threshold of this stack's series atomically (write a temporary file,
    then rename it over the old one); returns the file written. Of two writers, the last wins."""
    path = roi_path(stack, for_writing=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read(path)
    thr = selection.threshold
    data["series"][series_key(stack)] = {
        "roi": selection.roi.clamp(stack.shape).to_dict(),
        "threshold": None if thr is None else float(thr),
        "shape": list(stack.shape),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CTStackError(f"{path}: cannot save the ROI ({exc.strerror or exc})") from exc
    return path


def resolve_selection(
    stack: Stack, how: str | ROI | Selection | dict[str, Any] | None
) -> Selection:
    """An ROI and threshold from ``"saved"`` (else the full volume), ``"auto"``, ``"full"``, an
    ROI, a Selection or a dict (``ROI.to_dict`` output)."""
    if isinstance(how, Selection):
        return how.clamp(stack.shape)
    if isinstance(how, ROI):
        return Selection(how.clamp(stack.shape))
    if isinstance(how, dict):
        return Selection(ROI.from_dict(how).clamp(stack.shape))
    if how in (None, "full"):
        return Selection(ROI.full(stack, "full volume"))
    if how == "saved":
        return load_selection(stack) or Selection(ROI.full(stack, "no saved ROI; full volume"))
    if how == "auto":
        return suggest(stack)
    raise CTStackError(f"ROI must be 'saved', 'auto', 'full' or an ROI, got {how!r}")


def resolve_roi(stack: Stack, how: str | ROI | Selection | dict[str, Any] | None) -> ROI:
    """An ROI from ``"saved"`` (else full), ``"auto"``, ``"full"``, an ROI or a dict."""
    return resolve_selection(stack, how).roi
