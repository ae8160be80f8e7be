"""ctstack.locations decides where a stack's cache and roi.json live; `.ctstack` is said once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ctstack
from ctstack import locations as L


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv(L.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ctstack"


def test_local_dirname_is_defined_only_in_locations():
    src = Path(ctstack.__file__).parent
    said = [
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if re.search(r"""["']\.ctstack["']""", p.read_text(encoding="utf-8"))
    ]
    assert said == ["locations.py"]


def test_cache_location_order(tmp_path, monkeypatch, user_cache):
    stack = tmp_path / "scan"
    stack.mkdir()
    assert L.cache_location(stack) == stack / ".ctstack"
    assert L.cache_location(stack, tmp_path / "mine") == tmp_path / "mine" / L.namespace(stack)
    monkeypatch.setenv(L.ENV_VAR, str(tmp_path / "env"))
    assert L.cache_location(stack) == tmp_path / "env" / L.namespace(stack)
    assert L.cache_location(stack, tmp_path / "mine").parent == tmp_path / "mine"  # arg wins
    monkeypatch.delenv(L.ENV_VAR)
    monkeypatch.setattr(L, "is_writable", lambda folder: False)
    assert L.cache_location(stack) == user_cache / L.namespace(stack)


def test_namespace_is_readable_unique_and_recognised(tmp_path):
    a, b = tmp_path / "one" / "scan 1", tmp_path / "two" / "scan 1"
    assert L.namespace(a).startswith("scan_1-") and L.namespace(a) != L.namespace(b)
    assert L.is_location_name(L.namespace(a)) and L.is_location_name(L.LOCAL_DIRNAME)
    assert not L.is_location_name("scan") and not L.is_location_name("data-zzzzzzzzzzzz")


def test_stack_and_shared_locations(tmp_path, user_cache):
    stack = tmp_path / "scan"
    stack.mkdir()
    (stack / "s_0000.tif").write_bytes(b"x")
    ns = L.namespace(stack)
    assert L.stack_locations(stack) == [stack / ".ctstack", user_cache / ns]
    assert L.stack_locations(stack / "s_0000.tif") == L.stack_locations(stack)  # a file of it
    shared = tmp_path / "shared"
    assert L.stack_locations(stack, shared) == [stack / ".ctstack", shared / ns]
    (shared / ns).mkdir(parents=True)
    (shared / "not-ours").mkdir()
    assert L.shared_locations(shared) == [shared / ns]
    assert L.shared_locations(tmp_path / "absent") == []


def test_roi_path_beside_the_stack_else_the_shared_dir(tmp_path, monkeypatch, user_cache):
    stack = tmp_path / "scan"
    stack.mkdir()
    local = stack / ".ctstack" / "roi.json"
    assert L.roi_files(stack) == (local, user_cache / L.namespace(stack) / "roi.json")
    assert L.roi_path(stack) == local and L.roi_path(stack, for_writing=True) == local
    monkeypatch.setattr(L, "is_writable", lambda folder: False)
    fallback = L.roi_path(stack, for_writing=True)
    assert fallback == user_cache / L.namespace(stack) / "roi.json"
    fallback.parent.mkdir(parents=True)
    fallback.write_text("{}")
    assert L.roi_path(stack) == fallback  # only the fallback exists: it is the one read
