"""The pyramid builder: exact levels, the cache that is never stale, interruption and cancel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack.errors import Cancelled
from ctstack.pyramid import cached_levels, level_shapes

from .conftest import REAL_SCANS, real_scan


def reference_level(volume: np.ndarray) -> np.ndarray:
    """The level arithmetic of docs/architecture.md ("The pyramid, exactly") with numpy reshapes
    (sums in int64/float64, padded edges)."""
    pad = [(0, n % 2) for n in volume.shape]
    wide = np.float64 if volume.dtype.kind == "f" else np.int64
    padded = np.pad(volume.astype(wide), pad)
    counts = np.pad(np.ones(volume.shape, np.int64), pad)
    shape6 = (padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2)
    total = padded.reshape(shape6).sum(axis=(1, 3, 5))
    n = counts.reshape(shape6).sum(axis=(1, 3, 5))
    if volume.dtype.kind == "f":  # test data holds small integers: any summation order is exact
        return (total / n).astype(volume.dtype)
    return np.floor_divide(total + n // 2, n).astype(volume.dtype)


def reference_pyramid(volume: np.ndarray, max_size: int) -> list[np.ndarray]:
    levels = [volume]
    while max(levels[-1].shape) > max_size:
        levels.append(reference_level(levels[-1]))
    return levels


def write_slices(folder: Path, volume: np.ndarray, prefix: str = "s_", skip=()) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z, plane in enumerate(volume):
        if z in skip:
            continue
        path = folder / f"{prefix}{z:04d}.tif"
        tifffile.imwrite(path, plane)
        paths.append(path)
    return paths


def plain_read(folder: Path) -> np.ndarray:
    return np.stack([tifffile.imread(p) for p in sorted(folder.glob("slice_*.tif"))])


class Recorder:
    """A progress callback that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def assert_levels_equal(levels, expected) -> None:
    assert len(levels) == len(expected)
    for k, (got, want) in enumerate(zip(levels, expected, strict=True)):
        got = np.asarray(got)
        assert got.shape == want.shape, f"level {k}"
        assert got.dtype == want.dtype, f"level {k}"
        np.testing.assert_array_equal(got, want, err_msg=f"level {k}")


def test_level_shapes_stop_at_max_size():
    assert level_shapes((500, 2048, 2048), 512) == [(250, 1024, 1024), (125, 512, 512)]
    assert level_shapes((64, 64, 64), 64) == []
    assert level_shapes((93, 64, 64), 64) == [(47, 32, 32)]
    assert level_shapes((93, 64, 64), 24) == [(47, 32, 32), (24, 16, 16)]
    assert level_shapes((93, 64, 64), 23) == [(47, 32, 32), (24, 16, 16), (12, 8, 8)]
    with pytest.raises(ValueError):
        level_shapes((4, 4, 4), 0)


@pytest.mark.parametrize("name", REAL_SCANS)
def test_real_scans_match_a_plain_numpy_pyramid(name, tmp_path):
    source, facts = real_scan(name)
    folder = tmp_path / name
    shutil.copytree(source, folder)
    volume = plain_read(folder)
    assert volume.shape == tuple(facts["shape_zyx"])
    stack = ctstack.open_stack(folder)
    levels = stack.build_pyramid(max_size=24)
    assert_levels_equal(levels, reference_pyramid(volume, 24))
    assert stack.levels is levels


def test_real_scan_tiled_to_a_large_frame(tmp_path):
    """Real content tiled in y and x, odd sizes, so that several full-size levels are real CT."""
    source, _facts = real_scan("niivue_ct_pitch_head")
    volume = np.tile(plain_read(source)[:21], (1, 3, 5))[:, :701, :833]
    write_slices(tmp_path / "tiled", volume)
    levels = ctstack.open_stack(tmp_path / "tiled").build_pyramid(max_size=100)
    assert_levels_equal(levels, reference_pyramid(volume, 100))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_every_tiff_dtype_and_odd_shapes(tmp_path, dtype):
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype) if dtype != "float32" else None
    if info is not None:
        volume = rng.integers(info.min, info.max, (13, 37, 29), endpoint=True).astype(dtype)
    else:
        volume = rng.integers(-1000, 1000, (13, 37, 29)).astype(dtype)
    write_slices(tmp_path / "v", volume)
    levels = ctstack.open_stack(tmp_path / "v").build_pyramid(max_size=8)
    assert_levels_equal(levels, reference_pyramid(volume, 8))


def test_gaps_and_corrupt_slices_count_as_zeros(tmp_path):
    rng = np.random.default_rng(1)
    volume = rng.integers(1, 4000, (12, 40, 40)).astype(np.uint16)
    folder = tmp_path / "gaps"
    write_slices(folder, volume, skip={3, 7})
    (folder / "s_0009.tif").write_bytes((folder / "s_0009.tif").read_bytes()[:300])  # truncated
    with pytest.warns(UserWarning, match="s_0009.tif"):
        stack = ctstack.open_stack(folder)
    levels = stack.build_pyramid(max_size=10)
    expected = volume.copy()
    expected[[3, 7, 9]] = 0
    assert 3 in stack.missing and 7 in stack.missing
    assert 9 in [b.z for b in stack.bad_slices]
    assert_levels_equal(levels, reference_pyramid(expected, 10))
    np.testing.assert_array_equal(np.asarray(stack.data), expected)  # level 0 shows the same


