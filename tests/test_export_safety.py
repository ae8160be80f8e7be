"""No writer may touch what it does not own: a prefix stays inside OUT, the stack's sources,
their folders, its cache and ROI location are never replaced, ``overwrite`` replaces only an
earlier export of the same kind, and a failed or killed export leaves nothing behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack._export import guard, ome_zarr
from ctstack.cli import main
from ctstack.errors import ExportError, OutputExists
from tests.private_mount import needs_private_mount, run_child, tmpfs
from tests.test_export_reference import leftovers, make_volume, snapshot, write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def src(tmp_path) -> Path:
    """A small uint16 slice folder ``src/scan_00000.tif`` ... (6 slices)."""
    folder = tmp_path / "src"
    write_slices(folder, make_volume((6, 20, 24), "uint16", 3))
    return folder


def _dead_pid() -> int:
    """The pid of a process that has already exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- 1. the prefix


@pytest.mark.parametrize("prefix", ["../src/scan_", "/tmp/abs_", "a\\b_", "x\0y", ".", ".."])
def test_prefix_that_leaves_out_is_refused(src, tmp_path, prefix):
    before = snapshot(src)
    with pytest.raises(ExportError, match="prefix"):
        ctstack.export(src, tmp_path / "out", z=(2, 4), prefix=prefix, window=(0, 60000))
    assert snapshot(src) == before
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_cli_prefix_escape_exits_2_and_leaves_the_source(src, tmp_path, capsys):
    before = snapshot(src)
    out = tmp_path / "outp2"
    rc = main(["export", str(src), str(out), "--prefix", "../src/scan_", "--z", "2:4"])
    err = capsys.readouterr().err
    assert rc == 2 and "prefix" in err and len(err.strip().splitlines()) == 1
    assert snapshot(src) == before and not out.exists()


def test_prefix_with_dots_inside_a_name_is_legal(src, tmp_path):
    res = ctstack.export(src, tmp_path / "out", z=(2, 4), prefix="scan..v2_")
    assert sorted(p.name for p in res.files) == ["scan..v2_00002.tif", "scan..v2_00003.tif"]
    assert all(p.parent == tmp_path / "out" and p.is_file() for p in res.files)


@pytest.mark.parametrize("name", ["../x.tif", "/tmp/x.tif", "", ".", "..", "a/b.tif"])
def test_staged_file_refuses_names_outside_the_staging_folder(tmp_path, name):
    with pytest.raises(ExportError, match="outside"):
        guard.staged_file(tmp_path, name)
    assert guard.staged_file(tmp_path, "scan_0001.tif") == tmp_path / "scan_0001.tif"


# --------------------------------------------------------------------------- 2. owned paths


def _targets(src: Path) -> list[tuple[str, Path]]:
    """Paths that belong to the stack at ``src``, each spelled the way a user might."""
    other = src.parent / "elsewhere"
    other.mkdir(exist_ok=True)
    link = other / "link.tif"
    if not link.exists():
        link.symlink_to(src / "scan_00003.tif")
    return [
        ("a source slice", src / "scan_00003.tif"),
        ("a source slice via ..", other / ".." / src.name / "scan_00003.tif"),
        ("a link to a source slice", link),
        ("the stack folder", src),
        ("the folder above the stack", src.parent),
        ("the cache location", src / ".ctstack"),
        ("inside the cache location", src / ".ctstack" / "x.tif"),
    ]


@pytest.mark.parametrize("fmt", ["tiff-stack", "tiff", "ome-zarr"])
def test_no_export_replaces_what_the_stack_owns(src, fmt):
    stack = ctstack.open_stack(src)
    stack.build_pyramid(max_size=4)
    before = snapshot(src)
    cache_before = sorted(p.name for p in (src / ".ctstack").iterdir())
    for what, out in _targets(src):
        with pytest.raises(ExportError, match="refusing"):
            ctstack.export(stack, out, format=fmt, overwrite=True)
        assert snapshot(src) == before, what
    assert sorted(p.name for p in (src / ".ctstack").iterdir()) == cache_before


