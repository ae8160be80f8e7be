"""Issue 17, the fast OME-Zarr writer: chunk (and shard) files byte-equal to zarr's for every
compression, region by region writing that makes the local export's files, options checked."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import ctstack
from ctstack._export import ome_zarr
from ctstack.cli import main
from ctstack.errors import ExportError, UnsupportedExport
from tests.test_export_reference import leftovers, make_volume, write_slices

SHAPE = (21, 37, 45)  # odd everywhere: partial chunks and shards at every edge
OPTIONS = [
    ("0.4", "lz4", False),
    ("0.4", "zstd", False),
    ("0.4", "none", False),
    ("0.5", "lz4", False),
    ("0.5", "none", False),
    ("0.5", "lz4", True),
    ("0.5", "zstd", True),
    ("0.5", "none", True),
]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of (4, 8, 8) and shards of 2 x 2 chunks: many files, partial ones at the edges."""
    monkeypatch.setattr(ome_zarr, "CHUNK", (4, 8, 8))
    monkeypatch.setattr(ome_zarr, "SHARD_CHUNKS", 2)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("omezarr") / "src"
    vol = make_volume(SHAPE, "uint16", 3)
    vol[:, :9, :] = 0  # empty chunks (and a whole empty row of shards) are left out
    write_slices(folder, vol)
    return folder


