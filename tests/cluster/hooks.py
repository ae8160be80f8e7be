"""Hooks installed on the workers (``client.run``) to stop a task mid-build deterministically.

A hook blocks the first task that reaches slab ``slab`` on the ``distributed.Event`` named
``gate``, after writing its worker's PID to ``pid_file`` (made with O_EXCL, so a rerun of the
same slab on another worker does not block again). Shipped to the workers by value.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def blocking_hook(slab: int, gate: str, pid_file: str) -> Callable[[int, int], None]:
    def hook(index: int, z: int) -> None:
        if index != slab:
            return
        try:
            fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        from distributed import Event

        Event(gate).wait()

    return hook


def install(hook: Callable[[int, int], None] | None) -> None:
    """Run on every worker: set (or clear, with None) the slab tasks' slice hook."""
    from ctstack._cluster import tasks

    tasks.SLICE_HOOK = hook


def executing(dask_worker) -> int:  # client.run passes the worker
    """Run on every worker: how many tasks it is running now."""
    return len(dask_worker.state.executing)


def wait_for(predicate: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)
