"""Background pyramid builds: one controller per viewer, a worker thread per build.

The worker only calls ``stack.build_pyramid``; progress is polled from the main thread (a timer
updates the napari progress bar), and the finished levels replace the layer on the main thread
through the worker's ``returned`` signal. Tests wait on :attr:`PyramidController.busy`. Bad
slices found while building are held by the stack's notifier and summed up once at the end.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QTimer, Signal

from .._layer import (
    apply_3d_level,
    max_size_setting,
    on_cache_gone,
    replace_with_levels,
    stack_of,
)
from .._reader import opened, pyramid_cache_dir, pyramid_max_size, remember_max_size
from .._sync import sync_viewer
from .._window import enable_window_drag
from ._common import report_failure

if TYPE_CHECKING:
    import dask.array as da
    from napari.layers import Image
    from napari.utils import cancelable_progress

    import napari

    from ...errors import CacheGone
    from ...stack import Stack

POLL_MS = 100
_CONTROLLERS: weakref.WeakKeyDictionary[napari.viewer.Viewer, PyramidController] = (
    weakref.WeakKeyDictionary()
)


def controller_for(viewer: napari.viewer.Viewer) -> PyramidController:
    """The viewer's build controller, made on first use."""
    ctl = _CONTROLLERS.get(viewer)
    if ctl is None:
        ctl = _CONTROLLERS[viewer] = PyramidController(viewer)
    return ctl


def open_viewers() -> list[napari.viewer.Viewer]:
    """Every open napari viewer.

    napari has no public list of its viewers (``napari.current_viewer()`` gives only the active
    one), and a reader does not learn which viewer asked for it: the layer it returns is added
    later. This is the plugin's one use of the private ``Viewer._instances``.
    """
    from napari import Viewer

    return list(getattr(Viewer, "_instances", ()))


def _cache_gone(stack: Stack, exc: CacheGone) -> None:
    """From any thread: hand a vanished cache entry to every controller (main thread)."""
    for ctl in list(_CONTROLLERS.values()):
        ctl.gone.emit(stack, exc)


on_cache_gone(_cache_gone)


def attach_when_added(stack: Stack) -> None:
    """After the event loop adds this stack's layer to a viewer, start its build there and
    give that viewer window/level by mouse drag."""

    def attach() -> None:
        for viewer in open_viewers():
            for layer in viewer.layers:
                if stack_of(layer) is stack:
                    controller_for(viewer).build(layer)
                    enable_window_drag(viewer)  # Control + drag and Shift-W, panel or not
                    return

    QTimer.singleShot(0, attach)


@dataclass
class Job:
    """One build: its stack, cancel event, progress figures and final state."""

    stack: Stack
    max_size: int
    rebuild: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0
    state: str = "building"  # building | done | cancelled | failed
    seconds: float = 0.0
    error: str = ""
    bad_before: int = 0
    worker: Any = None  # napari's FunctionWorker
    pbar: cancelable_progress | None = None


