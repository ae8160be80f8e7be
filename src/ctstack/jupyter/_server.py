"""The viewer's request server: one background thread that answers the browser's tile requests.

The kernel's main thread only queues requests (:meth:`TileServer.submit`) and marks cancelled
ones; the server thread reads and sends. Each request gets at most one reply, so the iopub
rate limit cannot be hit: the tiles (one buffer each) or ``{"type": "error"}``. A cancelled
request that was not read yet gets no reply (the browser asked); a request superseded by a
newer one of the same view (of the same display: the ``client`` field) showing another
position gets an empty reply marked ``"dropped": true``, so the browser never waits for it.

The server holds its viewer only weakly; it stops on :meth:`close`, when its viewer goes, or at
interpreter exit, so a closed widget or a restarted kernel leaves no background work.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CTStackError

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], list[bytes | memoryview]]
Handler = Callable[[dict[str, Any]], Reply]
Sender = Callable[[dict[str, Any], list[bytes | memoryview]], None]


@dataclass
class Request:
    """One queued tile request (the browser's message) and what happened to it."""

    content: dict[str, Any]
    id: Any
    view: tuple[Any, Any]  # (the browser display's client id, the view)
    span: range  # level-0 plane indices it shows (for superseding)
    cancelled: bool = False
    dropped: bool = False


@dataclass
class Stats:
    """What the server did: requests received, messages and buffer bytes sent, tiles sent."""

    requests: int = 0
    messages: int = 0
    bytes: int = 0
    tiles: int = 0
    dropped: int = 0
    cancelled: int = 0
    errors: int = 0
    threads: set[int] = field(default_factory=set)  # idents of the threads that read

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "messages": self.messages,
            "bytes": self.bytes,
            "tiles": self.tiles,
            "dropped": self.dropped,
            "cancelled": self.cancelled,
            "errors": self.errors,
        }


def _span(content: dict[str, Any]) -> range:
    try:
        level, plane = int(content.get("level", 0)), int(content.get("plane", 0))
        return range(plane << level, (plane + 1) << level)
    except (TypeError, ValueError, OverflowError):
        return range(0)


class TileServer:
    """Answers requests in a background thread with ``handle``; replies go through ``send``."""

    def __init__(self, handle: Handler, send: Sender, name: str = "ctstack-jupyter") -> None:
        self._handle = handle
        self._send = send
        self._cond = threading.Condition()
        self._queue: deque[Request] = deque()
        self._pending: dict[Any, Request] = {}
        self._stopped = False
        self.stats = Stats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        _LIVE.add(self)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the server thread is running."""
        return self._thread.is_alive()

    def submit(self, content: dict[str, Any]) -> None:
        """Queue a tiles request; older unread requests of the same view at another position
        are marked dropped. Called from the kernel's main thread: never reads."""
        view = (_key(content.get("client")), _key(content.get("view")))  # one display's view
        req = Request(content, content.get("id"), view, _span(content))
        with self._cond:
            if self._stopped:
                return
            self.stats.requests += 1
            for old in self._queue if req.span else ():  # a malformed request drops nothing
                if (
                    old.view == req.view
                    and not (old.cancelled or old.dropped)
                    and not _overlap(old.span, req.span)
                ):
                    old.dropped = True
            self._queue.append(req)
            self._pending[_key(req.id)] = req
            self._cond.notify()

    def cancel(self, ids: Any) -> None:
        """Drop the requests ``ids`` that were not read yet (no reply is sent for them)."""
        if not isinstance(ids, list | tuple):
            return
        with self._cond:
            for i in ids:
                req = self._pending.get(_key(i))
                if req is not None and not req.dropped:
                    req.cancelled = True

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (a read in progress finishes; its reply is not sent)."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()
        _LIVE.discard(self)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _next(self) -> Request | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            req = self._queue.popleft()
            self._pending.pop(_key(req.id), None)
            return req

    def _run(self) -> None:
        while (req := self._next()) is not None:
            if req.cancelled:
                self.stats.cancelled += 1
                continue
            if req.dropped:
                self.stats.dropped += 1
                reply: Reply = (
                    {"type": "tiles", **_echo(req.content), "tiles": [], "dropped": True},
                    [],
                )
            else:
                self.stats.threads.add(threading.get_ident())
                reply = self._answer(req)
            with self._cond:
                if self._stopped:
                    return
            if not self._deliver(reply):
                self.close()
                return

    def _answer(self, req: Request) -> Reply:
        try:
            return self._handle(req.content)
        except CTStackError as exc:
            message = str(exc)
        except Exception as exc:  # a failed read must still answer, and never kill the thread
            log.exception("ctstack viewer: request %r failed", req.id)
            message = f"{type(exc).__name__}: {exc}"
        self.stats.errors += 1
        return ({"type": "error", "id": req.id, "message": message}, [])

    def _deliver(self, reply: Reply) -> bool:
        content, buffers = reply
        try:
            self._send(content, buffers)
        except Exception:  # the viewer or its comm is gone: stop serving
            log.debug("ctstack viewer: reply not sent", exc_info=True)
            return False
        self.stats.messages += 1
        self.stats.bytes += sum(memoryview(b).nbytes for b in buffers)
        self.stats.tiles += len(content.get("tiles") or ()) if content.get("type") == "tiles" else 0
        return True


def _key(value: Any) -> Any:
    """A hashable key for a request id (the browser sends ints; be safe with anything)."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _overlap(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


def _echo(content: dict[str, Any]) -> dict[str, Any]:
    """The fields of a request a reply repeats."""
    keys = ("id", "view", "level", "plane", "generation")
    return {k: content.get(k) for k in keys}


_LIVE: weakref.WeakSet[TileServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Kernel shutdown: stop every server that is still running."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close(timeout=0.5)


def weak_sender(owner: Any, method: str) -> Sender:
    """``getattr(owner, method)`` called through a weak reference: the server does not keep
    its viewer alive; once the viewer is gone, sending raises and the server stops."""
    ref = weakref.ref(owner)

    def send(content: dict[str, Any], buffers: list[bytes | memoryview]) -> None:
        target = ref()
        if target is None:
            raise ReferenceError("the viewer is gone")
        getattr(target, method)(content, buffers)

    return send


def weak_handler(owner: Any, method: str) -> Handler:
    """Like :func:`weak_sender`, for the request handler."""
    ref = weakref.ref(owner)

    def handle(content: dict[str, Any]) -> Reply:
        target = ref()
        if target is None:
            raise ReferenceError("the viewer is gone")
        result: Reply = getattr(target, method)(content)
        return result

    return handle
