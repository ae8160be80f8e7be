"""Soak: 1,000 cycles (quick: 100) of open, build/reuse, read every level, export and close.

The same cycle as ``tests/test_soak.py`` (200 cycles there) on a 64 x 256 x 256 uint16 phantom,
in one process: threads, file descriptors and RSS are sampled every 50 cycles after a warm-up
of 20. Threads and descriptors must end where they were after the warm-up (dask's per-thread
pools counted by number, zarr's on-demand asyncio executor up to its cap, as the test does);
RSS growth after the warm-up is reported against the 20 MB bound of the test.
Run: ``python benchmarks/bench_soak.py [--quick]``; ``run(quick)`` returns a markdown section.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for p in (str(BENCH), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _harness import DATA, fmt_s, md_table  # noqa: E402

SHAPE = (64, 256, 256)
WARM_UP = 20
RSS_BOUND = 20 << 20


def run(quick: bool) -> str:
    from tests.test_soak import cycle, fds, rss, threads

    from ctstack.sample import write_phantom_stack

    cycles = 100 if quick else 1000
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-", dir=DATA) as tmp:
        root = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
        folder = root / "phantom"
        write_phantom_stack(folder, SHAPE, "uint16")
        outs = [root / f"out{k}" for k in range(3)]
        samples: list[list[object]] = []
        start = time.perf_counter()
        for i in range(WARM_UP):
            cycle(folder, outs[i % 3], i)
        gc.collect()
        base_threads, base_fds, base_rss = threads(), fds(), rss()
        t0 = time.perf_counter()
        for i in range(WARM_UP, cycles):
            cycle(folder, outs[i % 3], i)
            if (i + 1) % 50 == 0 or i + 1 == cycles:
                gc.collect()
                samples.append(
                    [
                        i + 1,
                        len(threads()),
                        len(fds()),
                        f"{(rss() - base_rss) / 2**20:+.1f}",
                        fmt_s(time.perf_counter() - t0),
                    ]
                )
        took = time.perf_counter() - start
        gc.collect()
        same_threads, same_fds = threads() == base_threads, fds() == base_fds
        growth = rss() - base_rss
    ok = same_threads and same_fds and growth < RSS_BOUND
    z, y, x = SHAPE
    shown = samples if len(samples) <= 8 else [*samples[:3], ["...", "", "", "", ""], *samples[-3:]]
    return "\n".join(
        [
            f"### Soak: {cycles} cycles of open, build/reuse, read every level, export, close",
            "",
            f"{z} x {y} x {x} uint16 phantom, one process; export: level 1, z 0:32, "
            "tiff / tiff-stack / ome-zarr in turn. Baseline after "
            f"{WARM_UP} warm-up cycles ({len(base_threads)} threads, {len(base_fds)} fds).",
            "",
            md_table(["cycle", "threads", "fds", "RSS vs baseline (MB)", "elapsed"], shown),
            "",
            f"{cycles} cycles in {fmt_s(took)} ({took / cycles * 1e3:.0f} ms per cycle). "
            f"Threads back to baseline: {same_threads}; fds: {same_fds}; RSS growth "
            f"{growth / 2**20:+.1f} MB (bound 20 MB): **{'met' if ok else 'NOT met'}**.",
        ]
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    print(run(ap.parse_args().quick))
