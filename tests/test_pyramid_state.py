"""Pyramid state has one owner: the Stack adopts a Pyramid result; cache entries of different
max_size values live side by side and go only when the sources change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack import cache
from ctstack.pyramid import (
    DEFAULT_MAX_SIZE,
    Pyramid,
    PyramidSettings,
    cached_levels,
    load_pyramid,
    make_pyramid,
)


@pytest.fixture(autouse=True)
def no_shared_cache(monkeypatch):
    monkeypatch.delenv("CTSTACK_CACHE_DIR", raising=False)


def make_folder(tmp_path: Path, shape=(20, 48, 40)) -> Path:
    volume = np.random.default_rng(3).integers(0, 60000, shape).astype(np.uint16)
    folder = tmp_path / "stack"
    folder.mkdir(parents=True)
    for z, plane in enumerate(volume):
        tifffile.imwrite(folder / f"s_{z:04d}.tif", plane)
    return folder


def entries(folder: Path) -> list[dict]:
    return [e for e in cache.list_location(folder / ".ctstack") if e["kind"] == "entry"]


def test_build_returns_the_levels_and_the_stack_keeps_the_pyramid(tmp_path):
    folder = make_folder(tmp_path)
    stack = ctstack.open_stack(folder)
    assert stack.pyramid is None and stack.cache_location is None
    assert stack.levels == [stack.data]
    levels = stack.build_pyramid(max_size=10)
    assert isinstance(levels, list) and stack.levels is levels
    p = stack.pyramid
    assert isinstance(p, Pyramid) and p.built and not p.reused
    assert p.settings == PyramidSettings(max_size=10, cache_dir=None)
    assert p.shapes == ((20, 48, 40), (10, 24, 20), (5, 12, 10), (3, 6, 5))
    assert p.location == folder / ".ctstack" == stack.cache_location
    assert p.levels[0] is stack.data and list(p.levels) == levels

    again = ctstack.open_stack(folder)
    again.build_pyramid(max_size=10)
    assert again.pyramid.built is False and again.pyramid.location == folder / ".ctstack"
    assert again.pyramid.shapes == p.shapes


def test_levels_and_cache_location_are_read_only(tmp_path):
    stack = ctstack.open_stack(make_folder(tmp_path))
    with pytest.raises(AttributeError):
        stack.levels = []  # type: ignore[misc]
    with pytest.raises(AttributeError):
        stack.cache_location = tmp_path  # type: ignore[misc]
    with pytest.raises(AttributeError):
        stack.pyramid = None  # type: ignore[misc]
    other = ctstack.open_stack(make_folder(tmp_path / "b"))
    with pytest.raises(ValueError, match="adopted only by the stack"):
        stack._adopt(make_pyramid(other, max_size=10))


def test_settings_record_max_size_and_cache_dir(tmp_path):
    folder = make_folder(tmp_path)
    stack = ctstack.open_stack(folder)
    shared = tmp_path / "shared"
    stack.build_pyramid(max_size=12, cache_dir=shared)
    assert stack.pyramid.settings == PyramidSettings(12, shared)
    assert shared in stack.cache_location.parents
    default = ctstack.open_stack(folder)
    assert default.build_pyramid() == [default.data]  # 48 <= 512: level 0 only
    assert default.pyramid.settings == PyramidSettings(DEFAULT_MAX_SIZE, None)
    assert not default.pyramid.built and default.cache_location is None


def test_load_pyramid_changes_nothing_and_cached_levels_adopts(tmp_path):
    folder = make_folder(tmp_path)
    ctstack.open_stack(folder).build_pyramid(max_size=10)
    stack = ctstack.open_stack(folder)
    found = load_pyramid(stack, max_size=10)
    assert found is not None and not found.built and len(found.levels) == 4
    assert stack.pyramid is None and len(stack.levels) == 1
    assert load_pyramid(stack, max_size=30) is None  # never built for this size
    levels = cached_levels(stack, max_size=10)
    assert levels is stack.levels and stack.pyramid.shapes == found.shapes
    small = load_pyramid(stack, max_size=48)  # no level needed: reused, nothing cached
    assert small is not None and small.shapes == ((20, 48, 40),) and small.location is None


def test_two_max_sizes_no_longer_evict_each_other(tmp_path):
    folder = make_folder(tmp_path)
    ctstack.open_stack(folder).build_pyramid(max_size=10)
    ctstack.open_stack(folder).build_pyramid(max_size=20)
    assert len(entries(folder)) == 2
    for size in (10, 20, 10, 20):  # both stay valid, however often each is asked for
        stack = ctstack.open_stack(folder)
        stack.build_pyramid(max_size=size)
        assert stack.pyramid.built is False
    assert len({e["source"] for e in entries(folder)}) == 1


def test_a_changed_slice_evicts_every_max_size(tmp_path):
    folder = make_folder(tmp_path)
    ctstack.open_stack(folder).build_pyramid(max_size=10)
    ctstack.open_stack(folder).build_pyramid(max_size=20)
    old = {e["key"] for e in entries(folder)}
    path = folder / "s_0007.tif"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=10)
    assert stack.pyramid.built
    [entry] = entries(folder)
    assert entry["key"] not in old
    assert cached_levels(ctstack.open_stack(folder), max_size=20) is None


def test_manifest_records_the_source_fingerprint(tmp_path):
    folder = make_folder(tmp_path)
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=10)
    [entry] = entries(folder)
    source = cache.source_fingerprint(stack.sources(), stack.shape, stack.dtype)
    assert entry["source"] == source
    shapes = [s[0:3] for s in stack.pyramid.shapes[1:]]
    assert entry["key"] == cache.entry_key(source, shapes)
    assert entry["key"] == cache.fingerprint(stack.sources(), stack.shape, stack.dtype, shapes)


def test_cli_reports_built_or_reused_from_the_pyramid(tmp_path, capsys, monkeypatch):
    """A one-slice stack reports one progress call either way: only Pyramid.built tells."""
    from ctstack.cli import main

    folder = make_folder(tmp_path, shape=(1, 48, 40))
    assert main(["pyramid", str(folder), "--max-size", "10"]) == 0
    assert "built 3 level(s)" in capsys.readouterr().out
    assert main(["pyramid", str(folder), "--max-size", "10"]) == 0
    assert "reused 3 level(s)" in capsys.readouterr().out
    assert main(["pyramid", str(folder), "--max-size", "10", "--rebuild"]) == 0
    assert "built 3 level(s)" in capsys.readouterr().out
