"""The pyramid cache: keys, location, atomic commit, kills, concurrent builders, clean, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ctstack import cache as C
from ctstack import locations as L
from ctstack.cache import CacheError, PyramidCache, SourceMissing, chunk_shape, fingerprint
from ctstack.cache import keys as K
from ctstack.cache import writer as W
from ctstack.errors import CTStackError

REPO = Path(__file__).resolve().parents[1]
SHAPE = (80, 32, 36)  # level 0 of the fake stack
LEVELS = [(40, 16, 18), (20, 8, 9)]  # levels 1, 2: 40 planes = chunks of 16, 16 and a partial 8


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def private_user_cache(tmp_path, monkeypatch):
    """Never touch the real user cache dir or honour a CTSTACK_CACHE_DIR from the environment."""
    import platformdirs

    user = tmp_path / "usercache"
    monkeypatch.delenv(C.ENV_VAR, raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: str(user))
    return user


def make_stack(tmp_path: Path, n: int = 20, name: str = "slice") -> tuple[Path, list[Path]]:
    root = tmp_path / "stack"
    root.mkdir(exist_ok=True)
    files = []
    for i in range(n):
        f = root / f"{name}{i:04d}.tif"
        f.write_bytes(bytes(100 + i))
        files.append(f)
    return root, files


def reference(shapes=LEVELS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 65535, s, dtype=np.uint16) for s in shapes]


def write_all(writer, levels: list[np.ndarray]) -> None:
    """Feed planes interleaved across levels, as the streaming builder does."""
    for step in range(max(a.shape[0] for a in levels)):
        for lv, arr in enumerate(levels, start=1):
            if step < arr.shape[0]:
                writer.write_plane(lv, step, arr[step])


def build(cache: PyramidCache, key: str, levels: list[np.ndarray]) -> list:
    with cache.writer(key, [a.shape for a in levels], levels[0].dtype) as w:
        write_all(w, levels)
        return w.commit()


def key_of(files, shape=SHAPE, dtype="uint16", levels=LEVELS) -> str:
    return fingerprint(files, shape, dtype, levels)


def temp_dirs(location: Path) -> list[Path]:
    return sorted(location.glob(C.TMP_PREFIX + "*"))


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------- the key


def test_fingerprint_changes_with_every_input(tmp_path, monkeypatch):
    _root, files = make_stack(tmp_path)
    base = key_of(files)
    assert len(base) == 64 and int(base, 16) >= 0
    assert key_of(list(reversed(files))) == base  # order of the list is irrelevant
    assert key_of(files, shape=(20, 32, 37)) != base
    assert key_of(files, dtype="int16") != base
    assert key_of(files, levels=[(10, 16, 18)]) != base
    monkeypatch.setattr(K, "PYRAMID_VERSION", C.PYRAMID_VERSION + 1)
    assert key_of(files) != base


def test_fingerprint_ignores_where_the_folder_is(tmp_path):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    moved = tmp_path / "moved"
    root.rename(moved)
    assert key_of([moved / f.name for f in files]) == key


@pytest.mark.parametrize("change", ["content", "mtime", "added", "removed", "renamed"])
def test_each_kind_of_change_invalidates_the_cache(tmp_path, change):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    old_key = key_of(files)
    build(cache, old_key, reference())
    assert cache.load(old_key) is not None
    if change == "content":
        files[3].write_bytes(files[3].read_bytes() + b"!")
    elif change == "mtime":  # same size, mtime moved by one microsecond
        st = files[3].stat()
        os.utime(files[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    elif change == "added":
        extra = root / "slice0020.tif"
        extra.write_bytes(b"new")
        files.append(extra)
    elif change == "removed":
        files.pop().unlink()
    else:
        new = files[3].with_name("slice9999.tif")
        files[3].rename(new)
        files[3] = new
    new_key = key_of(files)
    assert new_key != old_key
    assert cache.load(new_key) is None
    # rebuilding for the new key drops the old entry of the same series
    build(cache, new_key, reference(seed=1))
    assert cache.load(old_key) is None
    assert [e["key"] for e in cache.entries()] == [new_key]


def test_vanished_source_names_the_file(tmp_path):
    _root, files = make_stack(tmp_path)
    files[5].unlink()
    with pytest.raises(SourceMissing, match=r"slice0005\.tif") as info:
        key_of(files)
    assert isinstance(info.value, CTStackError)


# --------------------------------------------------------------------------- write and load


def test_round_trip_layout_and_manifest(tmp_path):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    assert cache.location == root / ".ctstack"
    key = key_of(files)
    ref = reference()
    levels = build(cache, key, ref)
    for got, want in zip(levels, ref, strict=True):
        np.testing.assert_array_equal(got[:], want)
    entry = root / ".ctstack" / f"slice-{key[:16]}.pyramid"
    assert entry.is_dir()
    assert sorted(p.name for p in entry.iterdir()) == ["1", "2", "checksums.json", "manifest.json"]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["key"] == key
    assert manifest["levels"] == [list(s) for s in LEVELS]
    assert manifest["dtype"] == "<u2"
    assert manifest["version"] == C.PYRAMID_VERSION
    assert abs(manifest["created"] - time.time()) < 60
    meta = json.loads((entry / "1" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == list(chunk_shape(LEVELS[0]))
    assert [c["name"] for c in meta["codecs"]] == ["bytes"]  # no compression
    assert not temp_dirs(cache.location)
    # read-only levels
    with pytest.raises(Exception):  # noqa: B017 - zarr raises its own read-only error type
        levels[0][0] = 1


def test_chunk_shape_rule():
    assert chunk_shape((250, 1024, 1024)) == (16, 64, 1024)  # the measured choice
    assert chunk_shape((125, 512, 512)) == (16, 64, 512)
    assert chunk_shape((5, 3, 7)) == (5, 3, 7)  # never larger than the level
    big = chunk_shape((1000, 2048, 2048))  # reads stay under the budget on big levels
    assert big == (4, 8, 2048)
    assert big[0] * 2048 * 2048 * 2 <= C.READ_BUDGET and 1000 * big[1] * 2048 * 2 <= C.READ_BUDGET
    assert chunk_shape((250, 1024, 1024), itemsize=8) == (4, 16, 1024)


def test_load_reads_no_pixel(tmp_path, monkeypatch):
    from zarr.storage import LocalStore

    root, files = make_stack(tmp_path)
    key = key_of(files)
    build(PyramidCache(root, "slice"), key, reference())
    asked: list[str] = []
    original = LocalStore.get

    async def spy(self, key, *args, **kwargs):
        asked.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", spy)
    levels = PyramidCache(root, "slice").load(key)
    assert levels is not None
    metadata = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    assert asked and all(k.rsplit("/", 1)[-1] in metadata for k in asked)
    levels[0][0, 0, 0]  # the spy does see pixel reads
    assert any("/c/" in k or k.startswith("c/") for k in asked)


def test_chunks_are_written_as_planes_arrive(tmp_path):
    """Memory stays bounded: a chunk is flushed to disk as soon as its planes are all in."""
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    ref = reference()
    depth = chunk_shape(LEVELS[0])[0]
    with cache.writer(key_of(files), LEVELS, "uint16") as w:
        chunk0 = w.tmp / "1" / "c" / "0" / "0" / "0"
        for z in range(depth - 1):
            w.write_plane(1, z, ref[0][z])
        assert not chunk0.exists()
        w.write_plane(1, depth - 1, ref[0][depth - 1])
        w.drain()  # written by the writer thread
        assert chunk0.is_file()
        assert chunk0.stat().st_size == ref[0][:depth].nbytes
        assert not (w.tmp / "1" / "c" / "1").exists()


def test_forced_rebuild_replaces_an_entry_with_the_same_key(tmp_path):
    """`--rebuild` is the remedy for a same-name/size/mtime change the key cannot see."""
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    build(cache, key, reference(seed=1))
    new = reference(seed=2)
    with cache.writer(key, LEVELS, "uint16") as w:
        write_all(w, new)
        levels = w.commit(replace=True)
    assert w.won is True
    np.testing.assert_array_equal(cache.load(key)[0][:], new[0])
    np.testing.assert_array_equal(levels[1][:], new[1])
    assert [e["kind"] for e in cache.entries()] == ["entry"]
    with cache.writer(key, LEVELS, "uint16") as w:  # without replace, the existing one wins
        write_all(w, reference(seed=3))
        levels = w.commit()
    assert w.won is False
    np.testing.assert_array_equal(levels[0][:], new[0])


def test_writer_rejects_misuse(tmp_path):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    ref = reference()
    w = cache.writer(key, LEVELS, "uint16")
    w.write_plane(1, 0, ref[0][0])
    with pytest.raises(CacheError, match="expected z=1"):
        w.write_plane(1, 2, ref[0][2])
    with pytest.raises(CacheError, match="level 3"):
        w.write_plane(3, 0, ref[1][0])
    with pytest.raises(CacheError, match="expected"):
        w.write_plane(1, 1, ref[0][1].astype(np.int32))
    with pytest.raises(CacheError, match="incomplete"):
        w.commit()
    assert cache.load(key) is None
    assert temp_dirs(cache.location) == [w.tmp]
    w.abort()
    assert not w.tmp.exists()
    w.abort()  # idempotent
    with pytest.raises(CacheError, match="aborted"):
        w.write_plane(1, 1, ref[0][1])


def test_exception_inside_writer_aborts(tmp_path):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    ref = reference()
    with pytest.raises(RuntimeError, match="cancelled"), cache.writer(key, LEVELS, "uint16") as w:
        w.write_plane(1, 0, ref[0][0])
        assert w.tmp.is_dir()
        raise RuntimeError("cancelled")
    assert not w.tmp.exists()
    assert cache.load(key) is None
    assert cache.entries() == []


@pytest.mark.parametrize(
    "damage", ["no manifest", "bad manifest", "no level", "other key", "short chunk", "no chunk"]
)
def test_corrupt_entry_is_not_loaded_and_a_build_replaces_it(tmp_path, damage):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    build(cache, key, reference())
    entry = cache.entry_path(key)
    if damage == "no manifest":
        (entry / "manifest.json").unlink()
    elif damage == "bad manifest":
        (entry / "manifest.json").write_text("{not json")
    elif damage == "no level":
        (entry / "2" / "zarr.json").unlink()
    elif damage == "short chunk":  # what a power loss after the rename can leave
        os.truncate(entry / "1" / "c" / "1" / "0" / "0", 0)
    elif damage == "no chunk":
        (entry / "2" / "c" / "0" / "0" / "0").unlink()
    else:
        m = json.loads((entry / "manifest.json").read_text())
        m["key"] = "0" * 64
        (entry / "manifest.json").write_text(json.dumps(m))
    before = sorted(p.relative_to(entry) for p in entry.rglob("*"))
    assert cache.load(key) is None
    after = sorted(p.relative_to(entry) for p in entry.rglob("*"))
    assert after == before  # opening writes nothing
    build(cache, key, reference())
    assert cache.load(key) is not None
    assert [e["kind"] for e in cache.entries()] == ["entry"]


# --------------------------------------------------------------------------- location


def test_read_only_stack_folder_falls_back_to_user_cache(tmp_path, monkeypatch, private_user_cache):
    root, files = make_stack(tmp_path)
    before = sorted(root.iterdir())
    real_probe = L._probe_write
    probed = []

    def refuse_under_root(folder):
        probed.append(folder)
        if root in Path(folder).parents or Path(folder) == root:
            raise PermissionError(13, "Read-only file system", str(folder))
        real_probe(folder)

    monkeypatch.setattr(L, "_probe_write", refuse_under_root)
    cache = PyramidCache(root, "slice")
    # the decision came from a real write attempt, in the stack folder itself: `.ctstack` does
    # not exist yet and is not made just to probe (two processes could remove it under each other)
    assert probed == [root]
    assert private_user_cache in cache.location.parents
    assert cache.location.name.startswith("stack-")
    key = key_of(files)
    ref = reference()
    build(cache, key, ref)
    assert sorted(root.iterdir()) == before  # nothing written beside a read-only stack
    np.testing.assert_array_equal(PyramidCache(root, "slice").load(key)[1][:], ref[1])


def test_probing_an_absent_cache_folder_neither_makes_nor_removes_it(tmp_path):
    root, _files = make_stack(tmp_path)
    assert C.is_writable(root / ".ctstack")
    assert not (root / ".ctstack").exists()
    (root / ".ctstack").mkdir()
    (root / ".ctstack" / "roi.json").write_text("{}")
    assert C.is_writable(root / ".ctstack")
    assert sorted(p.name for p in (root / ".ctstack").iterdir()) == ["roi.json"]


def test_real_write_failure_falls_back(tmp_path, private_user_cache):
    """Not simulated: `.ctstack` is a plain file, so creating anything inside it fails."""
    root, _files = make_stack(tmp_path)
    (root / ".ctstack").write_text("not a folder")
    cache = PyramidCache(root, "slice")
    assert private_user_cache in cache.location.parents


def test_probe_leaves_no_folder_behind(tmp_path):
    root, _files = make_stack(tmp_path)
    PyramidCache(root, "slice")
    assert not (root / ".ctstack").exists()  # created by the first writer, not by opening


def test_cache_built_beside_a_now_read_only_stack_is_still_used(tmp_path, monkeypatch):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    build(PyramidCache(root, "slice"), key, reference())
    monkeypatch.setattr(L, "is_writable", lambda folder: False)
    cache = PyramidCache(root, "slice")
    assert cache.location != root / ".ctstack"
    levels = cache.load(key)
    assert levels is not None and ".ctstack" in str(levels[0].store)


def test_cache_dir_option_and_env(tmp_path, monkeypatch):
    root, files = make_stack(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    shared = tmp_path / "shared"
    a = PyramidCache(root, "slice", cache_dir=shared)
    b = PyramidCache(other, "slice", cache_dir=str(shared))
    assert a.location.parent == shared and b.location.parent == shared
    assert a.location != b.location  # two stacks never collide
    monkeypatch.setenv(C.ENV_VAR, str(tmp_path / "env"))
    assert PyramidCache(root, "slice").location.parent == tmp_path / "env"
    assert PyramidCache(root, "slice", cache_dir=shared).location == a.location  # arg wins
    build(a, key_of(files), reference())
    assert not (root / ".ctstack").exists()


# --------------------------------------------------------------------------- kills


KILL_CHILD = r"""
import sys
import numpy as np
from pathlib import Path
from ctstack.cache import PyramidCache, chunk_shape

root, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
shapes = [(40, 16, 18), (20, 8, 9)]
rng = np.random.default_rng(0)
levels = [rng.integers(0, 65535, s, dtype=np.uint16) for s in shapes]
w = PyramidCache(Path(root), "slice").writer(key, shapes, "uint16")

def block():
    print("ready", w.tmp, flush=True)
    sys.stdin.read()  # wait here until killed

if mode == "planes":
    for z in range(chunk_shape(shapes[0])[0] + 1):  # one chunk flushed, one plane buffered
        w.write_plane(1, z, levels[0][z])
    w.drain()
    block()
else:
    w.before_rename = block
    for step in range(40):
        for lv, arr in enumerate(levels, start=1):
            if step < arr.shape[0]:
                w.write_plane(lv, step, arr[step])
    w.commit()
print("not killed", flush=True)
"""


@pytest.mark.parametrize("mode", ["planes", "commit"])
def test_kill_mid_build_leaves_no_cache_and_next_open_rebuilds(tmp_path, mode):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(root), key, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), line
        tmp = Path(line.split(" ", 1)[1].strip())
        # the build really is half-way: data on disk, not committed, writer alive
        assert (tmp / "1" / "c" / "0" / "0" / "0").is_file()
        assert (tmp / "manifest.json").exists() == (mode == "commit")
        if mode == "planes":
            assert not (tmp / "1" / "c" / "1").exists()
        assert proc.poll() is None
        live = PyramidCache(root, "slice")
        assert live.load(key) is None
        live.clean()  # must not remove a live writer's folder
        assert tmp.is_dir()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert tmp.is_dir()  # the killed writer left its folder...
    cache = PyramidCache(root, "slice")
    assert cache.load(key) is None  # ...which never counts as a cache
    assert [e["kind"] for e in cache.entries()] == ["temp"]
    assert cache.entries()[0]["stale"] is True
    ref = reference()
    levels = build(cache, key, ref)  # the next open rebuilds; the stale folder is swept
    assert not tmp.exists()
    np.testing.assert_array_equal(levels[0][:], ref[0])
    assert [e["kind"] for e in cache.entries()] == ["entry"]


def test_live_writer_folder_survives_other_writers(tmp_path):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    with cache.writer(key_of(files), LEVELS, "uint16") as first:
        cache.writer(key_of(files), LEVELS, "uint16").abort()  # sweeps stale folders
        assert first.tmp.is_dir()
        assert cache.entries()[0]["stale"] is False


# --------------------------------------------------------------------------- concurrency


def _concurrent_builder(root, key, role, barrier, first_done, results):
    """One of two processes building the same key; the hook makes the race deterministic."""
    cache = PyramidCache(Path(root), "slice")
    ref = reference()
    w = cache.writer(key, LEVELS, "uint16")
    seen = []

    def hook():
        barrier.wait(timeout=30)  # both builds are complete, manifests written, not renamed
        seen.append(len(temp_dirs(cache.location)))
        barrier.wait(timeout=30)  # both have looked before either renames
        if role == "second":
            first_done.wait(timeout=30)

    w.before_rename = hook
    write_all(w, ref)
    levels = w.commit()
    if role == "first":
        first_done.set()
    same = all(np.array_equal(a[:], b) for a, b in zip(levels, ref, strict=True))
    results.put((role, w.won, same, seen[0], str(levels[0].store)))


@pytest.mark.parametrize("order", ["one after the other", "simultaneous"])
def test_two_processes_commit_the_same_key(tmp_path, order):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    ctx = multiprocessing.get_context("spawn")
    barrier, first_done, results = ctx.Barrier(2), ctx.Event(), ctx.Queue()
    roles = ["first", "second"] if order == "one after the other" else ["first", "first"]
    procs = [
        ctx.Process(
            target=_concurrent_builder, args=(str(root), key, r, barrier, first_done, results)
        )
        for r in roles
    ]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert all(seen == 2 for _r, _w, _s, seen, _st in out), out  # both were mid-build at once
    assert all(same for _r, _w, same, _seen, _st in out)
    assert sorted(won for _r, won, _s, _seen, _st in out) == [False, True]
    if order == "one after the other":
        assert dict((r, won) for r, won, *_ in out) == {"first": True, "second": False}
    cache = PyramidCache(root, "slice")
    assert {st for *_, st in out} == {str(cache.load(key)[0].store)}
    assert [e["kind"] for e in cache.entries()] == ["entry"]  # loser's temp folder is gone


# --------------------------------------------------------------------------- list and clean


def test_entries_and_clean_keep_user_files(tmp_path):
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    build(cache, key, reference())
    other = PyramidCache(root, "recon")
    other_key = key_of(files, dtype="int16")
    build(other, other_key, reference())
    assert cache.load(key) is not None  # another series does not evict this one
    roi = cache.location / "roi.json"
    roi.write_text('{"rois": []}')
    notes = cache.location / "notes.txt"
    notes.write_text("mine")
    stale = cache.location / f"{C.TMP_PREFIX}999999999-0123456789ab-{C._safe(os.uname()[1])}"
    (stale / "1").mkdir(parents=True)
    (stale / "1" / "junk").write_bytes(b"x" * 1000)
    (stale / C.TEMP_MARKER).write_text('{"pid": 999999999}')  # a dead writer's, so ours

    entries = cache.entries()
    done = [e for e in entries if e["kind"] == "entry"]
    assert {(e["name"], e["key"]) for e in done} == {("slice", key), ("recon", other_key)}
    assert all(e["complete"] and e["levels"] == LEVELS and e["bytes"] > 0 for e in done)
    assert [e["stale"] for e in entries if e["kind"] == "temp"] == [True]

    expected = sum(e["bytes"] for e in entries)
    assert cache.clean() == expected
    assert sorted(p.name for p in cache.location.iterdir()) == ["notes.txt", "roi.json"]
    assert cache.load(key) is None
    notes.unlink()
    assert cache.clean(keep_roi=False) == len('{"rois": []}')
    assert not cache.location.exists()  # empty location removed too
    assert all(f.is_file() for f in files)  # sources never touched


# --------------------------------------------------------------------------- CLI


def test_cli_list_and_clean(tmp_path, capsys):
    from ctstack.cli import main

    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    build(cache, key, reference())
    (cache.location / "roi.json").write_text("{}")

    assert main(["cache", "list", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"slice-{key[:16]}.pyramid" in out and "40x16x18, 20x8x9" in out
    assert "complete" in out and "roi.json" in out

    assert main(["cache", "clean", str(files[0])]) == 0  # a file of the stack works too
    assert "freed" in capsys.readouterr().out
    assert cache.load(key) is None
    assert (cache.location / "roi.json").is_file()

    assert main(["cache", "clean", str(root), "--all"]) == 0
    assert not (root / ".ctstack").exists()
    assert main(["cache", "list", str(root)]) == 0
    assert "no pyramid cache found" in capsys.readouterr().out


def test_cli_without_path_covers_the_shared_dir(tmp_path, monkeypatch, capsys):
    from ctstack.cli import main

    root, files = make_stack(tmp_path)
    shared = tmp_path / "shared"
    monkeypatch.setenv(C.ENV_VAR, str(shared))
    cache = PyramidCache(root, "slice")
    build(cache, key_of(files), reference())
    assert main(["cache", "list"]) == 0
    assert str(cache.location) in capsys.readouterr().out
    assert main(["cache", "clean"]) == 0
    assert cache.entries() == []
    assert main(["cache", "list", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["uint16", "int32", "uint8", "float32"])
def test_direct_chunk_files_match_what_zarr_writes(tmp_path, dtype):
    """Files written directly are byte-identical to zarr's (shards of the layout's chunks, or
    plain chunks), edge chunks padded included."""
    import zarr

    from ctstack.cache.layout import level_layout

    shapes = [(37, 70, 19), (5, 3, 2), (1, 1, 1)]  # partial chunks in z and y
    rng = np.random.default_rng(7)
    levels = [(rng.random(s) * 200).astype(dtype) for s in shapes]
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    with cache.writer(key_of(files, levels=shapes), shapes, dtype) as w:
        write_all(w, levels)
        got = w.commit()
    entry = cache.entry_path(w.key)
    for i, (shape, arr) in enumerate(zip(shapes, levels, strict=True), start=1):
        ref = zarr.create_array(
            store=str(tmp_path / "ref" / str(i)),
            shape=shape,
            chunks=level_layout(shape, np.dtype(dtype).itemsize).chunks,
            shards=(
                level_layout(shape, np.dtype(dtype).itemsize).shard
                if level_layout(shape, np.dtype(dtype).itemsize).sharded
                else None
            ),
            dtype=dtype,
            fill_value=0,
            compressors=None,
            filters=None,
            zarr_format=3,
            config={"write_empty_chunks": True},
        )
        ref[:] = arr
        np.testing.assert_array_equal(got[i - 1][:], arr)
        ours = sorted(p.relative_to(entry / str(i)) for p in (entry / str(i) / "c").rglob("*"))
        theirs = sorted(
            p.relative_to(tmp_path / "ref" / str(i))
            for p in (tmp_path / "ref" / str(i) / "c").rglob("*")
        )
        assert ours == theirs
        for rel in ours:
            if (entry / str(i) / rel).is_file():
                assert (entry / str(i) / rel).read_bytes() == (
                    tmp_path / "ref" / str(i) / rel
                ).read_bytes(), rel


def test_writer_thread_error_is_raised_naming_the_entry(tmp_path, monkeypatch):
    import errno

    def full(level_dir, buf, iz, made=None):
        raise OSError(errno.ENOSPC, "No space left on device", level_dir)

    monkeypatch.setattr(W, "write_files", full)
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    key = key_of(files)
    w = cache.writer(key, LEVELS, "uint16")
    with pytest.raises(CacheError, match="disk full") as info, w:
        write_all(w, reference())
        w.commit()
    assert str(cache.location) in str(info.value)
    assert not w.tmp.exists()
    assert w._thread is None
    assert cache.load(key) is None
    assert cache.entries() == []


def test_abort_with_slabs_queued_stops_the_thread_and_removes_the_folder(tmp_path, monkeypatch):
    import threading

    gate = threading.Event()
    real = W.write_files

    def slow(level_dir, buf, iz, made=None):
        gate.wait(5)
        return real(level_dir, buf, iz, made)

    monkeypatch.setattr(W, "write_files", slow)
    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    w = cache.writer(key_of(files), LEVELS, "uint16")
    ref = reference()
    for z in range(32):  # two slabs of level 1 handed over, the first one stuck in the writer
        w.write_plane(1, z, ref[0][z])
    thread = w._thread
    gate.set()
    w.abort()
    assert not thread.is_alive()
    assert not w.tmp.exists()
