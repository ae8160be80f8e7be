"""Cluster pyramid builds: the overhead of slab tasks on a LocalCluster, and a planned 10k stack.

1. The Large benchmark stack (500 x 2048 x 2048 uint16; quick: 64 x 512 x 512) built locally
   (``stack.build_pyramid``) and on a ``LocalCluster(processes=True, n_workers=2,
   threads_per_worker=1)`` (``build_on_cluster``), warm, interleaved, each into a fresh cache
   folder. The ratio cluster / local is the overhead of the block-task design (2 cores give
   no speed-up); the cluster's start-up is timed apart. Goal: <= 1.3x.
2. A planned 10,000 x 8192 x 8192 uint16 stack: its slab plan submitted as no-op tasks to the
   same cluster. Reported: the task count, the scheduler's RSS growth while they are held, the
   number of files the build would write, and the time to reopen the entry, estimated as one
   ``stat`` per file at the cost measured on this machine plus the manifest read.

Run: ``python benchmarks/run.py cluster`` (``--quick`` for the small stack).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import _harness

GOAL = 1.3
BIG = (10_000, 8192, 8192)


def _scheduler_rss(dask_scheduler=None) -> int:  # run_on_scheduler passes the scheduler
    import psutil

    return int(psutil.Process().memory_info().rss)


def _stat_cost(folder: Path, rounds: int = 3) -> float:
    """Seconds per ``os.stat`` of the files below ``folder`` (warm metadata)."""
    files = [Path(r) / n for r, _d, fs in os.walk(folder) for n in fs]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for f in files:
            os.stat(f)
        best = min(best, (time.perf_counter() - t0) / max(len(files), 1))
    return best


def _planned(client, stat_s: float) -> tuple[list[list[object]], dict[str, float]]:
    """Submit the 10k stack's plan as no-op tasks; task count, scheduler RSS, files, reopen."""
    from ctstack._cluster.build import pyramid_plan
    from ctstack._cluster.tasks import noop
    from ctstack.cache.layout import level_layout
    from ctstack.pyramid import level_shapes

    plan = pyramid_plan(BIG, "uint16", 512, 128)
    shapes = level_shapes(BIG)
    files = sum(level_layout(s, 2).files() for s in shapes)
    before = client.run_on_scheduler(_scheduler_rss)
    t0 = time.perf_counter()
    lite = dataclasses.replace(plan, slabs=())  # what each real slab task is given
    slabs = [*plan.slabs, None][: plan.tasks]
    futures = [
        client.submit(noop, i, lite, s, "/shared/cache/.partial-key", key=f"noop-{i}", pure=False)
        for i, s in enumerate(slabs)
    ]
    held = client.run_on_scheduler(_scheduler_rss)
    client.gather(futures)
    seconds = time.perf_counter() - t0
    del futures
    manifest_bytes = 64 * files + 4096  # the manifest lists every file's size
    reopen = files * stat_s + manifest_bytes / 200e6
    rows = [
        ["stack", " x ".join(map(str, BIG)) + " uint16"],
        ["levels", len(shapes)],
        ["slab size (slices) / slab levels", f"{plan.slab_size} / {plan.slab_levels}"],
        ["tasks (slabs + top)", plan.tasks],
        ["files written (all levels)", files],
        ["scheduler RSS growth with the tasks held", f"{(held - before) / 2**10:.0f} KiB"],
        ["submit + run the no-op plan", f"{seconds:.2f} s"],
        ["reopen, estimated (1 stat per file + manifest)", f"{reopen * 1e3:.1f} ms"],
    ]
    return rows, {"tasks": plan.tasks, "files": files, "reopen_ms": reopen * 1e3}


def run(quick: bool) -> str:
    import distributed

    import ctstack
    from ctstack._cluster.build import build_on_cluster, pyramid_plan

    rounds = int(os.environ.get("CTSTACK_BENCH_ROUNDS", 2 if quick else 3))
    folder = _harness.benchmark_stack(quick)
    stack = ctstack.open_stack(folder)
    size = 128 if quick else 512  # the quick stack needs no pyramid at the default
    plan = pyramid_plan(stack.shape, stack.dtype, size, 128)
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster)
    startup = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory(prefix="ctstack-bench-cluster-") as tmp:
            counter = iter(range(10**6))

            def local() -> None:
                ctstack.open_stack(folder).build_pyramid(
                    max_size=size, cache_dir=Path(tmp) / f"{next(counter)}"
                )

            def on_cluster() -> None:
                build_on_cluster(
                    ctstack.open_stack(folder),
                    client,
                    max_size=size,
                    cache_dir=Path(tmp) / f"{next(counter)}",
                )

            timings = _harness.time_interleaved(
                {"local": local, "cluster": on_cluster},
                repeats=rounds,
                warmup=1,
                before=lambda _name: _harness.warm(stack.files),
            )
            entry = next(Path(tmp).rglob("*.pyramid"))
            stat_s = _stat_cost(entry)
        planned_rows, planned = _planned(client, stat_s)
    finally:
        client.close()
        cluster.close()
    loc, clu = timings["local"].median, timings["cluster"].median
    ratio = clu / loc
    best = timings["cluster"].min / timings["local"].min  # the least disturbed runs
    mb = stack.data.nbytes / 1e6
    per_worker = mb / clu / 2
    shape = " x ".join(map(str, stack.shape))
    table = _harness.md_table(
        ["build", "median", "runs", "MB/s read", "ratio to local"],
        [
            ["local (`stack.build_pyramid`)", f"{loc:.2f} s", _runs(timings["local"].times),
             f"{mb / loc:.0f}", "1.00x"],
            [f"LocalCluster, 2 workers, {plan.tasks} tasks", f"{clu:.2f} s",
             _runs(timings["cluster"].times), f"{mb / clu:.0f}", f"{ratio:.2f}x"],
        ],
    )  # fmt: skip
    figures = {
        "ratio": round(ratio, 3),
        "ratio_best": round(best, 3),
        "local_s": round(loc, 3),
        "cluster_s": round(clu, 3),
        "startup_s": round(startup, 2),
        "per_worker_MBps": round(per_worker, 1),
        **planned,
    }
    verdict = "met" if ratio <= GOAL else "NOT met"
    return (
        f"### cluster\n\n{shape} {stack.dtype} benchmark stack, warm (slices read once before "
        f"each run), max_size {size}; medians of {rounds} runs after one warm-up, interleaved; "
        f"a fresh cache folder per run.\n\n{table}\n\n"
        f"Overhead goal <= {GOAL}x: **{verdict}** ({ratio:.2f}x of the medians; "
        f"{best:.2f}x of the fastest runs, the least disturbed on a shared machine; load "
        f"average {os.getloadavg()[0]:.1f} at the end). Cluster start-up (not in the "
        f"build times): {startup:.2f} s. Per-worker throughput on the cluster: "
        f"{per_worker:.0f} MB/s of source read (2 workers sharing 2 cores).\n\n"
        f"Planned stack, its plan submitted as no-op tasks to the same LocalCluster:\n\n"
        f"{_harness.md_table(['measure', 'value'], planned_rows)}\n\n"
        f"Reopen estimate: {stat_s * 1e6:.2f} µs per stat, measured on the files of the entry "
        f"built above.\n\n`{json.dumps(figures)}`"
    )


def _runs(times: tuple[float, ...]) -> str:
    return " / ".join(f"{t:.2f}" for t in times) + f" (sd {statistics.pstdev(times):.2f})"
