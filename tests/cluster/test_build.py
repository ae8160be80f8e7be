"""Cluster pyramid builds equal local builds bit for bit, survive killed workers and clients,
and cancel cleanly. One LocalCluster (2 worker processes, 1 thread each) for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

import ctstack
from ctstack._cluster.build import build_on_cluster
from ctstack._cluster.ledger import LEDGER_FILE, LOCK_FILE, ClusterBusy
from ctstack.cache.keys import PARTIAL_PREFIX
from ctstack.errors import Cancelled
from ctstack.sample import write_phantom_stack

from . import hooks
from .conftest import assert_same_entry, entry_of

cloudpickle.register_pickle_by_value(hooks)

DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


WIDER = {  # dtypes the phantom writer lacks: made from one it has (values fill the range)
    "uint32": ("uint16", lambda a: a.astype(np.uint32) * 65537),
    "int32": ("int16", lambda a: a.astype(np.int32) * 65536 + 12345),
    "float64": ("float32", lambda a: a.astype(np.float64) * np.pi),
}


def phantom(tmp_path: Path, shape=(69, 37, 29), dtype="uint16", gaps=(5, 40)) -> Path:
    folder = tmp_path / f"stack-{dtype}"
    if dtype in WIDER:
        import tifffile

        from ctstack.sample import phantom as volume

        base, widen = WIDER[dtype]
        data = widen(volume(shape, base))
        folder.mkdir()
        paths = [folder / f"s_{z:04d}.tif" for z in range(shape[0])]
        for path, plane in zip(paths, data, strict=True):
            tifffile.imwrite(path, plane)
    else:
        paths = write_phantom_stack(folder, shape, dtype)
    # missing slices read as zeros, on the workers too
    for z in (g for g in gaps if g < shape[0] - 1):
        paths[z].unlink()
    return folder


def local_entry(folder: Path, cache: Path, max_size: int) -> Path:
    ctstack.open_stack(folder).build_pyramid(max_size=max_size, cache_dir=cache)
    return entry_of(cache)


def partials(cache: Path) -> list[Path]:
    return list(cache.rglob(PARTIAL_PREFIX + "*"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_build_equals_local_bit_for_bit(client, tmp_path, dtype):
    folder = phantom(tmp_path, dtype=dtype)
    stack = ctstack.open_stack(folder)
    assert stack.missing == [5, 40]
    done = build_on_cluster(stack, client, max_size=4, cache_dir=tmp_path / "c", slab_slices=16)
    assert done.plan is not None and len(done.plan.slabs) >= 3 and done.top  # slabs + top
    assert done.ran == len(done.plan.slabs) and done.reused == 0
    assert_same_entry(entry_of(tmp_path / "c"), local_entry(folder, tmp_path / "l", 4))
    assert not partials(tmp_path / "c")
    levels = stack.build_pyramid(max_size=4, cache_dir=tmp_path / "c", client=client)
    assert stack.pyramid is not None and not stack.pyramid.built  # reused, not rebuilt
    assert len(levels) == len(done.pyramid.levels)


def test_bad_slice_is_recorded_as_locally(client, tmp_path):
    folder = phantom(tmp_path, shape=(40, 33, 31), gaps=())
    victim = sorted(folder.glob("*.tif"))[21]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated: a bad slice, zeros
    with pytest.warns(UserWarning):
        stack = ctstack.open_stack(folder)
    build_on_cluster(stack, client, max_size=8, cache_dir=tmp_path / "c", slab_slices=16)
    with pytest.warns(UserWarning):
        assert_same_entry(entry_of(tmp_path / "c"), local_entry(folder, tmp_path / "l", 8))
    manifest = json.loads((entry_of(tmp_path / "c") / "manifest.json").read_text())
    assert manifest["bad"] and manifest["bad"][0][0] == victim.name


def test_real_scans_equal_local(client, tmp_path, real_scan_dir):
    folder, facts = real_scan_dir
    stack = ctstack.open_stack(folder)
    assert list(stack.shape) == facts["shape_zyx"]
    done = build_on_cluster(stack, client, max_size=16, cache_dir=tmp_path / "c", slab_slices=16)
    assert done.plan is not None and len(done.plan.slabs) >= 2
    assert_same_entry(entry_of(tmp_path / "c"), local_entry(folder, tmp_path / "l", 16))


def _start(target, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = target(*args, **kwargs)
        except BaseException as exc:  # handed to the test thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _pid_gone(pid: int) -> bool:
    import psutil

    try:
        psutil.Process(pid)  # a zombie still counts: killed but not yet reaped by its nanny
    except psutil.NoSuchProcess:
        return True
    return False


def test_worker_killed_mid_build_changes_nothing(client, tmp_path):
    from distributed import Event

    folder = phantom(tmp_path, shape=(96, 41, 35))
    pid_file = tmp_path / "pid"
    gate = Event("gate-worker-kill", client=client)
    client.run(hooks.install, hooks.blocking_hook(2, "gate-worker-kill", str(pid_file)))
    try:
        stack = ctstack.open_stack(folder)
        thread, out = _start(
            build_on_cluster, stack, client, max_size=8, cache_dir=tmp_path / "c", slab_slices=16
        )
        hooks.wait_for(pid_file.exists, what="slab 2 to start")
        pid = int(pid_file.read_text())
        assert partials(tmp_path / "c")  # mid-build: the partial folder is there
        os.kill(pid, signal.SIGKILL)
        hooks.wait_for(lambda: _pid_gone(pid), what=f"worker {pid} to be reaped")
        thread.join(120)
        assert not thread.is_alive() and "error" not in out, out.get("error")
    finally:
        gate.set()
        client.run(hooks.install, None)
    done = out["result"]
    assert done.ran == len(done.plan.slabs)
    assert_same_entry(entry_of(tmp_path / "c"), local_entry(folder, tmp_path / "l", 8))
    hooks.wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, what="the nanny restart")
    assert pid not in client.run(os.getpid).values()


CHILD = """
import sys
import ctstack
from distributed import Client
from ctstack._cluster.build import build_on_cluster

