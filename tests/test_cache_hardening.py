"""Issue 13, the pyramid cache: races with --rebuild, entries vanishing while open, bad slices
that become readable, a full disk, bad max_size, levels of other max_size values, clean
failures, where a reused entry was, old cache versions."""

from __future__ import annotations

import errno
import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack import errors
from ctstack.cache import PyramidCache, clean_location
from ctstack.cache import commit as CM
from ctstack.cache import writer as W
from ctstack.pyramid import cached_levels
from tests.private_mount import needs_private_mount, read_only, run_child, tmpfs

from .test_cache import LEVELS, key_of, make_stack, private_user_cache, reference, write_all
from .test_pyramid import make_stack_folder, reference_pyramid

__all__ = ["private_user_cache"]  # the autouse fixture: never the real user cache dir

GONE = getattr(errors, "CacheGone", errors.CacheError)  # CacheGone is new in issue 13


def started(cache: PyramidCache, key: str, ref: list[np.ndarray]) -> W.CacheWriter:
    """A writer that has written every plane but not committed."""
    w = cache.writer(key, LEVELS, "uint16")
    write_all(w, ref)
    return w


def reads_as(levels, ref) -> bool:
    """Whether zarr levels read back equal to ``ref`` (False when the entry is gone)."""
    try:
        return all(np.array_equal(np.asarray(a[:]), b) for a, b in zip(levels, ref, strict=True))
    except errors.CacheError:
        return False


def entry_names(cache: PyramidCache) -> list[str]:
    return [e["path"].name for e in cache.entries() if e["kind"] == "entry"]


# --------------------------------------------------------------------------- 1. --rebuild races


def test_rebuild_yields_to_an_entry_committed_while_it_built(tmp_path):
    root, files = make_stack(tmp_path)
    cache, key, ref = PyramidCache(root, "slice"), key_of(files), reference()
    rebuild = started(cache, key, ref)  # no entry when it starts
    plain = started(cache, key, ref)
    plain_levels = plain.commit()
    rebuild_levels = rebuild.commit(replace=True)
    assert plain.won is True and rebuild.won is False
    assert reads_as(plain_levels, ref) and reads_as(rebuild_levels, ref)
    assert len(entry_names(cache)) == 1 and not list(root.glob(".ctstack/.t*"))


def test_rebuild_replaces_the_entry_committed_before_it_started(tmp_path):
    root, files = make_stack(tmp_path)
    cache, key, ref = PyramidCache(root, "slice"), key_of(files), reference()
    old = started(cache, key, ref).commit()
    rebuild = started(cache, key, ref)
    new = rebuild.commit(replace=True)
    assert rebuild.won is True and reads_as(new, ref)
    assert reads_as(old, ref)  # the name now holds the new entry: same key, same pixels
    assert len(entry_names(cache)) == 1 and not list(root.glob(".ctstack/.t*"))


# --------------------------------------------------------------------------- 4. gone while open


