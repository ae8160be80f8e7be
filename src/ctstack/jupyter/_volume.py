"""The 3D pane's kernel side: which pyramid level fits the browser's texture budget, and the
transport that sends it as z-slab "bricks" from a background thread.

The browser holds the volume as one R16F 3D texture (2 bytes a voxel), values normalised to the
level's range ``[low, high]`` (``(v - low) / (high - low)``, kept unclamped, so values outside
the range survive as float16). The level is the finest whose texture fits ``texture_mb`` and
whose sides fit ``MAX_SIDE`` (the usual WebGL2 MAX_3D_TEXTURE_SIZE); an explicit ``level_3d``
is honoured when it fits the same limits and refused (with the reason) otherwise.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgument

if TYPE_CHECKING:
    from ._reader import TileReader

BYTES_PER_VOXEL = 2  # R16F: what the browser's texture holds per voxel
MAX_SIDE = 2048  # MAX_3D_TEXTURE_SIZE of desktop GPUs and SwiftShader; the browser checks its own
BRICK_BYTES = 4 << 20  # about this many bytes of texture per brick message
NAMED_CAMERAS = ("z", "y", "x")
MODES = ("mip", "iso")
DEFAULT_CAMERA: dict[str, float] = {"azimuth": -35.0, "elevation": 25.0, "zoom": 1.0}

Send = Callable[[dict[str, Any], list[Any]], None]


@dataclass(frozen=True)
class Choice:
    """The level chosen for the 3D texture, and why another was not (``note``, or "")."""

    level: int
    shape: tuple[int, int, int]
    bytes: int
    note: str = ""


def texture_bytes(shape: Sequence[int]) -> int:
    """Bytes of the browser's 3D texture for a level of ``shape`` (z, y, x)."""
    return int(np.prod([int(n) for n in shape], dtype=np.int64)) * BYTES_PER_VOXEL


def _fits(shape: Sequence[int], budget: int) -> bool:
    return texture_bytes(shape) <= budget and max(int(n) for n in shape) <= MAX_SIDE


def choose_level(
    shapes: Sequence[Sequence[int]], texture_mb: float, level_3d: int | None = None
) -> Choice:
    """The finest level (shapes level 0 first) whose texture fits ``texture_mb`` MiB and
    ``MAX_SIDE``; the coarsest when none does (with a note). ``level_3d`` (clamped to the
    levels there are) is used when it fits, else refused with a note naming its size."""
    if not shapes:
        raise InvalidArgument("a stack has at least one level")
    if not texture_mb > 0:
        raise InvalidArgument(f"texture_mb must be positive, got {texture_mb!r}")
    budget = int(texture_mb * (1 << 20))
    last = len(shapes) - 1

    def pick(k: int, note: str = "") -> Choice:
        shape = (int(shapes[k][0]), int(shapes[k][1]), int(shapes[k][2]))
        return Choice(k, shape, texture_bytes(shape), note)

    auto = next((k for k in range(len(shapes)) if _fits(shapes[k], budget)), None)
    note = ""
    if level_3d is not None:
        k = min(max(int(level_3d), 0), last)
        clamped = f"3D level {level_3d} does not exist; level {k} shown" if k != level_3d else ""
        if _fits(shapes[k], budget):
            return pick(k, clamped)
        mb = texture_bytes(shapes[k]) / (1 << 20)
        note = (
            f"3D level {k} refused: its texture ({mb:.0f} MB, sides {list(shapes[k])}) exceeds "
            f"texture_mb={texture_mb:g} or {MAX_SIDE} voxels a side"
        )
    if auto is None:
        mb = texture_bytes(shapes[last]) / (1 << 20)
        extra = (
            f"even the coarsest level ({mb:.0f} MB) exceeds texture_mb={texture_mb:g}"
            f" or {MAX_SIDE} voxels a side; showing it anyway"
        )
        return pick(last, f"{note}; {extra}" if note else extra)
    return pick(auto, note)


