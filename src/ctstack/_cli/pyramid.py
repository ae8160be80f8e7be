"""``ctstack pyramid PATH``: build (or reuse) the level-of-detail pyramid cache of a stack."""

from __future__ import annotations

import argparse
import threading
import time

from ..pyramid import DEFAULT_MAX_SIZE
from .progress import ProgressBar


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import Cancelled
    from ..stack import open_stack

    stack = open_stack(args.path, pattern=args.pattern, report=args.report)
    nz, ny, nx = stack.shape
    print(f"{stack.name}: {nz} x {ny} x {nx} {stack.dtype} from {stack.root}")
    bar = ProgressBar("pyramid")
    cancel = threading.Event()
    start = time.perf_counter()
    try:
        levels = stack.build_pyramid(
            progress=bar,
            cancel=cancel,
            max_size=args.max_size,
            rebuild=args.rebuild,
            cache_dir=args.cache_dir,
        )
    except KeyboardInterrupt:
        cancel.set()
        bar.close()
        raise
    except Cancelled:
        bar.close()
        raise
    bar.close()
    seconds = time.perf_counter() - start
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