address, folder, cache = sys.argv[1:]
with Client(address) as client:
    build_on_cluster(ctstack.open_stack(folder), client, max_size=8, cache_dir=cache,
                     slab_slices=16)
"""


def _ledger_slabs(cache: Path) -> int:
    found = list(cache.rglob(LEDGER_FILE))
    return len(found[0].read_text().splitlines()) - 1 if found else 0


def test_client_killed_then_rerun_reuses_the_ledger(client, cluster, tmp_path):
    from distributed import Event

    folder = phantom(tmp_path, shape=(128, 33, 27))
    cache = tmp_path / "c"
    pid_file = tmp_path / "pid"
    gate = Event("gate-client-kill", client=client)
    client.run(hooks.install, hooks.blocking_hook(0, "gate-client-kill", str(pid_file)))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), cluster.scheduler_address, str(folder), str(cache)]
    )
    try:
        hooks.wait_for(pid_file.exists, what="slab 0 to start")
        # the other worker finishes the other slabs while slab 0 is held
        hooks.wait_for(lambda: _ledger_slabs(cache) >= 3, what="slabs in the ledger")
        child.kill()
        child.wait(30)  # reaped
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        client.run(hooks.install, None)
        gate.set()
    hooks.wait_for(
        lambda: not any(client.run(hooks.executing).values()), what="the orphaned task to end"
    )
    recorded = _ledger_slabs(cache)
    assert [p.name for p in partials(cache)] and (partials(cache)[0] / LOCK_FILE).exists()
    stack = ctstack.open_stack(folder)
    done = build_on_cluster(stack, client, max_size=8, cache_dir=cache, slab_slices=16)
    assert done.plan is not None
    assert done.reused == recorded >= 3
    assert done.ran == len(done.plan.slabs) - recorded >= 1  # slab 0 at least
    assert_same_entry(entry_of(cache), local_entry(folder, tmp_path / "l", 8))
    assert not partials(cache)


def test_reused_slab_is_verified_and_other_ledgers_discarded(client, tmp_path):
    folder = phantom(tmp_path, shape=(64, 30, 26))
    cache = tmp_path / "c"
    stack = ctstack.open_stack(folder)
    first = build_on_cluster(stack, client, max_size=8, cache_dir=cache, slab_slices=16)
    entry = entry_of(cache)
    assert first.folder is not None
    # put the entry back as a partial build with a ledger, one file of slab 1 truncated
    partial = first.folder
    sums = json.loads((entry / "checksums.json").read_text())["chunks"]
    entry.rename(partial)
    (partial / "manifest.json").unlink()
    (partial / ".ctstack-temp").write_text("{}")
    from ctstack._cluster.ledger import Finished, Ledger

    sig = {
        "source": stack_source(stack),
        "key": partial.name[len(PARTIAL_PREFIX) :],
        "dtype": stack.dtype.str,
        "plan": first.plan.signature(),
    }
    ledger = Ledger(partial, sig)
    ledger.open()
    for slab in first.plan.slabs:
        owned = {
            f"1/c/{iz}/0/0": [os.path.getsize(partial / f"1/c/{iz}/0/0"), sums[f"1/c/{iz}/0/0"]]
            for iz in first.plan.blocks(slab)[1]
        }
        ledger.record(slab.index, Finished(owned))
    victim = partial / "1/c/1/0/0"
    with open(victim, "r+b") as f:
        f.truncate(10)
    again = build_on_cluster(
        ctstack.open_stack(folder), client, max_size=8, cache_dir=cache, slab_slices=16
    )
    assert again.ran == 1 and again.reused == len(first.plan.slabs) - 1
    assert_same_entry(entry_of(cache), local_entry(folder, tmp_path / "l", 8))
    # a ledger of another source is discarded: everything is built again
    entry_of(cache).rename(partial)
    (partial / "manifest.json").unlink()
    (partial / ".ctstack-temp").write_text("{}")
    Ledger(partial, {**sig, "source": "another"}).open()
    third = build_on_cluster(
        ctstack.open_stack(folder), client, max_size=8, cache_dir=cache, slab_slices=16
    )
    assert third.reused == 0 and third.ran == len(first.plan.slabs)


def stack_source(stack) -> str:
    from ctstack.cache import source_fingerprint

    return source_fingerprint(stack.sources(), stack.shape, stack.dtype)


def test_second_builder_of_a_key_is_refused(client, tmp_path):
    from ctstack.cache import PyramidCache, entry_key
    from ctstack.cache.layout import make_partial
    from ctstack.pyramid import level_shapes

    folder = phantom(tmp_path, shape=(40, 30, 26))
    stack = ctstack.open_stack(folder)
    cache = PyramidCache(stack.root, stack.name, cache_dir=tmp_path / "c")
    key = entry_key(stack_source(stack), level_shapes(stack.shape, 8))
    cache.location.mkdir(parents=True)
    partial = make_partial(cache.location, key)
    (partial / LOCK_FILE).write_text(
        json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "time": 0})
    )
    with pytest.raises(ClusterBusy, match="another cluster build"):
        build_on_cluster(stack, client, max_size=8, cache_dir=tmp_path / "c", slab_slices=16)
    (partial / LOCK_FILE).write_text(json.dumps({"pid": 2**22 + 7, "host": os.uname().nodename}))
    build_on_cluster(stack, client, max_size=8, cache_dir=tmp_path / "c", slab_slices=16)
    assert not partials(tmp_path / "c")


def test_cancel_stops_every_task_before_the_folder_goes(client, tmp_path):
    from distributed import Event

    folder = phantom(tmp_path, shape=(96, 30, 26))
    cache = tmp_path / "c"
    pid_file = tmp_path / "pid"
    gate = Event("gate-cancel", client=client)
    client.run(hooks.install, hooks.blocking_hook(1, "gate-cancel", str(pid_file)))
    cancel = threading.Event()
    try:
        thread, out = _start(
            build_on_cluster,
            ctstack.open_stack(folder),
            client,
            cancel=cancel,
            max_size=8,
            cache_dir=cache,
            slab_slices=16,
        )
        hooks.wait_for(pid_file.exists, what="slab 1 to start")
        cancel.set()
        thread.join(2)
        assert thread.is_alive()  # waiting for the held task: the folder must stay meanwhile
        assert partials(cache)
        gate.set()
        thread.join(60)
    finally:
        gate.set()
        client.run(hooks.install, None)
    assert isinstance(out.get("error"), Cancelled)
    assert not partials(cache) and not list(cache.rglob("*.pyramid"))
    assert not any(client.run(hooks.executing).values())


def test_cli_pyramid_on_a_scheduler(cluster, tmp_path):
    folder = phantom(tmp_path, shape=(50, 30, 26))
    cache = tmp_path / "c"
    run = subprocess.run(
        [
            sys.executable, "-m", "ctstack.cli", "pyramid", str(folder), "--max-size", "8",
            "--cache-dir", str(cache), "--scheduler", cluster.scheduler_address,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2 worker(s)" in run.stdout and "built 3 level(s)" in run.stdout
    assert "slab task(s)" in run.stdout and "0 slab(s) reused" in run.stdout
    assert "50/50 slices" in run.stderr
    assert_same_entry(entry_of(cache), local_entry(folder, tmp_path / "l", 8))
    np.testing.assert_array_equal(
        np.asarray(ctstack.open_stack(folder).build_pyramid(max_size=8, cache_dir=cache)[1]),
        np.asarray(
            ctstack.open_stack(folder).build_pyramid(max_size=8, cache_dir=tmp_path / "l")[1]
        ),
    )
