"""Background pyramid builds for the Jupyter viewer: ``stack.build_pyramid`` in a thread.

One build per Stack, shared by every viewer of it (:func:`build_for`); viewers serve level 0
meanwhile. Progress reaches each viewer at most every ``PROGRESS_SECONDS`` (each update is one
message to the browser) and the result or the error once at the end, on the build thread.
When the last viewer leaves (:meth:`PyramidBuild.leave`), the build is cancelled within a slice
or two and leaves no cache entry behind (the engine's writer removes its temp folder; one left
by a killed kernel is swept by the next build in that location).
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import Cancelled
from ..pyramid import DEFAULT_MAX_SIZE

if TYPE_CHECKING:
    from .._types import StrPath
    from ..stack import Stack

PROGRESS_SECONDS = 0.25
OnProgress = Callable[[int, int], None]
OnDone = Callable[[str | None], None]  # None on success, else why it failed


class PyramidBuild:
    """One running build and the viewers that wait for it."""

    def __init__(
        self, stack: Stack, cache_dir: StrPath | None = None, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        self.stack = stack
        self.cancel_event = threading.Event()
        self._cache_dir = cache_dir
        self._max_size = max_size
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._waiting: dict[int, tuple[OnProgress, OnDone]] = {}
        self._last = 0.0
        self.finished = False  # the viewers waiting were told (or it was cancelled)
        self._thread = threading.Thread(target=self._run, name="ctstack-jupyter-build", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def join_in(self, on_progress: OnProgress, on_done: OnDone) -> int:
        """Wait for this build: ``on_progress(done, total)`` throttled, then ``on_done`` once
        (not called when the build is cancelled). Returns the key to :meth:`leave` with."""
        key = next(self._ids)
        with self._lock:
            self._waiting[key] = (on_progress, on_done)
        return key

    def leave(self, key: int, timeout: float = 2.0) -> None:
        """Stop waiting; the last viewer to leave cancels the build (and waits for it briefly)."""
        with self._lock:
            self._waiting.pop(key, None)
            last = not self._waiting
        if last and self.running:
            self.cancel_event.set()
            if self._thread is not threading.current_thread():
                self._thread.join(timeout)

    def _listeners(self) -> list[tuple[OnProgress, OnDone]]:
        with self._lock:
            return list(self._waiting.values())

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_SECONDS:
            self._last = now
            for on_progress, _ in self._listeners():
                on_progress(done, total)

    def _run(self) -> None:
        try:
            self.stack.build_pyramid(
                progress=self._progress,
                cancel=self.cancel_event,
                max_size=self._max_size,
                cache_dir=self._cache_dir,
            )
        except Cancelled:
            error: str | None = "cancelled"
        except Exception as exc:  # reported in the viewers; level 0 stays on screen
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = None
        with self._lock:
            self.finished = True
            waiting = list(self._waiting.values())
        if not self.cancel_event.is_set():
            for _, on_done in waiting:
                on_done(error)


_BUILDS: weakref.WeakKeyDictionary[Stack, PyramidBuild] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def build_for(
    stack: Stack, on_progress: OnProgress, on_done: OnDone, cache_dir: StrPath | None = None
) -> tuple[PyramidBuild, int]:
    """Join the running build of ``stack`` or start one; returns it and the key to leave with."""
    with _LOCK:
        build = _BUILDS.get(stack)
        if build is None or build.finished or build.cancel_event.is_set():
            build = _BUILDS[stack] = PyramidBuild(stack, cache_dir)
            key = build.join_in(on_progress, on_done)
            build._thread.start()
        else:
            key = build.join_in(on_progress, on_done)
        return build, key