def bricks(nz: int, plane_bytes: int, brick_bytes: int = BRICK_BYTES) -> list[tuple[int, int]]:
    """z-slabs ``[(z0, z1), ...]`` covering ``0..nz`` once, in order, each about
    ``brick_bytes`` (at least one plane)."""
    step = max(1, brick_bytes // max(1, plane_bytes))
    return [(z0, min(z0 + step, nz)) for z0 in range(0, nz, step)]


def check_camera(value: Any) -> str | dict[str, float]:
    """A valid ``camera_3d``: ``"z"``, ``"y"``, ``"x"`` or ``{"azimuth", "elevation", "zoom"}``
    (degrees, degrees, 1 = fit; missing keys take the default view's); InvalidArgument else."""
    if isinstance(value, str):
        if value in NAMED_CAMERAS:
            return value
        raise InvalidArgument(f"camera_3d must be one of {NAMED_CAMERAS} or a dict, got {value!r}")
    if not isinstance(value, dict):
        raise InvalidArgument(f"camera_3d must be a view name or a dict, got {value!r}")
    unknown = set(value) - set(DEFAULT_CAMERA)
    if unknown:
        raise InvalidArgument(f"camera_3d has unknown keys {sorted(unknown)}")
    out = dict(DEFAULT_CAMERA)
    for key, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            raise InvalidArgument(f"camera_3d[{key!r}] must be a number, got {v!r}")
        out[key] = float(v)
    if out["zoom"] <= 0:
        raise InvalidArgument(f"camera_3d zoom must be positive, got {out['zoom']}")
    out["elevation"] = min(90.0, max(-90.0, out["elevation"]))
    return out


def read_slab(reader: TileReader, level: int, z0: int, z1: int) -> np.ndarray:
    """Planes ``z0:z1`` of ``level`` as float32 (level 0 through the slice reader: bad slices
    read as zeros and are recorded, as for tiles)."""
    stack = reader.stack
    if level == 0 and not stack.stored_levels:
        out = np.empty((z1 - z0, *stack.shape[1:]), np.float32)
        for z in range(z0, z1):
            out[z - z0] = stack.read_slice(z)
        return out
    array = stack.data if level == 0 else reader.level_array(level)
    return np.asarray(array[z0:z1], dtype=np.float32)


def encode(slab: np.ndarray, low: float, high: float) -> np.ndarray:
    """A slab as the texture holds it: little-endian float16 of ``(v - low) / (high - low)``."""
    scale = 1.0 / max(high - low, 1e-30)
    norm = (slab.astype(np.float32, copy=False) - np.float32(low)) * np.float32(scale)
    np.clip(norm, -60000.0, 60000.0, out=norm)  # no inf in float16
    return np.ascontiguousarray(norm, dtype="<f2")


@dataclass
class VolumeStats:
    """Bricks and bytes sent for the 3D pane, requests seen, cancelled transfers, errors."""

    requests: int = 0
    bricks: int = 0
    bytes: int = 0
    cancelled: int = 0
    errors: int = 0
    threads: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        return {
            "volume_requests": self.requests,
            "volume_bricks": self.bricks,
            "volume_bytes": self.bytes,
            "volume_cancelled": self.cancelled,
            "volume_errors": self.errors,
        }


class VolumeSender:
    """Sends one level as bricks on its own thread; a newer request or :meth:`close` cancels
    the transfer under way (checked between bricks)."""

    def __init__(self, reader: TileReader, send: Send, brick_bytes: int = BRICK_BYTES) -> None:
        self.reader = reader
        self.send = send
        self.brick_bytes = brick_bytes
        self.stats = VolumeStats()
        self._lock = threading.Lock()
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self, header: dict[str, Any], level: int, low: float, high: float) -> None:
        """Cancel any transfer and start sending ``level`` (``header`` goes in every brick)."""
        with self._lock:
            if self._closed:
                return
            self.stats.requests += 1
            self._stop_locked()
            cancel = threading.Event()
            thread = threading.Thread(
                target=self._run,
                args=(dict(header), level, low, high, cancel),
                name="ctstack-volume",
                daemon=True,
            )
            self._cancel, self._thread = cancel, thread
        thread.start()

    def cancel(self) -> None:
        """Stop the transfer under way (if any)."""
        with self._lock:
            self._stop_locked()

    def close(self) -> None:
        """Cancel and accept no more requests."""
        with self._lock:
            self._closed = True
            self._stop_locked()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the current transfer's thread (tests); True when none runs."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _stop_locked(self) -> None:
        if self._cancel is not None and self._thread is not None and self._thread.is_alive():
            self._cancel.set()
            self.stats.cancelled += 1

    def _run(
        self,
        header: dict[str, Any],
        level: int,
        low: float,
        high: float,
        cancel: threading.Event,
    ) -> None:
        self.stats.threads.add(threading.get_ident())
        try:
            nz, ny, nx = header["shape"]
            parts = bricks(nz, ny * nx * BYTES_PER_VOXEL, self.brick_bytes)
            for i, (z0, z1) in enumerate(parts):
                if cancel.is_set():
                    return
                data = encode(read_slab(self.reader, level, z0, z1), low, high)
                if cancel.is_set():
                    return
                msg = {**header, "z0": z0, "z1": z1, "index": i, "count": len(parts)}
                self.send(msg, [data.data.cast("B")])
                self.stats.bricks += 1
                self.stats.bytes += data.nbytes
        except Exception as exc:  # report, never kill the kernel
            self.stats.errors += 1
            if not cancel.is_set():
                with contextlib.suppress(Exception):  # the viewer closed meanwhile
                    self.send({**header, "type": "volume_error", "message": str(exc)}, [])


