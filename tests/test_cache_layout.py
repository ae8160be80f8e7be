"""Issue 17, step 0: the cache layout that scales (zarr v3 shards of whole planes), the API a
cluster build writes entries with (``ctstack.cache.layout``), and resumable build folders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from ctstack import errors
from ctstack.cache import PyramidCache, clean_location, list_location, sweep_stale, verify_entry
from ctstack.cache import grid as G
from ctstack.cache import housekeeping as H
from ctstack.cache import keys as K
from ctstack.cache.layout import (
    MAX_FILES_PER_LEVEL,
    PARTIAL_MAX_AGE,
    PARTIAL_PREFIX,
    commit_entry,
    create_levels,
    entry_identity,
    level_layout,
    make_partial,
    partial_path,
    write_block,
)
from ctstack.pyramid import level_shapes

from .test_cache import key_of, make_stack, private_user_cache

__all__ = ["private_user_cache"]  # the autouse fixture: never the real user cache dir


def files_under(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def volume(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 250).astype(dtype)


# --------------------------------------------------------------------------- the file budget


@pytest.mark.parametrize(
    ("stack", "level1_chunks", "level1_files"),
    [((8000, 4096, 4096), (4, 2, 2048), 1000), ((10_000, 8192, 8192), (1, 1, 4096), 5000)],
)
def test_the_tables_stacks_stay_within_the_file_budget(stack, level1_chunks, level1_files):
    """Counted from the layout alone (nothing written): every level of the issue's two stacks
    has at most about 10^4 files, where the old layout had 1 and 20 million at level 1."""
    shapes = level_shapes(stack)
    layouts = [level_layout(s, 2) for s in shapes]
    assert layouts[0].chunks == level1_chunks  # the read chunks stay today's
    assert layouts[0].files() == level1_files
    for layout in layouts:
        assert layout.files() <= MAX_FILES_PER_LEVEL
        assert layout.shard[1] >= layout.shape[1] and layout.shard[2] == layout.shape[2]
        assert layout.z_depth % layout.chunks[0] == 0
        old = np.prod([-(-n // c) for n, c in zip(layout.shape, layout.chunks, strict=True)])
        assert layout.files() <= old
    # level 1 files are 32 MiB shards of whole planes (4 of 2048^2, or 1 of 4096^2)
    big = layouts[0]
    _z, y, x = big.shape
    assert big.sharded and big.z_depth * y * x * 2 == 32 << 20
    assert big.file_size(0) == (32 << 20) + big.per_shard[0] * big.per_shard[1] * 16 + 4


def test_a_stack_deeper_than_the_budget_gets_deeper_files():
    layout = level_layout((50_000, 4096, 4096), 2)  # chunks of 1 plane: 50,000 would be files
    assert layout.chunks[0] == 1
    assert layout.files() <= MAX_FILES_PER_LEVEL
    assert layout.z_depth == 8 and layout.per_shard[0] == 8


def test_small_levels_use_plain_chunk_files():
    layout = level_layout((20, 8, 9), 2)
    assert not layout.sharded and layout.shard == layout.chunks == (16, 8, 9)
    assert layout.sizes() == [16 * 8 * 9 * 2] * 2  # the last chunk is stored whole, padded


# --------------------------------------------------------------------------- byte-equal to zarr


def zarr_level(path: Path, layout, dtype, data: np.ndarray, slabs: bool, attrs=None):
    """The same level written by zarr itself (whole, or slab by slab as a build does)."""
    import zarr

    arr = zarr.create_array(
        store=str(path),
        shape=layout.shape,
        chunks=layout.chunks,
        shards=layout.shard if layout.sharded else None,
        dtype=dtype,
        fill_value=0,
        compressors=None,
        filters=None,
        zarr_format=3,
        config={"write_empty_chunks": True},
        attributes=attrs,
    )
    if slabs:
        for z0 in range(0, layout.shape[0], layout.z_depth):
            arr[z0 : z0 + layout.z_depth] = data[z0 : z0 + layout.z_depth]
    else:
        arr[:] = data
    return arr


SHAPES = [(37, 70, 19), (5, 3, 2), (1, 1, 1), (40, 130, 33), (17, 64, 8)]


@pytest.mark.parametrize(
    ("mode", "dtype"),
    [
        *[("one-layer", d) for d in ("uint8", "uint16", "int32", "float64")],
        *[(m, d) for m in ("plain", "deep") for d in ("uint16", "float32")],
    ],
)
def test_files_are_byte_equal_to_zarrs(tmp_path, monkeypatch, dtype, mode):
    """Every file (zarr.json, shards with their index and crc32c, plain chunks) equals what
    zarr writes for the same array, whether zarr writes it whole or slab by slab. ``plain``:
    small chunks count as big enough to be files of their own; ``deep``: the file budget is
    shrunk so shards hold several chunk layers (Morton order, a partial last shard whose
    missing layers are absent from the index)."""
    import zarr

    monkeypatch.setattr(K, "READ_BUDGET", 16384)  # small chunks: several per shard
    deep = mode == "deep"
    if deep:
        monkeypatch.setattr(G, "MAX_FILES_PER_LEVEL", 2)
    if mode == "plain":
        monkeypatch.setattr(G, "MIN_FILE_BYTES", 1)
    ours = tmp_path / "ours"
    ours.mkdir()
    layouts = create_levels(ours, SHAPES, dtype, "k" * 64)
    assert any(lay.sharded for lay in layouts) == (mode != "plain")
    assert mode != "plain" or any(lay.y_files > 1 for lay in layouts)
    assert not deep or any(lay.per_shard[0] > 1 for lay in layouts)
    for i, (shape, layout) in enumerate(zip(SHAPES, layouts, strict=True), start=1):
        data = volume(shape, dtype, seed=i)
        sums = write_block(ours, i, shape, dtype, 0, data)
        assert sorted(sums) == sorted(f"{i}/{k}" for k in layout.file_keys())
        for slabs in (False, True):
            ref = tmp_path / f"ref-{slabs}" / str(i)
            zarr_level(ref, layout, dtype, data, slabs, {"ctstack": {"key": "k" * 64, "level": i}})
            assert files_under(ours / str(i)) == files_under(ref), (shape, slabs)
        np.testing.assert_array_equal(zarr.open_array(str(ours / str(i)), mode="r")[:], data)
        sizes = [(ours / str(i) / k).stat().st_size for k in layout.file_keys()]
        assert sizes == layout.sizes()


def test_blocks_written_in_any_order_and_split_make_the_same_files(tmp_path, monkeypatch):
    monkeypatch.setattr(K, "READ_BUDGET", 4096)
    shape, dtype = (37, 70, 19), "uint16"
    layout = level_layout(shape, 2)
    data = volume(shape, dtype)
    whole, split = tmp_path / "whole", tmp_path / "split"
    for folder in (whole, split):
        folder.mkdir()
        create_levels(folder, [shape], dtype, "k" * 64)
    sums_whole = write_block(whole, 1, shape, dtype, 0, data)
    d = layout.z_depth
    starts = list(range(0, shape[0], 2 * d))[::-1]  # blocks of two files, last block first
    sums_split: dict[str, int] = {}
    for z0 in starts:
        sums_split.update(write_block(split, 1, shape, dtype, z0, data[z0 : z0 + 2 * d]))
    assert sums_split == sums_whole
    assert files_under(split) == files_under(whole)


def test_write_block_refuses_misaligned_blocks_and_never_recreates_a_removed_folder(tmp_path):
    shape, dtype = (40, 16, 18), "uint16"
    folder = tmp_path / "build"
    folder.mkdir()
    (layout,) = create_levels(folder, [shape], dtype, "k" * 64)
    data = volume(shape, dtype)
    d = layout.z_depth
    with pytest.raises(errors.CacheError, match="not aligned"):
        write_block(folder, 1, shape, dtype, 1, data[1 : 1 + d])
    with pytest.raises(errors.CacheError, match="not aligned"):
        write_block(folder, 1, shape, dtype, 0, data[: d + 1])
    with pytest.raises(errors.CacheError, match="expected"):
        write_block(folder, 1, shape, dtype, 0, data[:d].astype("int32"))
    write_block(folder, 1, shape, dtype, 32, data[32:])  # the last, shorter block is fine
    import shutil

    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError):
        write_block(folder, 1, shape, dtype, 0, data[:d])
    assert not folder.exists()


# --------------------------------------------------------------------------- commit and open


LEVELS = [(40, 16, 18), (20, 8, 9)]


def cluster_like_build(cache: PyramidCache, key: str, levels, tmp: Path) -> dict[str, int]:
    """What the cluster build does: metadata once, then blocks in any order, sums merged."""
    create_levels(tmp, LEVELS, "uint16", key)
    sums: dict[str, int] = {}
    for i, arr in reversed(list(enumerate(levels, start=1))):
        d = level_layout(arr.shape, 2).z_depth
        for z0 in reversed(range(0, arr.shape[0], d)):
            sums.update(write_block(tmp, i, arr.shape, "uint16", z0, arr[z0 : z0 + d]))
    return sums


def reference():
    return [volume(s, "uint16", seed=n) for n, s in enumerate(LEVELS)]


def test_commit_entry_of_blocks_written_elsewhere_equals_the_local_writer(tmp_path):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    ref = reference()
    local = PyramidCache(root, "slice", cache_dir=tmp_path / "local")
    with local.writer(key, LEVELS, "uint16") as w:
        for i, arr in enumerate(ref, start=1):
            for z in range(arr.shape[0]):
                w.write_plane(i, z, arr[z])
        w.commit()
    cluster = PyramidCache(root, "slice", cache_dir=tmp_path / "cluster")
    cluster.location.mkdir(parents=True)
    tmp = make_partial(cluster.location, key)
    sums = cluster_like_build(cluster, key, ref, tmp)
    (tmp / "ledger.json").write_text("{}")
    done = commit_entry(
        cluster, tmp, key, LEVELS, "uint16", None, sums, extra={"bad": []}, drop=["ledger.json"]
    )
    assert done.won and done.entry == cluster.entry_path(key) and not tmp.exists()
    for got, want in zip(done.levels, ref, strict=True):
        np.testing.assert_array_equal(got[:], want)
    a, b = files_under(local.entry_path(key)), files_under(cluster.entry_path(key))
    assert set(a) == set(b)
    for name in a:
        if name != "manifest.json":
            assert a[name] == b[name], name
    ma = json.loads(a["manifest.json"])
    mb = json.loads(b["manifest.json"])
    for field in ("key", "levels", "chunks", "shards", "files", "dtype", "version", "source"):
        assert ma[field] == mb[field], field
    assert mb["files"] == [level_layout(s, 2).sizes() for s in LEVELS]
    assert verify_entry(cluster.entry_path(key)) == []
    assert cluster.load(key) is not None

    # a second commit of the same key loses: its folder goes, the first entry stays
    again = make_partial(cluster.location, key)
    identity = entry_identity(cluster.entry_path(key))
    sums = cluster_like_build(cluster, key, ref, again)
    lost = commit_entry(cluster, again, key, LEVELS, "uint16", None, sums)
    assert not lost.won and not again.exists()
    assert entry_identity(cluster.entry_path(key)) == identity
    # a forced rebuild replaces exactly the entry seen when it started
    forced = make_partial(cluster.location, key)
    sums = cluster_like_build(cluster, key, ref, forced)
    won = commit_entry(
        cluster, forced, key, LEVELS, "uint16", None, sums, replace=True, replaces=identity
    )
    assert won.won and entry_identity(cluster.entry_path(key)) != identity


def test_commit_entry_refuses_a_missing_or_short_file(tmp_path):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    cache = PyramidCache(root, "slice")
    cache.location.mkdir(parents=True, exist_ok=True)
    tmp = make_partial(cache.location, key)
    sums = cluster_like_build(cache, key, reference(), tmp)
    missing = dict(sums)
    missing.pop("1/c/1/0/0")
    with pytest.raises(errors.CacheError, match="incomplete"):
        commit_entry(cache, tmp, key, LEVELS, "uint16", None, missing)
    with open(tmp / "1" / "c" / "1" / "0" / "0", "r+b") as f:
        f.truncate(10)
    with pytest.raises(errors.CacheError, match="expected"):
        commit_entry(cache, tmp, key, LEVELS, "uint16", None, sums)
    assert not cache.entry_path(key).exists()


def committed(tmp_path):
    root, files = make_stack(tmp_path)
    key = key_of(files)
    cache = PyramidCache(root, "slice")
    ref = reference()
    with cache.writer(key, LEVELS, "uint16") as w:
        for i, arr in enumerate(ref, start=1):
            for z in range(arr.shape[0]):
                w.write_plane(i, z, arr[z])
        w.commit()
    return cache, key, ref


def test_opening_stats_each_file_once_and_reads_no_pixel(tmp_path, monkeypatch):
    cache, key, _ref = committed(tmp_path)
    entry = cache.entry_path(key)
    seen: list[str] = []
    real_stat = os.stat

    def counting(path, *args, **kwargs):
        if "/c/" in os.fspath(path):
            seen.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    assert cache.load(key) is not None
    expected = sum(level_layout(s, 2).files() for s in LEVELS)
    assert len(seen) == expected == len(set(seen))
    assert all(p.startswith(str(entry)) for p in seen)


def test_a_short_file_refuses_the_entry_and_a_missing_one_while_open_is_cachegone(tmp_path):
    cache, key, ref = committed(tmp_path)
    entry = cache.entry_path(key)
    levels = cache.load(key)
    assert levels is not None
    shard = entry / "1" / "c" / "0" / "0" / "0"
    data = shard.read_bytes()
    shard.unlink()
    with pytest.raises(errors.CacheGone, match="gone"):
        levels[0][3]
    shard.write_bytes(data[:-1])
    assert cache.load(key) is None
    shard.write_bytes(data)
    np.testing.assert_array_equal(cache.load(key)[0][:], ref[0])


def test_verify_checks_every_file(tmp_path):
    cache, key, _ref = committed(tmp_path)
    entry = cache.entry_path(key)
    assert verify_entry(entry) == []
    sums = json.loads((entry / "checksums.json").read_text())["chunks"]
    assert sorted(sums) == sorted(
        f"{i}/{k}" for i, s in enumerate(LEVELS, start=1) for k in level_layout(s, 2).file_keys()
    )
    shard = entry / "2" / "c" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[5] ^= 0xFF
    shard.write_bytes(bytes(raw))
    assert verify_entry(entry) == ["2/c/0/0/0: checksum differs (corrupted)"]


# --------------------------------------------------------------------------- resumable builds


def age(folder: Path, seconds: float) -> None:
    old = time.time() - seconds
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (old, old), follow_symlinks=False)


def test_a_partial_build_outlives_its_process_until_clean_or_the_age_limit(tmp_path):
    location = tmp_path / "cache"
    location.mkdir()
    key = "a" * 64
    part = make_partial(location, key)
    assert part == partial_path(location, key) == location / f"{PARTIAL_PREFIX}{key}"
    assert H.is_owned(part)
    marker = json.loads((part / K.TEMP_MARKER).read_text())
    marker["pid"] = 2**22 + 12345  # a writer long dead: the pid sweep must still leave it
    (part / K.TEMP_MARKER).write_text(json.dumps(marker))
    (part / "ledger.json").write_text("{}")
    assert make_partial(location, key) == part  # found again by a rerun
    assert sweep_stale(location) == 0 and part.exists()
    (item,) = list_location(location)
    assert item["kind"] == "partial" and item["key"] == key and not item["stale"]
    age(part, PARTIAL_MAX_AGE - 3600)
    assert sweep_stale(location) == 0 and part.exists()
    age(part, PARTIAL_MAX_AGE + 3600)
    assert list_location(location)[0]["stale"]
    assert sweep_stale(location) > 0 and not part.exists()
    part = make_partial(location, key)
    assert clean_location(location) > 0 and not part.exists()


def test_a_partial_named_folder_without_the_mark_is_left_alone(tmp_path):
    location = tmp_path / "cache"
    (location / f"{PARTIAL_PREFIX}{'b' * 64}").mkdir(parents=True)
    (location / f"{PARTIAL_PREFIX}{'b' * 64}" / "data").write_text("theirs")
    age(location / f"{PARTIAL_PREFIX}{'b' * 64}", PARTIAL_MAX_AGE * 2)
    assert list_location(location) == []
    clean_location(location)
    sweep_stale(location)
    assert (location / f"{PARTIAL_PREFIX}{'b' * 64}" / "data").read_text() == "theirs"
    with pytest.raises(errors.CacheError, match="not ctstack's"):
        make_partial(location, "b" * 64)


def test_cli_lists_and_cleans_a_partial_build(tmp_path, capsys):
    from ctstack.cli import main

    root, files = make_stack(tmp_path)
    cache = PyramidCache(root, "slice")
    cache.location.mkdir(parents=True, exist_ok=True)
    part = make_partial(cache.location, key_of(files))
    (part / "ledger.json").write_text("{}")
    assert main(["cache", "list", str(root)]) == 0
    out = capsys.readouterr().out
    assert part.name in out and "partial build (resumable" in out
    assert main(["cache", "clean", str(root)]) == 0
    assert not part.exists()


def test_a_sharded_pyramid_builds_reopens_and_reports_a_missing_shard(tmp_path, monkeypatch):
    """End to end with small chunks (level 1 sharded, some levels with deep shards): the
    build equals the reference pyramid, a reopen reuses it, a removed shard is CacheGone."""
    import ctstack

    from .test_pyramid import make_stack_folder, reference_pyramid

    monkeypatch.setattr(K, "READ_BUDGET", 8192)
    monkeypatch.setattr(G, "MAX_FILES_PER_LEVEL", 3)
    folder, volume = make_stack_folder(tmp_path, shape=(45, 66, 50))
    want = reference_pyramid(volume, 8)
    stack = ctstack.open_stack(folder)
    levels = stack.build_pyramid(max_size=8)
    layouts = [level_layout(a.shape, 2) for a in levels[1:]]
    assert layouts[0].sharded and any(lay.per_shard[0] > 1 for lay in layouts)
    for got, exp in zip(levels, want, strict=True):
        np.testing.assert_array_equal(np.asarray(got), exp)
    again = ctstack.open_stack(folder)
    assert again.build_pyramid(max_size=8) and not again.pyramid.built
    entry = again.pyramid.location
    assert entry is not None
    shard = next(entry.glob("*.pyramid/1/c/0/0/0"))
    shard.unlink()
    with pytest.raises(errors.CacheGone):
        np.asarray(again.levels[1][:2])


# --------------------------------------------------------------------------- the sharded read path


def _selections(shape):
    z, y, x = shape
    return [
        0,
        z - 1,
        -1,
        (slice(None), y // 2, slice(None)),
        (slice(None), 0),
        (slice(None), y - 1, slice(1, max(2, x - 1))),
        (slice(None), slice(None), x // 2),
        (slice(1, z - 1), slice(2, y - 3), slice(1, x)),
        (slice(z // 3, z // 3 + 1),),
        (slice(3, 3),),
        (z // 2, y // 3, x // 4),
        slice(None),
        (slice(-5, None), slice(None, -2)),
        (slice(0, z * 2), slice(y - 1, y + 5)),
    ]


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
def test_sharded_levels_read_the_same_arrays_as_zarr(tmp_path, monkeypatch, dtype, deep):
    """``open_level`` of a sharded level reads basic selections itself (``ShardedLevel``,
    preads of the inner chunks, the shard index from the layout): the same arrays as zarr's
    own reader and the data written, for planes, xz-planes, blocks, the whole level, scalars;
    other selections go to zarr."""
    import zarr

    from ctstack.cache.store import EntryStore, ShardedLevel, open_level

    monkeypatch.setattr(K, "READ_BUDGET", 4096)
    monkeypatch.setattr(G, "MAX_FILES_PER_LEVEL", 2 if deep else 10_000)
    shapes = [(37, 70, 19), (40, 130, 33), (17, 64, 8)]
    folder = tmp_path / "e"
    folder.mkdir()
    layouts = create_levels(folder, shapes, dtype, "k" * 64)
    for i, (shape, layout) in enumerate(zip(shapes, layouts, strict=True), start=1):
        assert layout.sharded
        assert not deep or layout.per_shard[0] > 1 or layout.z_files == 1
        data = volume(shape, dtype, seed=i)
        write_block(folder, i, shape, dtype, 0, data)
        ours = open_level(folder, i)
        assert isinstance(ours, ShardedLevel) and isinstance(ours, zarr.Array)
        assert isinstance(ours.store, EntryStore)
        plain = zarr.open_array(str(folder / str(i)), mode="r")
        for sel in _selections(shape):
            got = ours[sel]
            np.testing.assert_array_equal(got, plain[sel], err_msg=str(sel))
            np.testing.assert_array_equal(got, data[sel], err_msg=str(sel))
            assert np.asarray(got).dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ours.oindex[[0, 2], :, [1]], data[[0, 2]][:, :, [1]])
        np.testing.assert_array_equal(ours[::2, 1], data[::2, 1])  # a step: zarr's path
        np.testing.assert_array_equal(np.asarray(ours), data)
        # zarr's own path through the EntryStore (index served from the layout) agrees too
        store = ours.store
        np.testing.assert_array_equal(zarr.Array.__getitem__(ours, (slice(None), 3)), data[:, 3])
        assert store.layout == layout


def test_sharded_reads_are_thread_safe_and_a_missing_shard_is_cachegone(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    from ctstack.cache.store import open_level

    monkeypatch.setattr(K, "READ_BUDGET", 4096)
    shape, dtype = (40, 130, 33), "uint16"
    folder = tmp_path / "e"
    folder.mkdir()
    (layout,) = create_levels(folder, [shape], dtype, "k" * 64)
    assert layout.sharded and layout.z_files > 2
    data = volume(shape, dtype)
    write_block(folder, 1, shape, dtype, 0, data)
    arr = open_level(folder, 1)

    def read(k: int) -> bool:
        y = k % shape[1]
        return bool(
            np.array_equal(arr[:, y], data[:, y]) and np.array_equal(arr[k % 40], data[k % 40])
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, range(200)))
    (folder / "1" / layout.file_key(1)).unlink()
    np.testing.assert_array_equal(arr[0], data[0])  # other shards still read
    for sel in (1 * layout.z_depth, (slice(None), 5), slice(None), (slice(None), 5, 3)):
        with pytest.raises(errors.CacheGone, match="gone"):
            arr[sel]
    with pytest.raises(errors.CacheGone):
        arr[layout.z_depth :: 2, 5]  # zarr: the index comes from the layout, the chunk read fails
    with pytest.raises(errors.CacheGone):
        zarr.Array.__getitem__(arr, (slice(None), 5))


def _plain_level(tmp_path, monkeypatch, shape, dtype, seed=0):
    """A plain-chunk level (small chunks, so edge chunks everywhere) written and opened."""
    from ctstack.cache.store import open_level

    monkeypatch.setattr(K, "READ_BUDGET", 4096)
    monkeypatch.setattr(G, "MIN_FILE_BYTES", 1)
    monkeypatch.setattr(G, "MAX_FILES_PER_LEVEL", 100_000)
    folder = tmp_path / f"e{seed}"
    folder.mkdir()
    (layout,) = create_levels(folder, [shape], dtype, "k" * 64)
    assert not layout.sharded
    data = volume(shape, dtype, seed=seed)
    write_block(folder, 1, shape, dtype, 0, data)
    return folder, layout, data, open_level(folder, 1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(37, 70, 19), (40, 130, 33), (17, 64, 8), (1, 5, 3)])
def test_plain_levels_read_the_same_arrays_as_zarr(tmp_path, monkeypatch, dtype, shape):
    """``open_level`` of a plain-chunk level reads basic selections itself (``PlainLevel``,
    preads of the chunk files): the same arrays as zarr's own reader and the data written, for
    planes, xz-planes, blocks across edge chunks, the whole level, scalars; other selections
    go to zarr."""
    import zarr

    from ctstack.cache.store import EntryStore, PlainLevel

    folder, layout, data, ours = _plain_level(tmp_path, monkeypatch, shape, dtype)
    z, y, x = shape
    assert shape[0] == 1 or layout.z_files > 1 or layout.y_files > 1
    assert isinstance(ours, PlainLevel) and isinstance(ours, zarr.Array)
    assert isinstance(ours.store, EntryStore) and ours.store.plain == layout
    theirs = zarr.open_array(str(folder / "1"), mode="r")
    cz, cy, _ = layout.chunks
    sels = [] if z < 3 or y < 6 else _selections(shape)
    sels += [
        (slice(cz - 1, cz + 1), slice(cy - 1, cy + 1)),  # across chunk corners
        (slice(z - 1, z), slice(y - 1, y), slice(x - 1, x)),  # the last voxel, edge chunk
        (slice(None), slice(max(0, y - cy - 1), y)),
        (z - 1, slice(None), slice(0, 1)),
        (slice(None, None, 1), -1, -1),
        (np.int64(0), np.int32(y - 1)),
    ]
    for sel in sels:
        got = ours[sel]
        np.testing.assert_array_equal(got, theirs[sel], err_msg=str(sel))
        np.testing.assert_array_equal(got, data[sel], err_msg=str(sel))
        assert np.asarray(got).dtype == np.dtype(dtype)
        assert np.shape(got) == np.shape(data[sel]), sel
    np.testing.assert_array_equal(ours.oindex[[0], :, [0]], data[[0]][:, :, [0]])
    np.testing.assert_array_equal(ours[::2, 0], data[::2, 0])  # a step: zarr's path
    np.testing.assert_array_equal(np.asarray(ours), data)
    np.testing.assert_array_equal(zarr.Array.__getitem__(ours, (slice(None), 0)), data[:, 0])


def test_plain_reads_are_thread_safe_and_a_missing_chunk_is_cachegone(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    shape = (40, 130, 33)
    folder, layout, data, arr = _plain_level(tmp_path, monkeypatch, shape, "uint16")
    assert layout.z_files > 2 and layout.y_files > 2

    def read(k: int) -> bool:
        y = k % shape[1]
        return bool(
            np.array_equal(arr[:, y], data[:, y])
            and np.array_equal(arr[k % 40], data[k % 40])
            and np.array_equal(
                arr[k % 7 : k % 7 + 20, 3:90, 1:], data[k % 7 : k % 7 + 20, 3:90, 1:]
            )
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, range(200)))
    cz, cy, _ = layout.chunks
    (folder / "1" / layout.file_key(1, 1)).unlink()
    np.testing.assert_array_equal(arr[0], data[0])  # other chunks still read
    np.testing.assert_array_equal(arr[cz, 2 * cy :], data[cz, 2 * cy :])
    for sel in (cz, (slice(None), cy), slice(None), (slice(None), cy, 3), (cz, cy, 0)):
        with pytest.raises(errors.CacheGone, match="gone"):
            arr[sel]
    with pytest.raises(errors.CacheGone):
        arr[cz::2, cy]  # a step: zarr's path through the EntryStore
    with pytest.raises(errors.CacheGone):
        zarr.Array.__getitem__(arr, (slice(None), cy))
    # a truncated chunk file is gone too (the entry was replaced under us)
    path = folder / "1" / layout.file_key(2, 0)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(errors.CacheGone):
        arr[2 * cz + cz - 1]
