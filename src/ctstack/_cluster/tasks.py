"""What runs on a worker: one slab of the pyramid, the top levels, or a no-op.

A slab task decodes its slices from the shared path with ``pyramid.stream_levels`` (the local
build's reader and cascade, nothing re-implemented), collects each level's planes into whole
z-blocks and writes them with ``cache.layout.write_block`` straight into the shared temporary
entry. It returns what it wrote (file -> ``[size, checksum]``) and the bad slices it met; the
client records it in the ledger. The top task reads the slab level back from the temporary
entry and runs the same cascade for the levels above.

Cancel: a task checks the build's ``distributed.Event`` before it starts (a set event means
"start nothing new") and ``stream_levels`` polls it once per slice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import Cancelled
from .plan import LevelSpec, Slab, SlabPlan

if TYPE_CHECKING:
    from ..stack import Stack

SLICE_HOOK: Callable[[int, int], None] | None = None
"""Test hook, set on a worker with ``client.run``: called as ``(slab index, z)`` before each
slice a slab task reads (the top task passes -1). Kill and cancel tests block in it."""

Files = dict[str, list[int]]


@dataclass
class TaskResult:
    """What one task did: files written (relative path -> [size, checksum]), bad slices
    ``(z, path, reason)`` met, planes read, and whether it stopped on a cancel before the end."""

    index: int
    files: Files = field(default_factory=dict)
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    planes: int = 0
    stopped: bool = False
    pid: int = field(default_factory=os.getpid)


class CancelFlag(threading.Event):
    """The build's cancel ``distributed.Event`` seen as the ``threading.Event`` that
    ``stream_levels`` polls (``is_set`` asks the scheduler); without a name it is never set."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.event: Any = None
        if name is not None:
            from distributed import Event

            self.event = Event(name)

    def is_set(self) -> bool:
        return bool(self.event is not None and self.event.is_set()) or super().is_set()