def make_stack_folder(tmp_path: Path, shape=(20, 48, 40)) -> tuple[Path, np.ndarray]:
    volume = np.random.default_rng(2).integers(0, 60000, shape).astype(np.uint16)
    folder = tmp_path / "stack"
    write_slices(folder, volume)
    return folder, volume


def test_progress_counts_slices_and_cache_hit_reports_once(tmp_path):
    folder, volume = make_stack_folder(tmp_path)
    first = Recorder()
    ctstack.open_stack(folder).build_pyramid(progress=first, max_size=10)
    assert [d for d, _ in first.calls] == list(range(1, 21))
    assert all(t == 20 for _, t in first.calls)
    again = Recorder()
    stack = ctstack.open_stack(folder)
    assert cached_levels(stack, max_size=10) is not None
    levels = stack.build_pyramid(progress=again, max_size=10)
    assert again.calls == [(20, 20)]
    assert_levels_equal(levels, reference_pyramid(volume, 10))


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("change", ["modify", "touch", "add", "remove", "max_size", "rename"])
def test_any_change_to_the_sources_rebuilds(tmp_path, change):
    folder, volume = make_stack_folder(tmp_path)
    ctstack.open_stack(folder).build_pyramid(max_size=10)
    max_size = 10
    if change == "modify":  # same size, new content and mtime
        volume[5] = 12345
        tifffile.imwrite(folder / "s_0005.tif", volume[5])
        bump_mtime(folder / "s_0005.tif")
    elif change == "touch":
        bump_mtime(folder / "s_0011.tif")
    elif change == "add":
        extra = np.full((1, *volume.shape[1:]), 777, np.uint16)
        tifffile.imwrite(folder / "s_0020.tif", extra[0])
        volume = np.concatenate([volume, extra])
    elif change == "remove":
        (folder / "s_0019.tif").unlink()
        volume = volume[:19]
    elif change == "max_size":
        max_size = 5
    elif change == "rename":
        (folder / "s_0000.tif").rename(folder / "s_0021.tif")
        volume = np.concatenate([np.zeros_like(volume[:1]), volume[1:], volume[:1]])
        volume = volume[1:]  # numbering now starts at 1; z 0..19 -> files 1..19, gap, 21
        volume = np.concatenate([volume[:19], np.zeros_like(volume[:1]), volume[19:]])
    stack = ctstack.open_stack(folder)
    assert cached_levels(stack, max_size=max_size) is None
    rec = Recorder()
    levels = stack.build_pyramid(progress=rec, max_size=max_size)
    assert len(rec.calls) == stack.shape[0]  # really rebuilt, slice by slice
    assert_levels_equal(levels, reference_pyramid(volume, max_size))


def test_rebuild_flag_forces_a_build(tmp_path):
    folder, _ = make_stack_folder(tmp_path)
    ctstack.open_stack(folder).build_pyramid(max_size=10)
    rec = Recorder()
    ctstack.open_stack(folder).build_pyramid(progress=rec, max_size=10, rebuild=True)
    assert len(rec.calls) == 20


def test_cancel_raises_promptly_and_leaves_no_cache(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(64, 32, 32))
    stack = ctstack.open_stack(folder)
    cancel = threading.Event()
    rec = Recorder()

    def progress(done, total):
        rec(done, total)
        if done == 10:
            cancel.set()

    with pytest.raises(Cancelled):
        stack.build_pyramid(progress=progress, cancel=cancel, max_size=8)
    assert 10 <= rec.calls[-1][0] <= 13  # stopped within a few slices, mid-build
    assert cached_levels(ctstack.open_stack(folder), max_size=8) is None
    local = folder / ".ctstack"  # the folder the build made is gone too
    leftovers = [p for p in local.iterdir() if p.name != "roi.json"] if local.exists() else []
    assert leftovers == [], leftovers
    levels = ctstack.open_stack(folder).build_pyramid(max_size=8)
    assert_levels_equal(levels, reference_pyramid(volume, 8))


