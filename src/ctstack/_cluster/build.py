"""A pyramid build on a dask.distributed cluster: plan, check, submit, collect, commit.

The client plans the slabs (``plan.plan_slabs``, proven to give every file one writer), makes
the resumable folder ``.partial-<key>`` in the cache location with the level metadata, takes
the builder lock, checks every worker (``checks.check_workers``), then submits one task per
slab not already done according to the ledger (``ledger.Ledger``), and the top task once the
slabs are in. Each finished slab goes to the ledger at once. Finally the client commits the
folder exactly as a local build does (``cache.layout.commit_entry``: sizes checked, manifest
last, atomic rename, first commit wins).

A failure keeps the folder and its ledger: a rerun reuses the slabs already done. A cancel
(the caller's event, Ctrl-C) stops every task and only then removes the folder.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._types import Progress, StrPath
from ..errors import Cancelled
from ..pyramid import DEFAULT_MAX_SIZE, Pyramid, PyramidSettings, level_shapes, load_pyramid
from .ledger import LEDGER_FILE, LOCK_FILE, BuilderLock, Finished, Ledger, intact
from .plan import DEFAULT_SLAB_SLICES, LevelSpec, SlabPlan, plan_slabs
from .runner import TaskRunner

if TYPE_CHECKING:
    from distributed import Client

    from ..stack import Stack


@dataclass(frozen=True)
class ClusterBuild:
    """What a cluster build did: the pyramid, its plan, slabs reused from the ledger and
    slabs run, whether the top task ran, the folder it built in and the seconds it took."""

    pyramid: Pyramid
    plan: SlabPlan | None = None
    reused: int = 0
    ran: int = 0
    top: bool = False
    folder: Path | None = None
    seconds: float = 0.0


def pyramid_plan(
    shape: tuple[int, int, int], dtype: Any, max_size: int, slab_slices: int
) -> SlabPlan:
    """The slab plan of a stack's pyramid: levels 1..n with the cache layout's file depths."""
    import numpy as np

    from ..cache.layout import level_layout

    itemsize = np.dtype(dtype).itemsize
    specs = [
        LevelSpec(j, s[0], level_layout(s, itemsize).z_depth)
        for j, s in enumerate(level_shapes(shape, max_size), start=1)
    ]
    return plan_slabs(shape[0], specs, slab_slices, min_slab_levels=1)


def _remote_stack(stack: Stack) -> bytes:
    """The stack as the tasks receive it: pickled once (a task holding these bytes can be
    rerun anywhere by the scheduler, unlike scattered data lost with its worker)."""
    return pickle.dumps(stack, protocol=pickle.HIGHEST_PROTOCOL)


def _prepare(folder: Path, ledger: Ledger, shapes: list[Any], dtype: Any, key: str) -> None:
    """Start the folder over when the ledger was discarded; write the level metadata once."""
    from ..cache.housekeeping import remove_tree
    from ..cache.layout import create_levels

    keep = {LOCK_FILE, LEDGER_FILE}
    if ledger.discarded:
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                remove_tree(child)
            elif child.name not in keep and not child.name.startswith("."):
                child.unlink()
    if not all((folder / str(i) / "zarr.json").is_file() for i in range(1, len(shapes) + 1)):
        for i in range(1, len(shapes) + 1):
            if (folder / str(i)).is_dir():
                remove_tree(folder / str(i))
        create_levels(folder, shapes, dtype, key)


def build_on_cluster(
    stack: Stack,
    client: Client,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    rebuild: bool = False,
    cache_dir: StrPath | None = None,
    slab_slices: int = DEFAULT_SLAB_SLICES,
) -> ClusterBuild:
    """Build (or reuse) the pyramid of ``stack`` with slab tasks on ``client``'s cluster.

    Same arguments and result as ``pyramid.make_pyramid`` (wrapped in a ``ClusterBuild``);
    ``slab_slices`` is the slab size aimed at. Changes nothing on the stack except the bad
    slices the workers met, which are recorded on it as a local build records them.
    """
    t0 = time.perf_counter()
    settings = PyramidSettings(int(max_size), None if cache_dir is None else Path(cache_dir))
    total = stack.shape[0]
    shapes = level_shapes(stack.shape, max_size)
    if not rebuild or not shapes:
        found = load_pyramid(stack, max_size, cache_dir)
        if found is not None:
            if progress is not None:
                progress(total, total)
            return ClusterBuild(found, seconds=time.perf_counter() - t0)
    from ..cache import PyramidCache, entry_key, source_fingerprint
    from ..cache.commit import entry_identity
    from ..cache.keys import bad_record
    from ..cache.layout import commit_entry, make_partial
    from .checks import ClusterError, check_workers

    cache = PyramidCache(stack.root, stack.name, cache_dir=cache_dir)
    source = source_fingerprint(stack.sources(), stack.shape, stack.dtype)
    key = entry_key(source, shapes)
    final = cache.entry_path(key)
    replaces = entry_identity(final)
    replace = rebuild or final.is_dir()
    plan = pyramid_plan(stack.shape, stack.dtype, max_size, slab_slices)
    os.makedirs(cache.location, exist_ok=True)
    folder = make_partial(cache.location, key)
    header = {"source": source, "key": key, "dtype": stack.dtype.str, "plan": plan.signature()}
    with BuilderLock(folder, source):
        sources = stack.sources()
        try:
            check_workers(client, [stack.path, *sources[:1], *sources[-1:]], folder)
        except ClusterError:
            if not (folder / LEDGER_FILE).exists():  # nothing to resume: leave nothing behind
                _remove(folder)
            raise
        ledger = Ledger(folder, header)
        recorded = ledger.open()
        _prepare(folder, ledger, shapes, stack.dtype, key)
        done = {
            i: f for i, f in recorded.items() if i < len(plan.slabs) and intact(folder, f.files)
        }
        count = [sum(plan.slabs[i].planes for i in done)]
        if progress is not None:
            progress(count[0], total)

        def finished(result: Any) -> None:
            item = Finished(result.files, [tuple(b) for b in result.bad])
            ledger.record(result.index, item)
            done[result.index] = item
            count[0] += plan.slabs[result.index].planes
            if progress is not None:
                progress(count[0], total)

        runner = TaskRunner(client, cancel)
        try:
            ran, top_files = _run(runner, stack, folder, plan, done, finished)
        except (Cancelled, KeyboardInterrupt):
            if runner.all_stopped:  # confirmed by TaskRunner.stop: nothing writes any more
                _remove(folder)
            raise
        for item in done.values():
            for z, _path, reason in item.bad:
                stack._mark_bad(z, reason)
        checksums = {rel: v[1] for item in done.values() for rel, v in item.files.items()}
        checksums.update({rel: v[1] for rel, v in top_files.items()})
        extra = {"bad": bad_record(sources, [b.path for b in stack.bad_slices])}
        committed = commit_entry(
            cache,
            folder,
            key,
            shapes,
            stack.dtype,
            source,
            checksums,
            extra=extra,
            replace=replace,
            replaces=replaces,
            drop=(LEDGER_FILE, LOCK_FILE),
        )
    from ..pyramid import _levels

    pyramid = Pyramid(
        _levels(stack, committed.levels),
        settings,
        built=True,
        location=cache.location,
        stores=tuple(committed.levels),
    )
    if progress is not None:
        progress(total, total)
    return ClusterBuild(
        pyramid,
        plan,
        len(done) - ran,
        ran,
        bool(plan.top_written),
        folder,
        time.perf_counter() - t0,
    )


def _run(
    runner: TaskRunner,
    stack: Stack,
    folder: Path,
    plan: SlabPlan,
    done: dict[int, Finished],
    finished: Callable[[Any], None],
) -> tuple[int, dict[str, list[int]]]:
    """Submit the slabs not ``done``, collect them (``finished`` per result), then the top
    task; returns the number of slabs run and the top task's files."""
    client = runner.client
    lite = dataclasses.replace(plan, slabs=())  # each task gets its own slab, not the list
    top_files: dict[str, list[int]] = {}
    with runner:
        blob = _shared_stack(client, stack)
        todo = [s for s in plan.slabs if s.index not in done]
        futures = [
            runner.submit(_slab_task, blob, str(folder), lite, s, key=f"ctstack-slab-{s.index}")
            for s in todo
        ]
        runner.collect(futures, finished)
        if plan.top_written:
            top = runner.submit(
                _top_task, str(folder), lite, stack.shape, stack.dtype.str, key="ctstack-top"
            )
            runner.collect([top], lambda r: top_files.update(r.files))
        blob.release()
    return len(todo), top_files


def _shared_stack(client: Client, stack: Stack) -> Any:
    """The stack as a future held by every worker: made by a task (so the scheduler can
    remake it if its holders die, unlike scattered data), then copied to all workers, or
    data locality would queue every slab on the one worker that holds it."""
    from distributed import wait

    blob = client.submit(pickle.loads, _remote_stack(stack), pure=False)
    wait(blob)
    client.replicate([blob])
    return blob


def _slab_task(stack: Stack, folder: str, plan: SlabPlan, slab: Any, cancel: str) -> Any:
    from .tasks import run_slab

    return run_slab(stack, folder, plan, slab, cancel)


def _top_task(folder: str, plan: SlabPlan, base: Any, dtype: str, cancel: str) -> Any:
    from .tasks import run_top

    return run_top(folder, plan, tuple(base), dtype, cancel)


def _remove(folder: Path) -> None:
    from ..cache.housekeeping import remove_marked_last

    remove_marked_last(folder)