def test_export_from_one_slice_file_to_a_sibling_slice_is_refused(tmp_path):
    folder = tmp_path / "single"
    vol = make_volume((3, 8, 8), "uint16", 5)
    folder.mkdir()
    tifffile.imwrite(folder / "volume.tif", vol, photometric="minisblack")  # multi-page
    tifffile.imwrite(folder / "other.tif", vol[0])
    before = (folder / "volume.tif").read_bytes()
    with pytest.raises(ExportError, match="refusing"):
        ctstack.export(
            folder / "volume.tif", folder / "volume.tif", format="tiff-stack", overwrite=True
        )
    with pytest.raises(ExportError, match="refusing"):
        ctstack.export(folder / "volume.tif", folder, format="tiff", overwrite=True)
    assert (folder / "volume.tif").read_bytes() == before


def test_mesh_and_batch_refuse_the_stack_cache_location(src, tmp_path):
    stack = ctstack.open_stack(src)
    stack.build_pyramid(max_size=4)
    before = snapshot(src)
    with pytest.raises(ExportError, match="refusing"):
        ctstack.mesh(stack, src / ".ctstack" / "m.stl", threshold=30000)
    summary = ctstack.batch.run_batch([src], src / ".ctstack", format="tiff-stack")
    assert summary.items[0].error and "refusing" in summary.items[0].error
    assert snapshot(src) == before


def test_writing_a_new_file_beside_the_slices_stays_allowed(src):
    res = ctstack.export(src, src / "crop.tif", format="tiff-stack", z=(0, 2))
    assert res.path.is_file() and res.shape[0] == 2


# --------------------------------------------------------------------------- 5. overwrite


def test_overwrite_replaces_only_earlier_exports_or_plain_files(src, tmp_path):
    a = ctstack.export(src, tmp_path / "a.zarr", format="ome-zarr", z=(0, 4)).path
    ctstack.export(src, a, format="ome-zarr", z=(0, 2), overwrite=True)
    assert ctstack.open_stack(a).shape[0] == 2

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((2, 4, 4), np.uint8))
    ctstack.export(src, plain, format="tiff-stack", z=(0, 3), overwrite=True)
    assert tifffile.imread(plain).shape[0] == 3

    cases = {
        "folder.zarr": ("dir", "ome-zarr", "no ctstack OME-Zarr"),
        "user": ("dir", "tiff", "no ctstack slice export"),
        "notes.tif": ("text", "tiff-stack", "not TIFF-STACK"),
        "fifo.tif": ("fifo", "tiff-stack", "not a regular file"),
        "link.tif": ("link", "tiff-stack", "symbolic link"),
        "file.zarr": ("text", "ome-zarr", "a file, not a folder"),
    }
    for name, (kind, fmt, words) in cases.items():
        path = tmp_path / name
        if kind == "dir":
            path.mkdir()
            (path / "precious.txt").write_text("mine")
        elif kind == "text":
            path.write_text("mine")
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(plain)
        with pytest.raises(OutputExists, match=words):
            ctstack.export(src, path, format=fmt, z=(0, 2), overwrite=True)
        assert os.path.lexists(path), name
        if kind == "dir":
            assert (path / "precious.txt").read_text() == "mine"
        if kind == "text":
            assert path.read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_mesh_overwrite_replaces_a_mesh_but_not_a_text_file(src, tmp_path):
    out = tmp_path / "m.ply"
    ctstack.mesh(src, out, threshold=30000)
    ctstack.mesh(src, out, threshold=20000, overwrite=True)
    notes = tmp_path / "notes.stl"
    notes.write_text("my notes")
    with pytest.raises(OutputExists, match="not STL"):
        ctstack.mesh(src, notes, threshold=30000, overwrite=True)
    assert notes.read_text() == "my notes"