class BlockSink:
    """Collects planes per level into file buffers of whole z-blocks and writes each z-block's
    files when it is full, with the cache writer's own pieces (``cache.files.FileBuffer``,
    ``write_files``): one copy per plane, buffers reused, the bytes a local build writes.
    Folders are made only below an existing level folder, so a write after a cancelled
    build's folder was removed fails instead of recreating it."""

    def __init__(
        self, folder: Path, specs: tuple[LevelSpec, ...], shapes: dict[int, Any], dtype: Any
    ) -> None:
        from ..cache.layout import level_layout

        self.folder = folder
        self.dtype = np.dtype(dtype)
        self.layouts = {
            s.level: level_layout(tuple(shapes[s.level]), self.dtype.itemsize) for s in specs
        }
        self.bufs: dict[int, Any] = {}
        self.start: dict[int, int | None] = {s.level: None for s in specs}
        self.count = {s.level: 0 for s in specs}
        self.made: set[str] = set()
        self.files: Files = {}

    def put(self, level: int, z: int, plane: np.ndarray) -> None:
        """Take plane ``z`` of ``level`` (copied); planes of a level arrive in z order."""
        from ..cache.files import FileBuffer

        layout = self.layouts.get(level)
        if layout is None:
            return
        buf = self.bufs.get(level)
        if buf is None:
            buf = self.bufs[level] = FileBuffer(layout, self.dtype)
        if self.start[level] is None:
            self.start[level] = z
        n = self.count[level]
        buf.put(n, plane)
        self.count[level] = n + 1
        if n + 1 == layout.z_depth or z == layout.shape[0] - 1:
            self.flush(level)

    def flush(self, level: int) -> None:
        from ..cache.files import write_files

        z0, n = self.start[level], self.count[level]
        if z0 is None or not n:
            return
        layout, buf = self.layouts[level], self.bufs[level]
        if z0 % layout.z_depth:
            raise ValueError(f"level {level}: z-block starts at {z0}, not a file boundary")
        buf.clear(n)  # a level's last chunk is written whole, padded with the fill value
        level_dir = self.folder / str(level)
        if not level_dir.is_dir():
            raise FileNotFoundError(2, "cache level folder is gone", str(level_dir))
        for key, digest in write_files(level_dir, buf, z0 // layout.z_depth, self.made).items():
            rel = f"{level}/{key}"
            self.files[rel] = [os.stat(self.folder / rel).st_size, int(digest)]
        self.start[level], self.count[level] = None, 0

    def close(self) -> Files:
        for level in self.layouts:
            self.flush(level)
        return self.files


def _shapes(plan: SlabPlan, base: tuple[int, int, int]) -> dict[int, tuple[int, int, int]]:
    from ..pyramid import halved_shape

    return {s.level: halved_shape(base, s.level) for s in plan.levels}


def run_slab(stack: Stack, folder: str, plan: SlabPlan, slab: Slab, cancel: str | None) -> Any:
    """Build ``slab`` of ``plan`` into the shared temporary entry ``folder``."""
    from ..pyramid import stream_levels

    flag = CancelFlag(cancel)
    index = slab.index
    result = TaskResult(index)
    if flag.is_set():
        result.stopped = True
        return result
    sink = BlockSink(Path(folder), plan.slab_written, _shapes(plan, stack.shape), stack.dtype)
    hook = SLICE_HOOK

    def read(z: int, buf: np.ndarray) -> np.ndarray:
        if hook is not None:
            hook(index, z)
        return stack.read_slice(z, out=buf)

    try:
        stream_levels(
            read,
            stack.shape,
            stack.dtype,
            plan.slab_levels,
            sink.put,
            start=slab.start,
            stop=slab.stop,
            cancel=flag,
        )
        result.files = sink.close()
    except Cancelled:
        result.stopped = True
        return result
    except OSError as exc:  # as the local writer says it: "disk full", naming the location
        raise _write_error(folder, exc) from exc
    result.planes = slab.planes
    result.bad = [
        (b.z, str(b.path), b.reason) for b in stack.bad_slices if slab.start <= b.z < slab.stop
    ]
    return result


def run_top(
    folder: str,
    plan: SlabPlan,
    base: tuple[int, int, int],
    dtype: str,
    cancel: str | None,
    read_level: Callable[[str, int, Any], Any] | None = None,
) -> Any:
    """Build the levels above ``plan.slab_levels`` from that level in ``folder``."""
    from ..pyramid import make_cascade

    flag = CancelFlag(cancel)
    result = TaskResult(-1)
    if flag.is_set():
        result.stopped = True
        return result
    k = plan.slab_levels
    shapes = _shapes(plan, base)
    source = (read_level or _open_level)(folder, k, shapes)
    nz, ny, nx = source.shape
    levels = plan.top_written
    sink = BlockSink(Path(folder), levels, shapes, dtype)
    cascade = make_cascade(ny, nx, levels[-1].level - k, np.dtype(dtype))
    outs = [np.empty(s, np.dtype(dtype)) for s in cascade.level_shapes]

    def emit(done: list[tuple[int, int]]) -> None:
        for level, z in done:
            sink.put(k + level, z, outs[level - 1])

    step = max(1, int(getattr(source, "chunks", (1,))[0]))
    try:
        for z0 in range(0, nz, step):
            if flag.is_set():
                result.stopped = True
                return result
            block = np.ascontiguousarray(source[z0 : z0 + step])
            for plane in block:
                if SLICE_HOOK is not None:
                    SLICE_HOOK(-1, z0)
                emit(cascade.push(np.ascontiguousarray(plane), outs))
        emit(cascade.finish(outs))
        result.files = sink.close()
    except OSError as exc:
        raise _write_error(folder, exc) from exc
    result.planes = nz
    return result


def _write_error(folder: str, exc: OSError) -> Exception:
    from ..cache.commit import write_error

    return write_error(os.path.dirname(folder), "writing the pyramid cache", exc)


def _open_level(folder: str, level: int, shapes: Any) -> Any:
    """Level ``level`` of the temporary entry, read-only, through zarr (the layout is zarr's)."""
    import zarr

    return zarr.open_array(store=os.path.join(folder, str(level)), mode="r", zarr_format=3)


def noop(index: int, *payload: Any) -> int:
    """A task that does nothing with what a real task gets: the benchmark submits a plan."""
    return index