class PyramidController(QObject):
    """Builds pyramids for a viewer's plugin layers in the background and swaps them in."""

    changed = Signal(object)  # the Stack whose build state changed (started/progress/finished)
    swapped = Signal(object)  # the new multiscale layer
    gone = Signal(object, object)  # (Stack, CacheGone): a shown level's cache entry vanished

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = weakref.ref(viewer)
        self.jobs: dict[int, Job] = {}
        self.max_size: int | None = None  # None: the max_size the reader used
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.gone.connect(self._reload)
        sync_viewer(viewer)

    @property
    def viewer(self) -> napari.viewer.Viewer | None:
        return self._viewer()

    @property
    def busy(self) -> bool:
        """True while any build runs."""
        return any(j.state == "building" for j in self.jobs.values())

    def job(self, stack: Stack) -> Job | None:
        return self.jobs.get(id(stack))

    def build(
        self,
        layer: Image,
        rebuild: bool = False,
        max_size: int | None = None,
        force: bool = False,
    ) -> Job | None:
        """Start building the layer's pyramid in a worker thread (no-op if already building).

        ``force`` builds (or reuses a valid cache) even when the layer shows a pyramid already:
        its cache entry vanished."""
        from napari.qt.threading import create_worker

        stack = stack_of(layer)
        if stack is None:
            return None
        current = self.job(stack)
        if current is not None and current.state == "building":
            return current
        shown = pyramid_max_size(stack)
        size = max_size or self.max_size or shown or max_size_setting()
        if not (rebuild or force) and layer.multiscale and size == (shown or size):
            return None  # already showing its pyramid
        from ...pyramid import level_shapes

        if not level_shapes(stack.shape, size):
            remember_max_size(stack, size)
            return None  # small enough: level 0 is the whole story
        job = Job(stack, size, rebuild, total=stack.shape[0], bad_before=len(stack.bad_slices))
        self.jobs[id(stack)] = job
        cache_dir = pyramid_cache_dir(stack)
        record = opened(stack)
        hold = record.notifier.hold() if record is not None else contextlib.nullcontext()

        def progress(done: int, total: int) -> None:  # worker thread: plain attribute writes
            job.done, job.total = done, total

        def run() -> tuple[list[da.Array] | None, BaseException | None]:
            """The worker: never raises, so errors go to a notification, not a traceback."""
            t0 = time.perf_counter()
            try:
                with hold:  # bad slices found now are summed up when the build ends
                    levels = stack.build_pyramid(
                        progress=progress,
                        cancel=job.cancel,
                        max_size=size,
                        rebuild=rebuild,
                        cache_dir=cache_dir,
                    )
                return levels, None
            except Exception as exc:
                return None, exc
            finally:
                job.seconds = time.perf_counter() - t0

        job.pbar = _progress_bar(job, stack.name)
        worker = create_worker(run, _start_thread=False)
        worker.returned.connect(lambda outcome: self._returned(job, *outcome))
        worker.finished.connect(lambda: self._cleanup(job))
        job.worker = worker
        self._timer.start()
        worker.start()
        self.changed.emit(stack)
        return job

    def cancel(self, stack: Stack) -> None:
        """Ask a running build to stop; it leaves no cache behind."""
        job = self.job(stack)
        if job is not None and job.state == "building":
            job.cancel.set()

    # --- main-thread callbacks -----------------------------------------------------------

    def _reload(self, stack: Stack, exc: CacheGone) -> None:
        """A shown level's cache entry vanished (cleaned, or rebuilt by another process): show
        the current entry, else rebuild, and say so."""
        from napari.utils.notifications import show_info

        from ...errors import CTStackError
        from ...pyramid import cached_levels

        viewer, layer = self._layer_of(stack)
        if viewer is None or layer is None:
            return
        current = self.job(stack)
        if current is not None and current.state == "building":
            return  # a build is running: its result replaces the layer anyway
        size = pyramid_max_size(stack) or self.max_size or max_size_setting()
        what = (
            f"{stack.name}: the pyramid cache in use ({exc.entry}) was removed by another process"
        )
        try:
            levels = cached_levels(stack, max_size=size, cache_dir=pyramid_cache_dir(stack))
        except CTStackError:
            levels = None
        if levels is not None and len(levels) > 1:
            new = replace_with_levels(viewer, layer, levels)
            apply_3d_level(new, viewer.dims.ndisplay)
            self.swapped.emit(new)
            show_info(f"{what}; reloaded from {stack.cache_location}")
            return
        show_info(f"{what}; rebuilding it")
        self.build(layer, max_size=size, force=True)

    def _poll(self) -> None:
        for job in self.jobs.values():
            if job.state == "building" and job.pbar is not None:
                job.pbar.n = job.done
                job.pbar.refresh()
                self.changed.emit(job.stack)
        if not self.busy:
            self._timer.stop()

    def _layer_of(self, stack: Stack) -> tuple[napari.viewer.Viewer | None, Image | None]:
        viewer = self.viewer
        if viewer is None:
            return None, None
        for layer in viewer.layers:
            if stack_of(layer) is stack:
                return viewer, layer
        return viewer, None

    def _returned(self, job: Job, levels: list[da.Array] | None, exc: BaseException | None) -> None:
        if exc is not None:
            self._failed(job, exc)
        elif levels is not None:  # run() returns either levels or an exception
            self._finished(job, levels)

    def _finished(self, job: Job, levels: list[da.Array]) -> None:
        from napari.utils.notifications import show_info, show_warning

        from .._layer import META_KEY
        from .._reader import warning_messages

        job.state = "done"
        remember_max_size(job.stack, job.max_size)
        viewer, layer = self._layer_of(job.stack)
        if viewer is not None and layer is not None:  # a layer comes with its viewer
            layer.metadata.get(META_KEY, {})["levels"] = [list(lv.shape) for lv in levels]
            new = replace_with_levels(viewer, layer, levels)
            apply_3d_level(new, viewer.dims.ndisplay)
            self.swapped.emit(new)
        found = len(job.stack.bad_slices) - job.bad_before
        if found > 0:
            show_warning(warning_messages(job.stack)[0] + f" ({found} found while building)")
        show_info(f"{job.stack.name}: pyramid ready in {job.seconds:.1f} s, {len(levels)} levels")

    def _failed(self, job: Job, exc: BaseException) -> None:
        from ...errors import Cancelled

        job.state = "cancelled" if isinstance(exc, Cancelled) else "failed"
        if job.state == "failed":
            job.error = str(exc)
        stack = job.stack
        report_failure(exc, "pyramid build", stack.path, stack.name, "; nothing was cached")

    def _cleanup(self, job: Job) -> None:
        record = opened(job.stack)
        if record is not None:  # what the notifier held is summed up from stack.bad_slices
            record.notifier.collected.clear()
        if job.state == "building":  # finished without returned/errored (should not happen)
            job.state = "failed"
        if job.pbar is not None:
            job.pbar.close()
            job.pbar = None
        self.changed.emit(job.stack)


def _progress_bar(job: Job, name: str) -> cancelable_progress:
    """A napari progress bar whose cancel button sets the job's cancel event."""
    from napari.utils import cancelable_progress

    class _BuildProgress(cancelable_progress):
        def cancel(self) -> None:
            super().cancel()
            job.cancel.set()

    return _BuildProgress(total=job.total, desc=f"{name}: building pyramid")
