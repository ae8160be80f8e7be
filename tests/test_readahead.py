"""The one ordered read-ahead helper: order, the bound in flight, errors, cancel and join."""

from __future__ import annotations

import threading
import time

import pytest

from ctstack._readahead import ReadAhead


class Tracker:
    """``fn`` for the pool: records how many calls run or wait at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: list[int] = []

    def __call__(self, i: int) -> int:
        with self.lock:
            self.started.append(i)
        time.sleep(self.delay * ((i * 7) % 3))  # out-of-order completion
        with self.lock:
            self.finished.append(i)
        return i * i


def test_map_keeps_order_and_takes_items_lazily():
    fn = Tracker(delay=0.002)
    taken: list[int] = []

    def items():
        for i in range(30):
            taken.append(i)
            yield i

    with ReadAhead(fn, threads=3, ahead=4, name="t") as pool:
        for k, result in enumerate(pool.map(items())):
            assert result == k * k
            assert len(taken) <= k + 4  # never more than `ahead` beyond what was handled
    assert sorted(fn.finished) == list(range(30))


def test_put_bounds_what_is_in_flight_and_exit_waits_for_it():
    fn = Tracker(delay=0.002)
    with ReadAhead(fn, threads=2, ahead=3, name="t") as pool:
        for i in range(12):
            pool.put(i)
            assert pool.in_flight <= 3
    assert sorted(fn.finished) == list(range(12))  # normal exit: everything was done


def test_an_error_surfaces_in_order_and_nothing_runs_after_the_block():
    def fn(i: int) -> int:
        if i == 5:
            raise OSError("disk full")
        time.sleep(0.001)
        return i

    seen = []
    with (
        pytest.raises(OSError, match="disk full"),
        ReadAhead(fn, threads=2, ahead=4, name="t") as p,
    ):
        for r in p.map(range(100)):
            seen.append(r)
    assert seen == [0, 1, 2, 3, 4]
    assert not [t for t in threading.enumerate() if t.name.startswith("t_")]


def test_put_raises_a_failed_write_and_exit_raises_one_still_in_flight():
    def fn(i: int) -> int:
        if i == 1:
            raise ValueError("bad plane")
        return i

    with (
        pytest.raises(ValueError, match="bad plane"),
        ReadAhead(fn, threads=1, ahead=1, name="t") as p,
    ):
        for i in range(3):
            p.put(i)
    with (
        pytest.raises(ValueError, match="bad plane"),
        ReadAhead(fn, threads=1, ahead=8, name="t") as p,
    ):
        p.put(0)
        p.put(1)


def test_leaving_early_cancels_what_has_not_started_and_joins():
    gate = threading.Event()
    fn = Tracker()

    def slow(i: int) -> int:
        gate.wait(5)
        return fn(i)

    threading.Timer(0.2, gate.set).start()  # lets the running item end while exit joins it
    with pytest.raises(KeyboardInterrupt), ReadAhead(slow, threads=1, ahead=6, name="t") as pool:
        pool.fill(iter(range(6)))
        assert pool.in_flight == 6
        raise KeyboardInterrupt
    assert len(fn.finished) <= 1  # the queued items were cancelled, at most one ran
    assert gate.is_set()  # exit waited for the running one
    assert not [t for t in threading.enumerate() if t.name.startswith("t_")]


def test_bad_arguments_and_use_outside_a_block():
    with pytest.raises(ValueError):
        ReadAhead(abs, threads=0, ahead=1, name="t")
    with pytest.raises(RuntimeError, match="context manager"):
        ReadAhead(abs, threads=1, ahead=1, name="t").submit(1)
