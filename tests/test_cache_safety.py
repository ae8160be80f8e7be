"""The pyramid cache never writes or deletes outside what it owns: symlinks, user folders."""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

import pytest

import ctstack
from ctstack import cache as C
from ctstack.cli import main
from ctstack.roi import ROI, load_roi, save_roi
from ctstack.sample import write_phantom_stack

SHAPE = (16, 32, 32)
DEAD_PID = 999_999_999  # above any pid_max: never a live process


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch) -> Path:
    """The user cache dir (platformdirs honours XDG_CACHE_HOME) in tmp; no CTSTACK_CACHE_DIR."""
    monkeypatch.delenv(C.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ctstack"


def make_stack(tmp_path: Path, name: str = "scan") -> Path:
    folder = tmp_path / name
    write_phantom_stack(folder, SHAPE, "uint16")
    return folder


def host() -> str:
    return C._safe(socket.gethostname())


def user_folder(folder: Path) -> Path:
    """A folder of the user's that looks like a cache location but holds nothing of ctstack's."""
    (folder / "x.pyramid").mkdir(parents=True)
    (folder / "x.pyramid" / "data.bin").write_bytes(b"precious")
    (folder / "roi.json").write_text('{"version": 1, "series": {}}')
    tmp = folder / f".tmp-{DEAD_PID}-aaaaaaaaaaaa-{host()}"
    tmp.mkdir()
    (tmp / "draft.txt").write_text("mine")
    return folder


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders, the target for links)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), folder)] = None
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, folder)] = Path(p).read_bytes()
    return out


def link_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "symbolic link" in str(w.message)]


def build(folder: Path, **kw) -> ctstack.Stack:
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=8, **kw)
    return stack


# --------------------------------------------------------------------------- rule 1: symlinks


