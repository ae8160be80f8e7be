"""An ordered map over a few threads with a bounded number of items in flight.

What the pyramid builder, the export readers and writers and the phantom writer share: decode
(or write) a few items ahead on worker threads while the caller handles them one at a time, in
order, so memory stays bounded by ``ahead`` items whatever their number::

    with ReadAhead(read, threads=2, ahead=4, name="ctstack-read") as pool:
        for plane in pool.map(range(n)):      # pull: items are taken lazily
            ...
    with ReadAhead(write, threads=2, ahead=4, name="ctstack-write") as pool:
        for item in items:
            pool.put(item)                    # push: waits while `ahead` are in flight

Leaving the block normally waits for what is still in flight and raises the first error;
leaving it with an exception (a cancel, a failed item, a closed generator) cancels what has
not started and joins the threads, so nothing keeps running behind the caller's back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ahead_within(ahead: int, item_bytes: int, budget: int | None = None) -> int:
    """How many items of ``item_bytes`` may be in flight: at most ``ahead``, at most
    ``budget`` bytes together (default: one plane's bound, ``ctstack.io.max_slice_bytes()``,
    min(4 GiB, RAM/8)), and always at least one."""
    if item_bytes <= 0:
        return max(1, ahead)
    if budget is None:
        from .io.raster import max_slice_bytes

        budget = max_slice_bytes()
    return max(1, min(ahead, budget // item_bytes))


class ReadAhead(Generic[T, R]):
    """``fn(item)`` on ``threads`` threads, results in submission order, ``ahead`` in flight.

    With ``item_bytes`` (what one item holds in memory, e.g. one decoded plane) the number in
    flight is also bounded in bytes (``ahead_within``); read ``pool.ahead`` for the bound used
    (a caller that owns one buffer per item in flight makes that many).
    """

    def __init__(
        self,
        fn: Callable[[T], R],
        *,
        threads: int,
        ahead: int,
        name: str,
        item_bytes: int = 0,
        max_bytes: int | None = None,
    ) -> None:
        if threads < 1 or ahead < 1:
            raise ValueError("a read-ahead needs at least one thread and one item in flight")
        self.fn = fn
        self.ahead = ahead_within(ahead, item_bytes, max_bytes)
        self.threads = min(threads, self.ahead)
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[R]] = deque()

    def __enter__(self) -> ReadAhead[T, R]:
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool, self._pool = self._pool, None
        try:
            if exc is None:
                while self._pending:  # what is still in flight: its errors surface here
                    self._pending.popleft().result()
        finally:
            for future in self._pending:
                future.cancel()
            self._pending.clear()
            if pool is not None:
                pool.shutdown(wait=True)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, item: T) -> None:
        """Start ``fn(item)`` on a worker thread (the caller keeps the bound: see ``put``)."""
        if self._pool is None:
            raise RuntimeError("use ReadAhead as a context manager")
        self._pending.append(self._pool.submit(self.fn, item))

    def next_result(self) -> R:
        """The result of the oldest item in flight (waits for it; raises its error)."""
        return self._pending.popleft().result()

    def fill(self, items: Iterator[T]) -> None:
        """Take items from ``items`` until ``ahead`` are in flight or it is exhausted."""
        while len(self._pending) < self.ahead:
            try:
                item = next(items)
            except StopIteration:
                return
            self.submit(item)

    def map(
        self, items: Iterable[T], before_wait: Callable[[int], object] | None = None
    ) -> Iterator[R]:
        """Yield ``fn(item)`` for every item in order; items are taken only as slots free up.

        ``before_wait(i)`` runs before waiting for result ``i`` (a cancel check raises there).
        """
        it = iter(items)
        i = 0
        while True:
            self.fill(it)
            if not self._pending:
                return
            if before_wait is not None:
                before_wait(i)
            yield self.next_result()
            i += 1

    def put(self, item: T) -> list[R]:
        """Submit ``item`` once fewer than ``ahead`` are in flight; returns the results of the
        items it waited for (oldest first), raising the first error among them."""
        done = []
        while len(self._pending) >= self.ahead:
            done.append(self.next_result())
        self.submit(item)
        return done
