"""Submitting block tasks and collecting them, with one cancel ``distributed.Event`` per run.

``TaskRunner`` submits tasks with ``client.submit`` (each gets the event's name), collects
them as they finish while polling the caller's ``threading.Event`` and Ctrl-C, and on any
failure or cancel *stops* the run: it sets the distributed event (tasks that have not started
return at once, running ones stop within a slice) and waits until every submitted task has
ended, so the caller may remove the temporary folder knowing no late write can recreate it.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled

if TYPE_CHECKING:
    from distributed import Client, Future

POLL_SECONDS = 0.2  # how often the client looks at the caller's cancel event while waiting
STOP_SECONDS = 600.0  # how long a stop waits for running tasks to end (each polls per slice)


class TaskRunner:
    """Submit and collect the tasks of one run; a context manager that stops them on error."""

    def __init__(self, client: Client, cancel: threading.Event | None = None) -> None:
        from distributed import Event

        self.client = client
        self.cancel = cancel
        self.token = secrets.token_hex(6)
        self.name = f"ctstack-cancel-{self.token}"
        self.event = Event(self.name, client=client)
        self.futures: list[Future[Any]] = []
        self.all_stopped = True  # False after a stop() that could not confirm every task ended

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Future[Any]:
        """Submit ``fn(*args, cancel_name)`` under a readable, unique task key."""
        future = self.client.submit(fn, *args, self.name, key=f"{key}-{self.token}", pure=False)
        self.futures.append(future)
        return future

    def collect(self, futures: Iterable[Future[Any]], on_result: Callable[[Any], None]) -> None:
        """Wait for ``futures``, calling ``on_result`` with each result as it arrives.

        Raises ``Cancelled`` when the caller's event is set or a task reports that it stopped,
        and a task's own exception when it failed (after ``on_result`` for the ones before).
        """
        from distributed import wait

        pending = set(futures)
        while pending:
            self._check()
            try:
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                if self.client.status in ("closing", "closed", "failed"):
                    from .checks import ClusterError

                    raise ClusterError(
                        "lost the connection to the dask scheduler; finished slabs are kept: "
                        "run the same build again to resume"
                    ) from None
                continue
            for future in done:
                result = future.result()
                if getattr(result, "stopped", False):
                    raise Cancelled("cluster build cancelled")
                on_result(result)
                future.release()
        self._check()

    def _check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cluster build cancelled")

    def stop(self) -> None:
        """Tell every task to stop and wait until all have ended (their errors are ignored).

        Sets ``all_stopped`` only when that is confirmed: with the scheduler gone, or a task
        that does not end within ``STOP_SECONDS``, the caller must leave its folder alone.
        """
        from distributed import wait

        self.all_stopped = False
        try:
            self.event.set()
            live = [f for f in self.futures if f.status not in ("finished", "error", "cancelled")]
            if live:
                wait(live, timeout=STOP_SECONDS)
        except Exception:  # the scheduler is gone, or a task is stuck: nothing is confirmed
            return
        self.all_stopped = True

    def close(self) -> None:
        """Forget the cancel event on the scheduler."""
        with contextlib.suppress(Exception):  # the scheduler may be gone: nothing to forget
            self.event.clear()

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.stop()
        self.close()
