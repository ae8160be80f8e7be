"""Soak: 200 cycles of open, build/reuse, read every level, export and close in one process.

Threads and file descriptors must come back exactly to their baseline, taken after 20 warm-up
cycles (they start the pools that live for the process: dask's, zarr's event loop and its
executor, which grows on demand up to its cap and is checked against it). RSS is only a leak
bound: less than 20 MB of growth after cycle 20. The 1,000-cycle version is
benchmarks/bench_soak.py.

Known and bounded, not counted as a leak here (``test_level_export_leaves_no_thread_behind``
pins it): exporting level k > 0 computes dask slices on the read-ahead threads, and dask gives
every such thread its own pool, shut down only at a later compute. Those pools' threads are
compared by number, not by identity.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ctstack
from ctstack.sample import write_phantom_stack

SHAPE = (64, 256, 256)
WARM_UP = 20
CYCLES = 200
BUDGET_S = 60.0
RSS_GROWTH = 20 << 20


DASK_THREAD_POOL = re.compile(r"ThreadPoolExecutor-(\d+)_(\d+)$")
ASYNCIO_EXECUTOR = re.compile(r"asyncio_\d+$")  # zarr's event loop's default executor
ASYNCIO_MAX = min(32, (os.cpu_count() or 1) + 4)  # that executor's cap (ThreadPoolExecutor)


def threads(exact: bool = False) -> list[str]:
    """The live threads by name and id. Unless ``exact``: dask's per-thread pools (any but the
    first pool, the main thread's) by count only, and zarr's asyncio executor, which grows on
    demand up to its cap, as one entry (checked against the cap)."""
    out = []
    asyncio_threads = 0
    for t in threading.enumerate():
        m = DASK_THREAD_POOL.match(t.name)
        if m and m.group(1) != "0" and not exact:
            out.append(f"dask-thread-pool-worker-{m.group(2)}")
        elif ASYNCIO_EXECUTOR.match(t.name) and not exact:
            asyncio_threads += 1
        else:
            out.append(f"{t.name}:{t.ident}")
    assert asyncio_threads <= ASYNCIO_MAX, f"{asyncio_threads} asyncio executor threads"
    return sorted(out)


def fds() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            out.append(f"{name}->{os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:
            continue  # the listing's own descriptor, closed already
    return sorted(out)


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cycle(folder: Path, out: Path, i: int) -> None:
    """One cycle: open, build or reuse the pyramid, read every level, export, close."""
    stack = ctstack.open_stack(folder, report=lambda message: None)
    levels = stack.build_pyramid(max_size=64)
    assert len(levels) == 3
    total = 0
    for level in levels:
        total += int(np.asarray(level.compute()).sum(dtype=np.uint64))
    assert total > 0
    fmt = ("tiff", "tiff-stack", "ome-zarr")[i % 3]
    ctstack.export(stack, out, z=(0, 32), level=1, format=fmt, overwrite=True, max_size=64)
    del stack, levels  # closing: nothing else holds the stack, its files or its pyramid


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_soak_200_cycles_return_to_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "phantom"
    write_phantom_stack(folder, SHAPE, "uint16")
    outs = [tmp_path / f"out{k}" for k in range(3)]
    start = time.perf_counter()
    for i in range(WARM_UP):  # the first builds the pyramid, the others reuse it
        cycle(folder, outs[i % 3], i)
    gc.collect()
    base_threads, base_fds, base_rss = threads(), fds(), rss()
    for i in range(WARM_UP, CYCLES):
        cycle(folder, outs[i % 3], i)
        if i % 50 == 0:
            gc.collect()
            assert threads() == base_threads, f"cycle {i}"
            assert fds() == base_fds, f"cycle {i}"
    took = time.perf_counter() - start
    gc.collect()
    assert threads() == base_threads
    assert fds() == base_fds
    growth = rss() - base_rss
    assert growth < RSS_GROWTH, f"RSS grew {growth / 2**20:.1f} MB after cycle {WARM_UP}"
    assert took < BUDGET_S, f"{CYCLES} cycles took {took:.1f} s"


def test_level_export_leaves_no_thread_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "phantom"
    write_phantom_stack(folder, (16, 128, 128), "uint16")
    stack = ctstack.open_stack(folder, report=lambda message: None)
    stack.build_pyramid(max_size=32)
    ctstack.export(stack, tmp_path / "warm", level=1, format="tiff-stack")
    before = threads(exact=True)
    ctstack.export(stack, tmp_path / "out", level=1, format="tiff-stack")
    assert threads(exact=True) == before