def files_under(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def zarr_twin(out: Path, twin: Path) -> None:
    """The same image written by zarr itself: our metadata files, then zarr's ``[...] =``."""
    import zarr

    group = zarr.open_group(str(out), mode="r")
    shutil.copytree(out, twin, ignore=shutil.ignore_patterns("c", "[0-9]*"))
    for name in sorted(k for k in os.listdir(out) if k.isdigit()):
        shutil.copytree(
            out / name,
            twin / name,
            ignore=lambda d, n: [x for x in n if x not in (".zarray", ".zattrs", "zarr.json")],
        )
        zarr.open_array(str(twin / name), mode="r+")[...] = group[name][...]


@pytest.mark.parametrize(("version", "compression", "shard"), OPTIONS)
def test_files_are_byte_identical_to_zarrs(
    src, tmp_path, small_chunks, version, compression, shard
):
    out = tmp_path / "ours.zarr"
    res = ctstack.export(
        src,
        out,
        format="ome-zarr",
        ngff_version=version,
        compression=compression,
        shard=shard,
        max_size=8,
    )
    assert res.extra["compression"] == compression and res.extra["shard"] == shard
    twin = tmp_path / "zarr.zarr"
    zarr_twin(out, twin)
    ours, theirs = files_under(out), files_under(twin)
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    meta = json.loads((out / "0" / ("zarr.json" if version == "0.5" else ".zarray")).read_text())
    text = json.dumps(meta)
    assert ("sharding_indexed" in text) == shard
    assert ("blosc" in text) == (compression != "none")
    if compression != "none":
        assert compression in text
    # the empty top rows: no file for their chunks
    level0 = [k for k in ours if k.startswith("0/") and not k.endswith(("zarr.json", ".zarray"))]
    assert level0 and len(level0) < ((21 + 3) // 4) * ((37 + 7) // 8) * ((45 + 7) // 8)
    back = ctstack.open_stack(out)
    np.testing.assert_array_equal(np.asarray(back.data), np.asarray(ctstack.open_stack(src).data))


@pytest.mark.parametrize(("version", "compression", "shard"), [OPTIONS[0], OPTIONS[6]])
def test_region_by_region_writing_makes_the_local_files(
    src, tmp_path, small_chunks, version, compression, shard
):
    """What a cluster task does: metadata once, then each task its own z-blocks (here in
    reverse order), then the group's attributes: the same files as the local export."""
    from ctstack._export.regions import make_region
    from ctstack.pyramid import make_cascade

    local = tmp_path / "local.zarr"
    ctstack.export(
        src,
        local,
        format="ome-zarr",
        ngff_version=version,
        compression=compression,
        shard=shard,
        max_size=8,
    )
    stack = ctstack.open_stack(src)
    vol = np.asarray(stack.data)
    region = make_region(stack, None, None, None, 0, stack.shape)
    stored = ome_zarr.shapes(region, 8)
    levels = [vol]
    cascade = make_cascade(SHAPE[1], SHAPE[2], len(stored) - 1, vol.dtype)
    outs = [np.empty(s, vol.dtype) for s in cascade.level_shapes]
    built = [np.zeros(s, vol.dtype) for s in stored[1:]]
    for plane in vol:
        for lv, z in cascade.push(np.ascontiguousarray(plane), outs):
            built[lv - 1][z] = outs[lv - 1]
    for lv, z in cascade.finish(outs):
        built[lv - 1][z] = outs[lv - 1]
    levels += built
    root = tmp_path / "tasks.zarr"
    root.mkdir()
    arrays = ome_zarr.create_image(root, stored, vol.dtype, version, compression, shard)
    for arr, data in zip(arrays, levels, strict=True):
        depth = ome_zarr.z_depth(arr)
        for start in reversed(range(0, data.shape[0], depth)):
            ome_zarr.write_chunks(root, arr, start, data[start : start + depth])
    prov = json.loads((local / (".zattrs" if version == "0.4" else "zarr.json")).read_text())
    prov = prov["ctstack"] if version == "0.4" else prov["attributes"]["ctstack"]
    ome_zarr.finish_image(root, region, len(stored), stack.name, version, prov)
    from ctstack._export.guard import MARKER

    (root / MARKER).write_bytes((local / MARKER).read_bytes())  # the staging's, not the writer's
    ours, theirs = files_under(root), files_under(local)
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    with pytest.raises(UnsupportedExport, match="not one chunk layer"):
        ome_zarr.write_chunks(root, arrays[0], 1, levels[0][1:5])


def test_options_are_checked_before_anything_is_written(src, tmp_path):
    out = tmp_path / "x.zarr"
    with pytest.raises(UnsupportedExport, match=r"needs OME-NGFF 0\.5"):
        ctstack.export(src, out, format="ome-zarr", shard=True)
    with pytest.raises(UnsupportedExport, match="compression must be one of"):
        ctstack.export(src, out, format="ome-zarr", compression="gzip")
    with pytest.raises(UnsupportedExport, match=r"apply to format=.ome-zarr. only"):
        ctstack.export(src, tmp_path / "t", format="tiff", compression="zstd")
    assert sorted(os.listdir(tmp_path)) == []


def test_cli_compression_and_shard(src, tmp_path, capsys):
    out = tmp_path / "c.ome.zarr"
    args = ["export", str(src), str(out), "-f", "ome-zarr", "--ngff", "0.5", "--json"]
    assert main([*args, "--compression", "zstd", "--shard"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "ome-zarr"
    meta = json.dumps(json.loads((out / "0" / "zarr.json").read_text()))
    assert "sharding_indexed" in meta and "zstd" in meta
    assert main(["export", str(src), str(tmp_path / "d"), "-f", "ome-zarr", "--shard"]) == 2
    assert "needs OME-NGFF 0.5" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_identical_input_gives_identical_output(src, tmp_path, small_chunks):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    for out in (a, b):
        ctstack.export(src, out, format="ome-zarr", ngff_version="0.5", shard=True, max_size=8)
    fa, fb = files_under(a), files_under(b)
    assert fa.keys() == fb.keys()
    # only the provenance attributes may differ (the output path); every chunk file is equal
    assert [k for k in fa if fa[k] != fb[k] and not k.endswith(("zarr.json", "export"))] == []


def test_a_failing_shard_write_stops_the_writers_and_leaves_nothing(
    src, tmp_path, monkeypatch, small_chunks
):
    calls: list[str] = []
    real = ome_zarr._ChunkFiles.write

    def write(self, path, block):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(self, path, block)

    monkeypatch.setattr(ome_zarr._ChunkFiles, "write", write)
    with pytest.raises(ExportError, match=r"disk full.*removed"):
        ctstack.export(
            src, tmp_path / "out.zarr", format="ome-zarr", ngff_version="0.5", shard=True
        )
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.zarr").exists()
