"""The Stack: a lazily read (z, y, x) volume with its files, gaps, bad slices and voxel size.

`open_stack` reads headers only and settles shape and dtype before any pixel is decoded;
`Stack.data` is a dask array with one chunk per slice, and `read_slice` decodes one plane.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import discovery, metadata
from ._types import Progress, StrPath
from .errors import CTStackError
from .io.readers import SliceReader
from .planning import BadSlice, Plan, plan_path
from .pyramid import DEFAULT_MAX_SIZE, Pyramid

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["BadSlice", "Reporter", "Stack", "open_stack", "summarize", "warn_reporter"]


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
        metadata: dict[str, Any] | None = None,
        notes: list[str] | None = None,
        report: Reporter | None = None,
    ) -> None:
        self.path = path
        self.root = root
        self.name = name
        self.pattern = pattern
        self._reader = reader
        nz, ny, nx = (int(n) for n in reader.shape)
        self.shape: tuple[int, int, int] = (nz, ny, nx)
        self.dtype: np.dtype = np.dtype(reader.dtype)
        vz, vy, vx = (float(v) for v in voxel_size)
        self.voxel_size: tuple[float, float, float] = (vz, vy, vx)
        self.unit = unit
        oz, oy, ox = (float(v) for v in origin)
        self.origin: tuple[float, float, float] = (oz, oy, ox)
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
        # OME-Zarr: its own pyramid
        self.stored_levels: list[da.Array] = list(reader.extra_levels())
        self._pyramid: Pyramid | None = None
        self._levels: list[da.Array] = [self.data, *self.stored_levels]
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
                arr = self._reader.read(z, out)
            except CTStackError as exc:
                self._mark_bad(z, str(exc))
            else:
                if arr.shape == self.shape[1:] and arr.dtype == self.dtype:
                    return arr
                self._mark_bad(z, f"decoded as {arr.shape} {arr.dtype}, not {self.shape[1:]}")
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

    def _make_dask(self) -> da.Array:
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

    # --- the pyramid ---------------------------------------------------------------------------

    @property
    def pyramid(self) -> Pyramid | None:
        """The latest pyramid this stack adopted (levels, location, built or reused, settings);
        None until ``build_pyramid`` (or ``ctstack.pyramid.cached_levels``) found one."""
        return self._pyramid

    @property
    def levels(self) -> list[da.Array]:
        """Levels 0..n as dask arrays, level 0 first: the adopted pyramid's, else level 0 and
        the levels the source carries itself (OME-Zarr)."""
        return self._levels

    @property
    def cache_location(self) -> Path | None:
        """The cache location holding levels 1..n of the adopted pyramid, else None."""
        return None if self._pyramid is None else self._pyramid.location

    def build_pyramid(
        self,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        rebuild: bool = False,
        cache_dir: StrPath | None = None,
        client: Any = None,
    ) -> list[da.Array]:
        """Build (or reuse) the pyramid cache and return the levels, level 0 first.

        The result is kept as ``stack.pyramid``; see ``ctstack.pyramid.make_pyramid``. With a
        ``distributed.Client``, slab tasks on its cluster build it (``ctstack._cluster``; the
        stack and ``cache_dir`` must be on a filesystem every worker sees); same result.
        """
        from .pyramid import make_pyramid

        if client is not None:
            from ._cluster.build import build_on_cluster

            built = build_on_cluster(self, client, progress, cancel, max_size, rebuild, cache_dir)
            return self._adopt(built.pyramid)
        made = make_pyramid(
            self,
            progress=progress,
            cancel=cancel,
            max_size=max_size,
            rebuild=rebuild,
            cache_dir=cache_dir,
        )
        return self._adopt(made)

    def _adopt(self, pyramid: Pyramid) -> list[da.Array]:
        """Make ``pyramid`` this stack's: the one place ``pyramid``, ``levels`` and
        ``cache_location`` change. Returns the levels."""
        if not pyramid.levels or pyramid.levels[0] is not self.data:
            raise ValueError("a pyramid is adopted only by the stack whose level 0 it holds")
        self._pyramid = pyramid
        self._levels = list(pyramid.levels)
        return self._levels

    # --- plumbing -----------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_report"] = warn_reporter  # a face's reporter stays with the face
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
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

    def __call__(self, block_id: tuple[int, ...]) -> np.ndarray:
        return self.stack.read_slice(block_id[0])[None]


# --- open_stack -------------------------------------------------------------------------------


def open_stack(
    path: StrPath,
    pattern: str | None = None,
    voxel_size: float | Iterable[float] | None = None,
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
    plan = plan_path(path, pattern, channel, time)
    return _from_plan(plan, override, override_unit, report)


def _from_plan(
    plan: Plan,
    override: tuple[float, float, float] | None,
    override_unit: str | None,
    report: Reporter | None = None,
) -> Stack:
    """The Stack of a plan, with the user's voxel size and unit overrides applied."""
    found = plan.voxel or metadata.VoxelInfo((1.0, 1.0, 1.0), metadata.PIXEL, "default")
    voxel, unit, source = found.voxel_size, found.unit, found.source
    notes = list(plan.notes)
    if not all(math.isfinite(v) and v > 0 for v in voxel):  # never a voxel size of 0 or NaN
        notes.append(
            f"{plan.path}: voxel size {tuple(voxel)} from {source} is not a positive finite "
            "size; using 1 pixel"
        )
        voxel, unit, source = (1.0, 1.0, 1.0), metadata.PIXEL, f"{source} (unusable)"
    if override is not None:
        voxel, source = override, "user"
    if override_unit is not None:
        unit = override_unit
    meta = {**plan.meta, **found.extra, "voxel_size_source": source}
    return Stack(
        path=plan.path,
        root=plan.root,
        name=plan.name,
        pattern=plan.pattern,
        reader=plan.reader,
        voxel_size=voxel,
        unit=unit,
        origin=plan.origin,
        files=plan.files,
        missing=plan.missing,
        bad_slices=plan.bad,
        other_series=plan.other,
        metadata=meta,
        notes=notes,
        report=report,
    )
