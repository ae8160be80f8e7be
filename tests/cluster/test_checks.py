"""Every worker must see the stack and the cache folder: a worker started in a private mount
namespace (``unshare -m``) with a tmpfs over a folder gets the clear error, naming the path
and the worker. Own scheduler (no workers of its own) for this module."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

import ctstack
from ctstack._cluster.build import build_on_cluster
from ctstack._cluster.checks import ClusterError
from ctstack.sample import write_phantom_stack

from ..private_mount import needs_private_mount, tmpfs
from .hooks import wait_for

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler():
    with (
        distributed.LocalCluster(
            processes=True, n_workers=0, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


def start_hidden_worker(address: str, hidden) -> subprocess.Popen:
    """A dask worker that sees a tmpfs instead of ``hidden`` (its own mount namespace)."""
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1"]
    worker = " ".join(shlex.quote(a) for a in [*argv, "--no-nanny", "--no-dashboard"])
    return subprocess.Popen(
        ["unshare", "-m", "sh", "-c", f"{tmpfs(hidden, '1m')} && exec {worker}"]
    )


@needs_private_mount
@pytest.mark.parametrize("hide", ["stack", "cache"])
def test_worker_that_cannot_see_a_path_gives_a_clear_error(scheduler, tmp_path, hide):
    cluster, client = scheduler
    stack_dir = tmp_path / "data" / "stack"
    cache = tmp_path / "shared" / "cache"
    cache.mkdir(parents=True)
    write_phantom_stack(stack_dir, (40, 30, 26))
    hidden = stack_dir.parent if hide == "stack" else cache.parent
    worker = start_hidden_worker(cluster.scheduler_address, hidden)
    try:
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 60, "the hidden worker")
        (address,) = client.scheduler_info()["workers"]
        stack = ctstack.open_stack(stack_dir)
        with pytest.raises(ClusterError) as err:
            build_on_cluster(stack, client, max_size=8, cache_dir=cache)
    finally:
        worker.kill()
        worker.wait(30)
    message = str(err.value)
    assert address in message and "shared filesystem" in message
    if hide == "stack":
        assert f"cannot see {stack_dir}" in message
    else:
        assert "cache folder" in message and str(cache) in message
    assert not list(cache.rglob(".partial-*"))  # the build never started: nothing left