def test_cli_overwrite_refusal_says_how_to_remove_it(src, tmp_path, capsys):
    out = tmp_path / "user"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    rc = main(["export", str(src), str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "rm -r" in err and (out / "precious.txt").exists()


# --------------------------------------------------------------------------- 4. disk full


def test_ome_zarr_chunks_are_byte_identical_to_zarr(src, tmp_path):
    """The direct chunk writer stores exactly what zarr's own __setitem__ would."""
    import zarr

    for version in ("0.4", "0.5"):
        out = tmp_path / f"ours-{version}.zarr"
        ctstack.export(src, out, format="ome-zarr", ngff_version=version, max_size=4)
        group = zarr.open_group(str(out), mode="r")
        twin = tmp_path / f"zarr-{version}.zarr"
        shutil.copytree(out, twin, ignore=shutil.ignore_patterns("c", "[0-9]*"))
        for name in sorted(k for k in os.listdir(out) if k.isdigit()):
            arr = group[name]
            shutil.copytree(
                out / name,
                twin / name,
                ignore=lambda d, n: [x for x in n if x not in (".zarray", ".zattrs", "zarr.json")],
            )
            zarr.open_array(str(twin / name), mode="r+")[...] = arr[...]
        ours = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        theirs = {str(p.relative_to(twin)): p.read_bytes() for p in twin.rglob("*") if p.is_file()}
        assert ours.keys() == theirs.keys(), version
        assert all(ours[k] == theirs[k] for k in ours), version


def test_ome_zarr_disk_full_stops_every_writer_then_removes(src, tmp_path, monkeypatch):
    """Injected ENOSPC on one chunk: no write happens after the failure, nothing is left."""
    calls: list[str] = []
    after: list[str] = []
    real = ome_zarr._ChunkFiles.write

    def write(self, path, block):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        if len(calls) > 3:
            after.append(path)
        return real(self, path, block)

    monkeypatch.setattr(ome_zarr._ChunkFiles, "write", write)
    monkeypatch.setattr(ome_zarr, "CHUNK", (2, 8, 8))  # many small chunks in flight
    with pytest.raises(ExportError, match=r"disk full.*removed"):
        ctstack.export(src, tmp_path / "out.zarr", format="ome-zarr", max_size=4)
    assert sorted(os.listdir(tmp_path)) == ["src"]
    assert all(not os.path.exists(p) for p in after)


REAL_DISK_FULL = textwrap.dedent(
    """
    import json, os, sys
    import ctstack
    from ctstack._export import writing
    import ctstack._export as ex
    ex.check_space = lambda folder, need: None  # the disk fills after the check, as when
    # another program writes at the same time
    src, disk, fmt = sys.argv[1:4]
    rounds = []
    for i in range(int(sys.argv[4])):
        try:
            ctstack.export(src, os.path.join(disk, "out"), format=fmt, max_size=8)
            rounds.append(["no error", os.listdir(disk)])
        except ctstack.errors.ExportError as exc:
            rounds.append([str(exc), os.listdir(disk)])
    print(json.dumps(rounds))
    """
)


@needs_private_mount
@pytest.mark.parametrize("fmt", ["ome-zarr", "tiff", "tiff-stack"])
def test_real_full_disk_leaves_nothing(tmp_path, fmt):
    """A 6 MiB tmpfs in a private mount namespace fills mid-export, several times over.

    Before the OME-Zarr writer joined its own threads, 7 of 8 such rounds left a temp folder.
    """
    folder = tmp_path / "src"
    write_slices(folder, make_volume((24, 600, 600), "uint16", 9))  # 17 MB, incompressible
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = run_child(tmp_path, tmpfs(disk, "6m"), REAL_DISK_FULL, folder, disk, fmt, 4)
    assert proc.returncode == 0, proc.stderr
    rounds = json.loads(proc.stdout.strip().splitlines()[-1])
    for message, listing in rounds:
        assert "disk full" in message and "removed" in message, message
        assert listing == [], listing
    assert os.listdir(disk) == []  # the namespace's tmpfs never reached this one


def test_next_export_sweeps_what_a_killed_export_left(src, tmp_path):
    out = tmp_path / "out.zarr"
    host = guard_host = ctstack._export.writing._host()
    assert guard_host == host
    dead = _dead_pid()
    stale_dir = tmp_path / f".out.zarr.ctstack-tmp-{dead}-0123abcd-{host}"
    stale_dir.mkdir()
    (stale_dir / "chunk").write_bytes(b"x")
    stale_file = tmp_path / f".out.zarr.ctstack-tmp-{dead}-89abcdef-{host}"
    stale_file.write_bytes(b"x")
    alive = tmp_path / f".out.zarr.ctstack-tmp-{os.getpid()}-00000000-{host}"
    alive.mkdir()
    other_host = tmp_path / f".out.zarr.ctstack-tmp-{dead}-0123abcd-not{socket.gethostname()}x"
    other_host.mkdir()
    unrelated = tmp_path / f".other.zarr.ctstack-tmp-{dead}-0123abcd-{host}"
    unrelated.mkdir()
    ctstack.export(src, out, format="ome-zarr", max_size=4)
    assert not stale_dir.exists() and not stale_file.exists()
    assert alive.exists() and other_host.exists() and unrelated.exists()
    assert out.is_dir()