def test_numpy_fallback_gives_the_same_cache(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(17, 33, 35))
    code = textwrap.dedent(
        f"""
        import numpy as np, ctstack
        assert ctstack.backend() == "numpy"
        stack = ctstack.open_stack({str(folder)!r})
        levels = stack.build_pyramid(max_size=6, cache_dir={str(tmp_path / "np")!r})
        np.save({str(tmp_path / "last.npy")!r}, np.asarray(levels[-1]))
        """
    )
    env = dict(os.environ, CTSTACK_NO_RUST="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    levels = ctstack.open_stack(folder).build_pyramid(max_size=6)
    assert np.load(tmp_path / "last.npy").tobytes() == np.asarray(levels[-1]).tobytes()
    assert_levels_equal(levels, reference_pyramid(volume, 6))


HOOKED_BUILDER = """
import os, sys, time
from pathlib import Path
import ctstack
folder, signal_dir, block_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4]
stack = ctstack.open_stack(folder)
plain = stack.read_slice

def hooked(z, out=None):
    if z == block_at:
        (signal_dir / f"reached-{os.getpid()}").touch()
        if mode == "block":
            while True:
                time.sleep(0.05)
        while len(list(signal_dir.glob("reached-*"))) < 2:  # barrier: both builders mid-build
            time.sleep(0.01)
    return plain(z, out=out)

stack.read_slice = hooked
levels = stack.build_pyramid(max_size=8)
import numpy as np
np.save(signal_dir / f"result-{os.getpid()}.npy", np.asarray(levels[-1]))
"""


def wait_for(predicate, timeout=60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def test_a_build_killed_mid_way_leaves_no_cache_and_the_next_open_rebuilds(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(40, 32, 32))
    signals = tmp_path / "signals"
    signals.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOOKED_BUILDER, str(folder), str(signals), "25", "block"]
    )
    try:
        wait_for(lambda: any(signals.glob("reached-*")))
        entries = list((folder / ".ctstack").iterdir())
        assert any(p.name.startswith(".tmp-") for p in entries)  # really mid-build
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stack = ctstack.open_stack(folder)
    assert cached_levels(stack, max_size=8) is None
    rec = Recorder()
    levels = stack.build_pyramid(progress=rec, max_size=8)
    assert len(rec.calls) == 40
    assert_levels_equal(levels, reference_pyramid(volume, 8))


def test_two_processes_building_at_once_both_end_with_a_correct_cache(tmp_path):
    folder, volume = make_stack_folder(tmp_path, shape=(40, 32, 32))
    signals = tmp_path / "signals"
    signals.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOOKED_BUILDER, str(folder), str(signals), "20", "barrier"]
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    expected = reference_pyramid(volume, 8)
    results = list(signals.glob("result-*.npy"))
    assert len(results) == 2 and len(list(signals.glob("reached-*"))) == 2
    for r in results:
        np.testing.assert_array_equal(np.load(r), expected[-1])
    stack = ctstack.open_stack(folder)
    levels = cached_levels(stack, max_size=8)
    assert levels is not None
    assert_levels_equal(levels, expected)
    committed = [p for p in (folder / ".ctstack").iterdir() if not p.name.startswith(".")]
    assert len([p for p in committed if p.name != "roi.json"]) == 1


def test_read_only_stack_folder_puts_the_cache_in_the_user_cache_dir(tmp_path, monkeypatch):
    from ctstack import locations

    folder, volume = make_stack_folder(tmp_path)
    user_cache = tmp_path / "user-cache"
    monkeypatch.delenv("CTSTACK_CACHE_DIR", raising=False)
    monkeypatch.setattr(locations, "global_cache_dir", lambda: user_cache)
    real_probe = locations._probe_write

    def refuse(path):
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(13, "Read-only file system", str(path))
        return real_probe(path)

    monkeypatch.setattr(locations, "_probe_write", refuse)
    before = sorted(p.name for p in folder.iterdir())
    levels = ctstack.open_stack(folder).build_pyramid(max_size=10)
    assert_levels_equal(levels, reference_pyramid(volume, 10))
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written beside the stack
    assert any(user_cache.rglob("manifest.json"))
    assert cached_levels(ctstack.open_stack(folder), max_size=10) is not None


def test_cache_dir_option_and_environment_variable(tmp_path, monkeypatch):
    folder, _ = make_stack_folder(tmp_path)
    ctstack.open_stack(folder).build_pyramid(max_size=10, cache_dir=tmp_path / "elsewhere")
    assert any((tmp_path / "elsewhere").rglob("manifest.json"))
    assert not (folder / ".ctstack").exists()
    monkeypatch.setenv("CTSTACK_CACHE_DIR", str(tmp_path / "env"))
    ctstack.open_stack(folder).build_pyramid(max_size=10)
    assert any((tmp_path / "env").rglob("manifest.json"))


def test_multipage_tiff_source(tmp_path, real_multipage_tif):
    path = tmp_path / real_multipage_tif.name
    shutil.copy(real_multipage_tif, path)
    volume = tifffile.imread(path)
    levels = ctstack.open_stack(path).build_pyramid(max_size=20)
    assert_levels_equal(levels, reference_pyramid(volume, 20))


def test_cli_builds_then_reuses_and_says_when_no_pyramid_is_needed(tmp_path, capsys):
    from ctstack.cli import main

    folder, _ = make_stack_folder(tmp_path)
    assert main(["pyramid", str(folder), "--max-size", "10"]) == 0
    assert "built 3 level(s)" in capsys.readouterr().out
    assert main(["pyramid", str(folder), "--max-size", "10"]) == 0
    assert "reused 3 level(s)" in capsys.readouterr().out
    assert main(["pyramid", str(folder), "--max-size", "64"]) == 0
    assert "no pyramid needed" in capsys.readouterr().out
    assert main(["pyramid", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