class VolumePane:
    """Wires the 3D pane into a Viewer: keeps its ``volume`` traitlet (the chosen level) up to
    date and answers the browser's ``{"type": "volume"}`` request with bricks of that level.

    Holds its viewer weakly (the viewer holds this), like the tile server."""

    def __init__(self, widget: Any, brick_bytes: int = BRICK_BYTES) -> None:
        self._widget = weakref.ref(widget)
        self.sender = VolumeSender(widget._reader, self._send, brick_bytes)
        widget._handlers["volume"] = self._request
        widget._handlers["volume_cancel"] = self._cancel
        widget.observe(self._rechoose, names=["generation", "texture_mb", "level_3d"])
        self._rechoose()

    def close(self) -> None:
        """Stop any transfer; no more are started."""
        self.sender.close()

    def _rechoose(self, change: Any = None) -> None:
        w = self._widget()
        if w is None:
            return
        shapes = [lv["shape"] for lv in w.levels] or [list(w.shape)]
        try:
            choice = choose_level(shapes, w.texture_mb, w.level_3d)
        except InvalidArgument as exc:
            w._set_note("volume", str(exc))
            return
        hist = w.histogram or {}
        low, high = float(hist.get("low", 0.0)), float(hist.get("high", 1.0))
        if not high > low:
            high = low + 1.0
        w.volume = {
            "level": choice.level,
            "shape": list(choice.shape),
            "dtype": "float16",
            "bytes": choice.bytes,
            "low": low,
            "high": high,
            "generation": w.generation,
            "owner": w.model_id,  # the browser keeps the values per widget
        }
        w._set_note("volume", choice.note)

    def _request(self, content: dict[str, Any], buffers: list[Any]) -> None:
        """The browser asks for the volume (kernel's main thread: only starts the sender)."""
        w = self._widget()
        if w is None or w._closed or not w.volume:
            return
        vol = dict(w.volume)
        header = {
            "type": "volume",
            "id": content.get("id"),
            "generation": vol["generation"],
            "level": vol["level"],
            "shape": vol["shape"],
            "low": vol["low"],
            "high": vol["high"],
            "dtype": "float16",
        }
        self.sender.start(header, vol["level"], vol["low"], vol["high"])

    def _cancel(self, content: dict[str, Any], buffers: list[Any]) -> None:
        self.sender.cancel()

    def _send(self, content: dict[str, Any], buffers: list[Any]) -> None:
        w = self._widget()
        if w is None:
            raise RuntimeError("the viewer is gone")
        w._reply(content, buffers)
        w._slices_note()  # bad slices met while reading show in the warning (cheap if unchanged)