def test_build_never_writes_through_a_symlinked_ctstack(tmp_path, user_cache):
    folder = make_stack(tmp_path)
    target = user_folder(tmp_path / "elsewhere")
    (folder / ".ctstack").symlink_to(target)
    before = snapshot(target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = build(folder)
    assert snapshot(target) == before
    assert user_cache in stack.cache_location.parents
    assert [e["kind"] for e in C.list_location(stack.cache_location)] == ["entry"]
    [message] = link_warnings(caught)
    assert str(folder / ".ctstack") in message and str(stack.cache_location) in message


def test_entry_through_a_symlink_is_read_but_a_rebuild_goes_elsewhere(tmp_path, user_cache):
    folder = make_stack(tmp_path)
    build(folder)  # a real .ctstack, then moved away and linked back
    target = tmp_path / "elsewhere"
    (folder / ".ctstack").rename(target)
    (folder / ".ctstack").symlink_to(target)
    before = snapshot(target)
    calls: list[tuple[int, int]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        levels = build(folder, progress=lambda done, total: calls.append((done, total))).levels
        assert calls == [(SHAPE[0], SHAPE[0])] and len(levels) > 1  # a hit: no slice read
        assert not (user_cache / C._namespace(folder)).exists()
        build(folder, rebuild=True)  # a forced rebuild must not replace the linked entry
    assert snapshot(target) == before
    assert [e["kind"] for e in C.list_location(user_cache / C._namespace(folder))] == ["entry"]


def test_cli_clean_all_leaves_a_symlinked_ctstack_alone(tmp_path, user_cache, capsys):
    folder = make_stack(tmp_path)
    build(folder)  # a real entry, moved with the user's files behind a link
    target = user_folder(tmp_path / "elsewhere")
    for item in (folder / ".ctstack").iterdir():
        item.rename(target / item.name)
    (folder / ".ctstack").rmdir()
    (folder / ".ctstack").symlink_to(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack = build(folder, rebuild=True)  # lands in the user cache: clean must reach it
    before = snapshot(target)
    assert main(["cache", "clean", "--all", str(folder)]) == 0
    out = capsys.readouterr()
    assert snapshot(target) == before
    assert "left alone" in out.out + out.err and "symbolic link" in out.out + out.err
    assert user_cache in stack.cache_location.parents
    assert C.list_location(stack.cache_location) == []  # the other location was cleaned


def test_roi_is_read_through_a_symlink_but_saved_elsewhere(tmp_path, user_cache):
    folder = make_stack(tmp_path)
    stack = ctstack.open_stack(folder)
    save_roi(stack, ROI((1, 5), (2, 6), (3, 7)))
    target = tmp_path / "elsewhere"
    (folder / ".ctstack").rename(target)
    (folder / ".ctstack").symlink_to(target)
    before = snapshot(target)
    assert load_roi(ctstack.open_stack(folder)).z == (1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = save_roi(stack, ROI((2, 9), (2, 6), (3, 7)))
    assert snapshot(target) == before
    assert user_cache in path.parents
    assert load_roi(ctstack.open_stack(folder)).z == (2, 9)


def test_symlinked_namespace_folder_in_the_shared_dir(tmp_path, user_cache, monkeypatch, capsys):
    folder = make_stack(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv(C.ENV_VAR, str(shared))
    target = user_folder(tmp_path / "elsewhere")
    (shared / C._namespace(folder)).symlink_to(target)
    before = snapshot(target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = build(folder)
    assert len(link_warnings(caught)) == 1
    assert user_cache in stack.cache_location.parents
    assert main(["cache", "clean", "--all"]) == 0
    assert "left alone" in "".join(capsys.readouterr())
    assert snapshot(target) == before


# --------------------------------------------------------------------------- rules 2-4


def test_clean_of_a_general_shared_dir_removes_only_ctstack_entries(tmp_path, monkeypatch):
    general = tmp_path / "general"
    for sub in ("model.pyramid", "models/model.pyramid", "data-bbbbbbbbbbbb/model.pyramid"):
        (general / sub).mkdir(parents=True)
        (general / sub / "weights.bin").write_bytes(b"w" * 100)
    (general / "empty").mkdir()
    (general / "notes-aaaaaaaaaaaa").mkdir()
    monkeypatch.setenv(C.ENV_VAR, str(general))
    stack = build(make_stack(tmp_path))
    assert stack.cache_location.parent == general
    before = snapshot(general)
    assert main(["cache", "clean"]) == 0
    after = snapshot(general)
    ours = os.path.relpath(stack.cache_location, general)
    assert after == {k: v for k, v in before.items() if not k.startswith(ours)}
    assert not stack.cache_location.exists()  # our own location folder, emptied, is removed


def test_unmarked_lookalikes_beside_a_stack_survive_build_and_clean(tmp_path):
    folder = make_stack(tmp_path)
    local = user_folder(folder / ".ctstack")
    (local / "phantom-notes.pyramid").mkdir()  # named like an orphan of the series
    (local / "phantom-notes.pyramid" / "a.txt").write_text("keep")
    (local / f".trash-{DEAD_PID}-bbbbbbbbbbbb-{host()}").mkdir()
    (local / f".trash-{DEAD_PID}-bbbbbbbbbbbb-{host()}" / "b.txt").write_text("keep")
    (local / "roi.json").unlink()
    before = snapshot(local)
    stack = build(folder)
    assert stack.cache_location == local
    assert main(["cache", "clean", "--all", str(folder)]) == 0
    assert snapshot(local) == before


def test_writer_temp_folder_carries_the_marker_and_a_stale_one_is_swept(tmp_path):
    folder = make_stack(tmp_path)
    cache = C.PyramidCache(folder, "phantom")
    w = cache.writer("0" * 64, [(4, 4, 4)], "uint16")
    marker = json.loads((w.tmp / C.TEMP_MARKER).read_text())
    assert marker["pid"] == os.getpid()
    dead = w.tmp.with_name(f".tmp-{DEAD_PID}-cccccccccccc-{host()}")
    w.tmp.rename(dead)  # as a killed writer leaves it
    cache.writer("1" * 64, [(4, 4, 4)], "uint16").abort()  # a new writer sweeps it
    assert not dead.exists()