def test_levels_of_a_cleaned_entry_raise_cache_gone_not_zeros(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    stack = ctstack.open_stack(folder)
    levels = stack.build_pyramid(max_size=8)
    np.testing.assert_array_equal(np.asarray(levels[1]), reference_pyramid(volume, 8)[1])
    clean_location(folder / ".ctstack")  # another process cleans the cache
    with pytest.raises(GONE, match="gone") as info:
        np.asarray(levels[1])  # the dask array napari and exports read
    assert ".pyramid" in str(info.value)
    with pytest.raises(GONE):
        np.asarray(stack.pyramid.levels[2][0])  # one plane of the other level too


def test_two_rebuilds_started_together_keep_the_first_commit(tmp_path):
    root, files = make_stack(tmp_path)
    cache, key, ref = PyramidCache(root, "slice"), key_of(files), reference()
    started(cache, key, ref).commit()
    first, second = started(cache, key, ref), started(cache, key, ref)
    first_levels = first.commit(replace=True)
    second_levels = second.commit(replace=True)
    assert first.won is True and second.won is False
    assert reads_as(first_levels, ref) and reads_as(second_levels, ref)
    assert len(entry_names(cache)) == 1


def test_plain_commit_between_the_rebuilds_removal_and_rename_wins(tmp_path, monkeypatch):
    """Two plain builders and a rebuild: one plain builder commits in the rebuild's window
    between moving the old entry aside and renaming its own into place."""
    root, files = make_stack(tmp_path)
    cache, key, ref = PyramidCache(root, "slice"), key_of(files), reference()
    started(cache, key, ref).commit()
    cache.entry_path(key).rename(tmp_path / "aside")  # a clean: the plain builders build
    plain_a, plain_b = started(cache, key, ref), started(cache, key, ref)
    (tmp_path / "aside").rename(cache.entry_path(key))  # committed before the rebuild starts
    rebuild = started(cache, key, ref)
    done: dict[str, list] = {}
    real_remove = CM.remove_tree

    def remove_then_commit(path):
        freed = real_remove(path)
        if not done:
            done["a"] = plain_a.commit()  # the name is free: this plain build takes it
        return freed

    monkeypatch.setattr(CM, "remove_tree", remove_then_commit)
    done["rebuild"] = rebuild.commit(replace=True)
    done["b"] = plain_b.commit()
    assert (plain_a.won, rebuild.won, plain_b.won) == (True, False, False)
    assert all(reads_as(levels, ref) for levels in done.values()), done.keys()
    assert len(entry_names(cache)) == 1


def test_forced_rebuild_during_a_plain_build_through_the_api(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    expected = reference_pyramid(volume, 8)
    got = {}

    def progress(done, total):  # the plain build commits while the rebuild is reading
        if done == total - 2 and not got:
            got["plain"] = ctstack.open_stack(folder).build_pyramid(max_size=8)

    got["rebuild"] = ctstack.open_stack(folder).build_pyramid(
        max_size=8, rebuild=True, progress=progress
    )
    for name, levels in got.items():
        for k, (a, b) in enumerate(zip(levels, expected, strict=True)):
            np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"{name} level {k}")
    assert cached_levels(ctstack.open_stack(folder), max_size=8) is not None


# --------------------------------------------------------------------------- 5. bad slices


def _break_keeping_size(path: Path) -> bytes:
    """Make a TIFF unreadable without changing its size; returns the good bytes."""
    good = path.read_bytes()
    path.write_bytes(b"\0" * len(good))
    return good


def _restore_keeping_mtime(path: Path, good: bytes) -> None:
    st = path.stat()
    path.write_bytes(good)  # what chmod 644 does to a once unreadable slice: only ctime moves
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_bad_slice_that_becomes_readable_is_not_served_from_the_cache(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    victim = folder / "s_0005.tif"
    good = _break_keeping_size(victim)
    with pytest.warns(UserWarning):
        stack = ctstack.open_stack(folder)
        stack.build_pyramid(max_size=8)
    assert [b.z for b in stack.bad_slices] == [5]
    _restore_keeping_mtime(victim, good)
    fresh = ctstack.open_stack(folder)
    assert cached_levels(fresh, max_size=8) is None  # the record no longer holds
    levels = fresh.build_pyramid(max_size=8)
    for a, b in zip(levels, reference_pyramid(volume, 8), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    (entry,) = (folder / ".ctstack").glob("*.pyramid")
    assert json.loads((entry / "manifest.json").read_text())["bad"] == []


def test_unchanged_bad_slices_and_a_moved_folder_keep_the_cache(tmp_path):
    folder, _volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    _break_keeping_size(folder / "s_0005.tif")
    with pytest.warns(UserWarning):
        ctstack.open_stack(folder).build_pyramid(max_size=8)
        (entry,) = (folder / ".ctstack").glob("*.pyramid")
        assert [b[0] for b in json.loads((entry / "manifest.json").read_text())["bad"]] == [
            "s_0005.tif"
        ]
        assert cached_levels(ctstack.open_stack(folder), max_size=8) is not None
        moved = shutil.move(str(folder), str(tmp_path / "moved"))
        assert cached_levels(ctstack.open_stack(moved), max_size=8) is not None


# --------------------------------------------------------------------------- 2. full disk


def _no_room(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["zarr metadata", "manifest"])
def test_full_disk_is_one_clean_error_and_leaves_nothing(tmp_path, monkeypatch, where):
    import zarr

    folder, _volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    shared = tmp_path / "cachedir"
    if where == "zarr metadata":  # no room at all: the first level's zarr.json fails
        monkeypatch.setattr(zarr, "create_array", _no_room)
    else:  # no room for the manifest: the .part file is made, then the write fails

        def part_then_full(tmp, manifest, checksums):
            (tmp / "manifest.json.part").write_text("{")
            _no_room()

        monkeypatch.setattr(CM, "write_manifest", part_then_full)
    with pytest.raises(errors.CacheError, match="disk full") as info:
        ctstack.open_stack(folder).build_pyramid(max_size=8, cache_dir=shared)
    assert str(shared) in str(info.value)
    assert not shared.exists() or list(shared.rglob("*")) == []
    assert not shared.exists() or list(shared.iterdir()) == []


REAL_FULL = textwrap.dedent(
    """
    import json, os, sys
    import ctstack
    src, disk, fill = sys.argv[1:4]
    if fill == "full":  # no room at all
        with open(os.path.join(disk, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"x" * 65536)
            except OSError:
                pass
    try:
        ctstack.open_stack(src).build_pyramid(max_size=8, cache_dir=os.path.join(disk, "c"))
        message = "no error"
    except ctstack.errors.CTStackError as exc:
        message = str(exc)
    print(json.dumps([message, sorted(os.listdir(disk))]))
    """
)


@needs_private_mount
@pytest.mark.parametrize("fill", ["full", "fills up"])
def test_real_full_disk_during_a_build_leaves_nothing(tmp_path, fill):
    folder, _volume = make_stack_folder(tmp_path, shape=(40, 512, 512))  # levels: ~2.6 MB
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = run_child(tmp_path, tmpfs(disk, "1m"), REAL_FULL, folder, disk, fill)
    assert proc.returncode == 0, proc.stderr
    message, listing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "disk full" in message and str(disk / "c") in message, message
    assert listing == (["filler"] if fill == "full" else []), listing


# --------------------------------------------------------------------------- 7. max_size


@pytest.mark.parametrize("bad", [0, -3])
def test_max_size_below_one_is_a_clear_error(tmp_path, capsys, bad):
    from ctstack import cli

    folder, _volume = make_stack_folder(tmp_path, shape=(8, 16, 16))
    with pytest.raises(errors.InvalidArgument, match=f"max_size must be at least 1.*got {bad}"):
        ctstack.open_stack(folder).build_pyramid(max_size=bad)
    with pytest.raises(errors.InvalidArgument):
        cached_levels(ctstack.open_stack(folder), max_size=bad)
    capsys.readouterr()
    assert cli.main(["pyramid", str(folder), "--max-size", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "max_size must be at least 1" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (folder / ".ctstack").exists()


# --------------------------------------------------------------------------- 8. --level k


def test_export_level_uses_a_pyramid_built_with_another_max_size(tmp_path, capsys):
    from ctstack import cli

    folder, volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    assert cli.main(["pyramid", str(folder), "--max-size", "4"]) == 0
    entries = sorted((folder / ".ctstack").glob("*.pyramid"))
    out = tmp_path / "level3.tif"
    capsys.readouterr()
    assert cli.main(["export", str(folder), str(out), "--level", "3", "-f", "tiff-stack"]) == 0, (
        capsys.readouterr().err
    )
    np.testing.assert_array_equal(tifffile.imread(out), reference_pyramid(volume, 4)[3])
    assert sorted((folder / ".ctstack").glob("*.pyramid")) == entries  # nothing was built


def test_missing_level_names_the_command_that_makes_it(tmp_path, capsys):
    from ctstack import cli

    folder, _volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    capsys.readouterr()
    out = tmp_path / "level3.tif"
    assert cli.main(["export", str(folder), str(out), "--level", "3", "-f", "tiff"]) == 2
    err = capsys.readouterr().err
    assert f"ctstack pyramid {folder} --max-size 4" in err, err
    assert "build_pyramid" not in err
    assert cli.main(["export", str(folder), str(out), "--level", "9", "-f", "tiff"]) == 2
    assert "--max-size" not in capsys.readouterr().err  # level 9 cannot exist


# --------------------------------------------------------------------------- 3. cache clean


def _two_cached_stacks(tmp_path: Path, shared: Path) -> list[Path]:
    folders = []
    for name in ("a", "b"):
        folder, _ = make_stack_folder(tmp_path / name, shape=(24, 32, 32))
        ctstack.open_stack(folder).build_pyramid(max_size=8, cache_dir=shared)
        folders.append(folder)
    return sorted(p for p in shared.iterdir())


def test_clean_goes_on_after_a_location_it_cannot_clean(tmp_path, monkeypatch, capsys):
    from ctstack import cli
    from ctstack.cache import housekeeping as H

    shared = tmp_path / "shared"
    first, second = _two_cached_stacks(tmp_path, shared)
    real_rename = os.rename

    def refuse_in_first(src, dst):
        if Path(src).parent == first:
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(H.os, "rename", refuse_in_first)
    capsys.readouterr()
    assert cli.main(["cache", "clean", "--cache-dir", str(shared)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(first) in err and "Permission denied" in err, err
    assert "Traceback" not in err
    assert list(first.glob("*.pyramid")) and not second.exists()  # the other one was cleaned


REAL_READ_ONLY = textwrap.dedent(
    """
    import sys
    from ctstack import cli
    sys.exit(cli.main(["cache", "clean", "--cache-dir", sys.argv[1]]))
    """
)


@needs_private_mount
def test_clean_of_a_really_read_only_location(tmp_path):
    shared = tmp_path / "shared"
    first, second = _two_cached_stacks(tmp_path, shared)
    proc = run_child(tmp_path, read_only(first), REAL_READ_ONLY, shared, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(first) in proc.stderr, proc.stderr
    assert list(first.glob("*.pyramid")) and not second.exists()


# --------------------------------------------------------------------------- 9. where it was


def test_read_only_stack_says_where_the_reused_entry_really_is(tmp_path, monkeypatch, capsys):
    from ctstack import cli
    from ctstack import locations as L

    folder, _volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    assert cli.main(["pyramid", str(folder), "--max-size", "8"]) == 0
    monkeypatch.setattr(L, "is_writable", lambda folder: False)  # the stack is now read-only
    capsys.readouterr()
    assert cli.main(["pyramid", str(folder), "--max-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "reused 2 level(s)" in out and f"at {folder / '.ctstack'}\n" in out, out
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=8)
    assert stack.cache_location == folder / ".ctstack"


# --------------------------------------------------------------------------- 10. old versions


def test_list_flags_entries_of_an_older_version_and_clean_removes_them(tmp_path, capsys):
    from ctstack import cli

    folder, _volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    ctstack.open_stack(folder).build_pyramid(max_size=8)
    (entry,) = (folder / ".ctstack").glob("*.pyramid")
    manifest = json.loads((entry / "manifest.json").read_text())
    old = {k: v for k, v in manifest.items() if k not in ("bad", "build", "source")}
    old["version"] = 1  # what a 0.1 build wrote
    (entry / "manifest.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert cli.main(["cache", "list", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "OLD FORMAT (version 1" in out and "INCOMPLETE" not in out, out
    assert cli.main(["cache", "clean", str(folder)]) == 0
    assert not entry.exists()


# --------------------------------------------------------------------------- 6. checksums


def test_verify_finds_a_same_size_corrupted_chunk_and_fix_removes_it(tmp_path, capsys):
    from ctstack import cli

    folder, volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    ctstack.open_stack(folder).build_pyramid(max_size=8)
    (entry,) = (folder / ".ctstack").glob("*.pyramid")
    capsys.readouterr()
    assert cli.main(["cache", "verify", str(folder)]) == 0
    assert "1 entry checked, 0 bad" in capsys.readouterr().out
    chunk = entry / "1" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF  # same size: the default open cannot tell
    chunk.write_bytes(bytes(data))
    assert cached_levels(ctstack.open_stack(folder), max_size=8) is not None
    assert cli.main(["cache", "verify", str(folder)]) == 2
    out = capsys.readouterr().out
    assert f"BAD  {entry}: 1/c/0/0/0: checksum differs" in out, out
    assert entry.exists()  # only reported
    assert cli.main(["cache", "verify", "--fix", str(folder)]) == 2
    assert not entry.exists() and "removed" in capsys.readouterr().out
    levels = ctstack.open_stack(folder).build_pyramid(max_size=8)
    np.testing.assert_array_equal(np.asarray(levels[1]), reference_pyramid(volume, 8)[1])


def test_opening_reads_no_chunk_and_no_checksum_file(tmp_path, monkeypatch):
    import builtins

    folder, _volume = make_stack_folder(tmp_path, shape=(24, 32, 32))
    ctstack.open_stack(folder).build_pyramid(max_size=8)
    stack = ctstack.open_stack(folder)
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    import io

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    assert cached_levels(stack, max_size=8) is not None
    assert any(p.endswith("manifest.json") for p in opened), opened  # the spy sees reads
    assert not [p for p in opened if "checksums" in p or "/c/" in p], opened
