"""``ctstack pyramid PATH``: build (or reuse) the level-of-detail pyramid cache of a stack.

``--scheduler ADDRESS`` or ``--workers N`` build it as slab tasks on a dask.distributed
cluster (``ctstack._cluster``); the progress bar counts the slices of finished slabs, and
Ctrl-C stops every task before the build's temporary folder is removed.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import TYPE_CHECKING, Any

from .._cluster.connect import cluster_arguments, cluster_client
from .._cluster.plan import DEFAULT_SLAB_SLICES
from ..pyramid import DEFAULT_MAX_SIZE
from .progress import ProgressBar

if TYPE_CHECKING:
    from ..stack import Stack


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pyramid",
        help="build or reuse the pyramid cache of a stack",
        description="Build the level-of-detail pyramid of a CT stack in one pass over its "
        "slices, or reuse a valid cache. Ctrl-C cancels and leaves no partial cache.",
    )
    p.add_argument("path", help="slice folder, one slice, multi-page TIFF or DICOM folder")
    p.add_argument("--pattern", help="glob picking one series in a folder with several")
    p.add_argument(
        "--max-size", type=int, default=DEFAULT_MAX_SIZE, help="largest axis of the last level"
    )
    p.add_argument("--rebuild", action="store_true", help="ignore a valid cache and rebuild")
    p.add_argument("--cache-dir", help="keep the cache here instead of beside the stack")
    cluster_arguments(p)
    p.add_argument(
        "--slab-slices",
        type=int,
        default=DEFAULT_SLAB_SLICES,
        metavar="N",
        help="cluster builds: slices per slab task aimed at (more tasks: smaller N)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..stack import open_stack

    stack = open_stack(args.path, pattern=args.pattern, report=args.report)
    nz, ny, nx = stack.shape
    print(f"{stack.name}: {nz} x {ny} x {nx} {stack.dtype} from {stack.root}")
    cancel = threading.Event()
    with cluster_client(args.scheduler, args.workers) as client:
        if client is not None:
            n = len(client.scheduler_info().get("workers", {}))
            print(f"cluster: {client.scheduler.address}, {n} worker(s)")
        bar = ProgressBar("pyramid")
        start = time.perf_counter()
        levels = _build(stack, args, bar, cancel, client)
    return _summary(stack, args, levels, time.perf_counter() - start)


def _build(
    stack: Stack, args: argparse.Namespace, bar: ProgressBar, cancel: threading.Event, client: Any
) -> list[Any]:
    from ..errors import Cancelled

    try:
        if client is None:
            levels = stack.build_pyramid(
                progress=bar,
                cancel=cancel,
                max_size=args.max_size,
                rebuild=args.rebuild,
                cache_dir=args.cache_dir,
            )
        else:
            from .._cluster.build import build_on_cluster

            done = build_on_cluster(
                stack,
                client,
                progress=bar,
                cancel=cancel,
                max_size=args.max_size,
                rebuild=args.rebuild,
                cache_dir=args.cache_dir,
                slab_slices=args.slab_slices,
            )
            levels = stack._adopt(done.pyramid)
            if done.plan is not None:
                bar.close()
                top = " + 1 top task" if done.top else ""
                print(
                    f"cluster: {len(done.plan.slabs)} slab task(s) of {done.plan.slab_size} "
                    f"slices{top}; {done.reused} slab(s) reused from an interrupted run"
                )
    except KeyboardInterrupt:
        cancel.set()
        bar.close()
        raise
    except Cancelled:
        bar.close()
        raise
    bar.close()
    return levels


def _summary(stack: Stack, args: argparse.Namespace, levels: list[Any], seconds: float) -> int:
    nz = stack.shape[0]
    if len(levels) == 1:
        print(f"no pyramid needed: no axis is longer than --max-size {args.max_size}")
        return 0
    pyramid = stack.pyramid
    reused = pyramid is None or not pyramid.built
    where = stack.cache_location
    verb = "reused" if reused else "built"
    place = f" at {where}" if where else ""
    print(f"{verb} {len(levels) - 1} level(s) in {seconds:.2f} s{place}")
    for k, level in enumerate(levels):
        print(f"  level {k}: {' x '.join(str(n) for n in level.shape)}")
    if not reused and seconds > 0:
        print(f"  {nz / seconds:.1f} slices/s, {stack.data.nbytes / seconds / 1e6:.1f} MB/s read")
    return 0
