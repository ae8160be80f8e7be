"""The command line's way onto a cluster: ``--scheduler ADDRESS`` or ``--workers N``.

``cluster_arguments`` adds the two options to a sub-command's parser; ``cluster_client``
opens a ``distributed.Client`` for them (connecting to a running scheduler, or starting a
LocalCluster of N worker processes with one thread each on this machine) and closes it, and
the cluster it started, on the way out. Without either option it yields None: the local path.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidArgument


def cluster_arguments(p: argparse.ArgumentParser, shared: str = "--cache-dir") -> None:
    """Add ``--scheduler`` and ``--workers`` (mutually exclusive) to a sub-command; ``shared``
    names what, besides the stack, the workers must see."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run as block tasks on the dask.distributed scheduler at ADDRESS "
        f"(e.g. tcp://host:8786); the stack and {shared} must be on a shared filesystem",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run as block tasks on a local cluster of N worker processes",
    )


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (inherited across exec): Ctrl-C in a terminal
    reaches the whole process group, and the client, not the workers, must handle it (stop
    the tasks, remove the temporary folder, then shut the cluster down)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def cluster_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A ``distributed.Client`` for the options, or None when neither is given."""
    if scheduler is None and workers is None:
        yield None
        return
    if workers is not None and workers < 1:
        raise InvalidArgument(f"--workers must be at least 1, got {workers}")
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InvalidArgument(
            "--scheduler and --workers need dask.distributed: "
            "pip install 'napari-ctstack[distributed]'"
        ) from exc
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            client = stack.enter_context(Client(scheduler))
        else:
            with _workers_ignore_ctrl_c():
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                )
            client = stack.enter_context(Client(cluster))
        yield client
