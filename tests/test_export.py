"""Export round trips: every format, levels 0..k, odd region edges, names, numbering, metadata."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack._export.guard import MARKER
from ctstack.errors import Cancelled, ExportError
from tests.test_export_reference import (
    VOXEL,
    leftovers,
    level_slices,
    make_volume,
    reference_levels,
    snapshot,
    write_slices,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (13, 22, 27)
REGION = ((3, 12), (1, 20), (4, 25))  # odd edges on every axis


def open_with_levels(folder, max_size=4):
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=max_size)
    return stack


@pytest.fixture(scope="module")
def u16(tmp_path_factory):
    """A uint16 stack numbered 100, 102, ... (step 2), prefix scan_, 5 digits, and its levels."""
    folder = tmp_path_factory.mktemp("src") / "stack"
    vol = make_volume(SHAPE, "uint16", 1)
    write_slices(folder, vol, first=100, step=2)
    return folder, reference_levels(vol, 3)


def region_kw(region=REGION):
    return dict(zip("zyx", (slice(*r) for r in region), strict=False))


def test_tiff_level0_keeps_source_names_numbers_and_metadata(u16, tmp_path):
    folder, ref = u16
    stack = ctstack.open_stack(folder)
    before = snapshot(folder)
    res = ctstack.export(stack, tmp_path / "out", format="tiff", **region_kw())
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != MARKER)
    assert names == [f"scan_{100 + 2 * z:05d}.tif" for z in range(3, 12)]
    assert [p.name for p in res.files] == names and res.bytes > 0 and res.seconds >= 0
    back = ctstack.open_stack(tmp_path / "out")
    assert back.shape == (9, 19, 21) and back.dtype == np.uint16
    np.testing.assert_array_equal(back.data.compute(), ref[0][level_slices(REGION, 0)])
    assert back.voxel_size == pytest.approx(VOXEL) and back.unit == "micrometer"
    with tifffile.TiffFile(tmp_path / "out" / names[0]) as tif:
        prov = json.loads(tif.pages[0].tags[65000].value)
        ij = tif.imagej_metadata
    assert prov["region"] == [list(r) for r in REGION] and prov["level"] == 0
    assert prov["source"] == str(folder) and prov["program"].startswith("ctstack ")
    assert prov["origin"] == pytest.approx([3 * 5.0, 1 * 2.5, 4 * 2.5])
    assert prov["z_index"] == 3
    assert ij["xorigin"] == pytest.approx(-4) and ij["zorigin"] == pytest.approx(-3)
    assert snapshot(folder) == before


@pytest.mark.parametrize("level", [1, 2])
def test_tiff_level_k_numbered_from_zero(u16, tmp_path, level):
    folder, ref = u16
    stack = open_with_levels(folder)
    res = ctstack.export(stack, tmp_path / "out", level=level, prefix="crop_", **region_kw())
    want = ref[level][level_slices(REGION, level)]
    assert [p.name for p in res.files] == [f"crop_{i:05d}.tif" for i in range(want.shape[0])]
    back = ctstack.open_stack(tmp_path / "out")
    np.testing.assert_array_equal(back.data.compute(), want)
    f = 1 << level
    assert back.voxel_size == pytest.approx(tuple(v * f for v in VOXEL))
    with tifffile.TiffFile(res.files[0]) as tif:
        prov = json.loads(tif.pages[0].tags[65000].value)
    z0, y0, x0 = (r.start for r in level_slices(REGION, level))
    want_origin = [(i * f + (f - 1) / 2) * v for i, v in zip((z0, y0, x0), VOXEL, strict=False)]
    assert prov["origin"] == pytest.approx(want_origin) and prov["level"] == level


def test_missing_level_is_refused(u16, tmp_path):
    fresh = tmp_path / "fresh"  # a copy without the pyramids other tests built for u16
    fresh.mkdir()
    for p in u16[0].glob("*.tif"):
        shutil.copy2(p, fresh / p.name)
    stack = ctstack.open_stack(fresh)  # default max_size: a small stack has level 0 only
    with pytest.raises(ExportError, match="level 3 does not exist"):
        ctstack.export(stack, tmp_path / "out", level=3)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int32", "float32", "float64"])
def test_tiff_slices_every_dtype(tmp_path, dtype):
    vol = make_volume((5, 9, 11), dtype, 2)
    write_slices(tmp_path / "src", vol)
    res = ctstack.export(tmp_path / "src", tmp_path / "out", z=(1, 4), x=slice(2, 9))
    back = ctstack.open_stack(tmp_path / "out")
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data.compute(), vol[1:4, :, 2:9])
    assert len(res.files) == 3


@pytest.mark.parametrize("fmt,dtype", [("png", "uint8"), ("png", "uint16"), ("bmp", "uint8")])
def test_png_bmp(tmp_path, fmt, dtype):
    vol = make_volume((4, 9, 11), dtype, 3)
    write_slices(tmp_path / "src", vol)
    res = ctstack.export(tmp_path / "src", tmp_path / "out", format=fmt, y=(2, 9))
    assert [p.name for p in res.files] == [f"scan_{i:05d}.{fmt}" for i in range(4)]
    back = ctstack.open_stack(tmp_path / "out")
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data.compute(), vol[:, 2:9])


def test_png_refuses_signed_and_window_makes_8bit(tmp_path):
    vol = make_volume((3, 6, 7), "int16", 4)
    write_slices(tmp_path / "src", vol)
    with pytest.raises(ExportError, match="PNG cannot hold int16"):
        ctstack.export(tmp_path / "src", tmp_path / "out", format="png")
    res = ctstack.export(tmp_path / "src", tmp_path / "out", format="bmp", window=(-1000, 3000))
    back = ctstack.open_stack(tmp_path / "out").data.compute()
    want = np.clip((vol.astype(np.float64) + 1000) / 4000, 0, 1) * 255
    np.testing.assert_array_equal(back, np.floor(want + 0.5).astype(np.uint8))
    assert res.dtype == "uint8"


@pytest.mark.parametrize(
    "dtype,flavour",
    [
        ("uint16", "imagej"),
        ("float32", "imagej"),
        ("int16", "ome-bigtiff"),
        ("float64", "ome-bigtiff"),
    ],
)
def test_tiff_stack(tmp_path, dtype, flavour):
    vol = make_volume((6, 9, 11), dtype, 5)
    write_slices(tmp_path / "src", vol)
    stack = ctstack.open_stack(tmp_path / "src", voxel_size=VOXEL, unit="um")
    out = tmp_path / "vol.tif"
    res = ctstack.export(stack, out, format="tiff-stack", z=(1, 6), y=(0, 7))
    assert res.extra["flavour"] == flavour and res.files == [out]
    back = ctstack.open_stack(out)
    np.testing.assert_array_equal(back.data.compute(), vol[1:6, 0:7])
    assert back.voxel_size == pytest.approx(VOXEL) and back.unit == "micrometer"
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej == (flavour == "imagej") and tif.is_bigtiff == (flavour != "imagej")
        prov = json.loads(tif.pages[0].tags[65000].value)
    assert prov["region"] == [[1, 6], [0, 7], [0, 11]]


@pytest.mark.parametrize("version,level", [("0.4", 0), ("0.5", 1)])
def test_ome_zarr_round_trip(u16, tmp_path, version, level):
    folder, ref = u16
    stack = open_with_levels(folder)
    out = tmp_path / "crop.ome.zarr"
    res = ctstack.export(
        stack, out, format="ome-zarr", level=level, ngff_version=version, max_size=4, **region_kw()
    )
    want = ref[level][level_slices(REGION, level)]
    want_levels = reference_levels(want, 3)
    back = ctstack.open_stack(out)
    f = 1 << level
    assert back.voxel_size == pytest.approx(tuple(v * f for v in VOXEL))
    z0, y0, x0 = (r.start for r in level_slices(REGION, level))
    want_origin = [(i * f + (f - 1) / 2) * v for i, v in zip((z0, y0, x0), VOXEL, strict=False)]
    assert back.origin == pytest.approx(want_origin)
    assert back.metadata["ngff_version"] == version
    shapes = [tuple(a.shape) for a in back.levels]
    assert res.extra["levels"] == len(shapes) and max(shapes[-1]) <= 4
    for got, exp in zip(back.levels, want_levels, strict=False):
        np.testing.assert_array_equal(np.asarray(got), exp)
    meta_file = out / (".zattrs" if version == "0.4" else "zarr.json")
    attrs = json.loads(meta_file.read_text())
    attrs = attrs if version == "0.4" else attrs["attributes"]
    assert attrs["ctstack"]["region"] == [list(r) for r in REGION]
    assert attrs["ctstack"]["level"] == level


@pytest.mark.parametrize(
    ("version", "compression", "shard"),
    [("0.4", "lz4", False), ("0.5", "zstd", True), ("0.5", "none", False), ("0.4", "none", False)],
)
def test_ome_zarr_read_by_ome_zarr_py_and_napari_plugin(u16, tmp_path, version, compression, shard):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    folder, ref = u16
    out = tmp_path / "img.ome.zarr"
    ctstack.export(
        folder,
        out,
        format="ome-zarr",
        max_size=8,
        ngff_version=version,
        compression=compression,
        shard=shard,
        **region_kw(),
    )
    want = ref[0][level_slices(REGION, 0)]
    nodes = list(Reader(parse_url(str(out)))())
    image = next(n for n in nodes if n.load(Multiscales))
    np.testing.assert_array_equal(np.asarray(image.data[0]), want)
    np.testing.assert_array_equal(np.asarray(image.data[1]), reference_levels(want, 1)[1])
    axes = image.metadata["axes"]
    assert [a["name"] for a in axes] == ["z", "y", "x"]
    assert {a["unit"] for a in axes} == {"micrometer"}
    scale = image.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == pytest.approx(VOXEL)

    from napari_ome_zarr import napari_get_reader

    layers = napari_get_reader(str(out))(str(out))
    data, kwargs = layers[0][0], layers[0][1]
    np.testing.assert_array_equal(np.asarray(data[0]), want)
    assert list(kwargs["scale"])[-3:] == pytest.approx(VOXEL)


def test_refuses_to_overwrite_then_replaces(u16, tmp_path):
    folder, _ref = u16
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        ctstack.export(folder, out, z=(0, 2))
    assert (out / "keep.txt").read_text() == "mine"
    # a folder that is no export of ours is never replaced, even with overwrite
    with pytest.raises(ExportError, match=r"no ctstack slice export.*rm -r"):
        ctstack.export(folder, out, z=(0, 2), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    out = tmp_path / "out2"
    ctstack.export(folder, out, z=(0, 4))
    ctstack.export(folder, out, z=(0, 2), overwrite=True)  # an earlier export is replaced
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "scan_00100.tif", "scan_00102.tif"]
    assert leftovers(tmp_path) == []


def test_refuses_to_write_over_the_source(u16):
    with pytest.raises(ExportError, match="source"):
        ctstack.export(u16[0], u16[0], overwrite=True)


@pytest.mark.parametrize("fmt", ["tiff", "tiff-stack", "ome-zarr"])
def test_cancel_mid_way_leaves_nothing(u16, tmp_path, fmt):
    folder, _ = u16
    before = snapshot(folder)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 4:
            cancel.set()

    with pytest.raises(Cancelled):
        ctstack.export(folder, tmp_path / "out", format=fmt, progress=progress, cancel=cancel)
    assert seen[-1] == 4 < 13  # stopped mid-way, not before or after
    assert list(tmp_path.iterdir()) == [] and snapshot(folder) == before


def test_cancel_removes_the_folders_it_made_for_the_output(u16, tmp_path):
    folder, _ = u16
    (tmp_path / "kept").mkdir()
    cancel = threading.Event()

    def progress(done, total):
        if done == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        ctstack.export(folder, tmp_path / "kept/new/deeper/out", progress=progress, cancel=cancel)
    # the folders made for the output go; the one that was there stays
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept"]


@pytest.mark.parametrize(
    "fmt,errno_,words",
    [
        ("tiff", 28, "disk full"),
        ("ome-zarr", 13, "permission denied"),
        ("tiff-stack", 28, "disk full"),
    ],
)
def test_write_failure_mid_way_removes_partial_output(
    u16, tmp_path, monkeypatch, fmt, errno_, words
):
    import os

    from ctstack._export import ome_zarr, slices, tiff_stack

    folder, _ = u16
    before = snapshot(folder)
    calls = []

    def failing(real):
        def wrapper(*args, **kwargs):
            calls.append(1)
            if len(calls) == 5:
                raise OSError(errno_, os.strerror(errno_), "somefile")
            return real(*args, **kwargs)

        return wrapper

    if fmt == "tiff":
        monkeypatch.setattr(slices.SliceWriter, "_tiff", failing(slices.SliceWriter._tiff))
    elif fmt == "ome-zarr":
        monkeypatch.setattr(ome_zarr._Slabs, "put", failing(ome_zarr._Slabs.put))
    else:
        real_write = tiff_stack.write_stack

        def write_stack(path, planes, *a):
            def gen():
                for i, p in enumerate(planes):
                    if i == 5:
                        raise OSError(errno_, os.strerror(errno_), str(path))
                    yield p

            return real_write(path, gen(), *a)

        monkeypatch.setattr(tiff_stack, "write_stack", write_stack)
        calls.extend([1] * 5)
    with pytest.raises(ExportError, match=words):
        ctstack.export(folder, tmp_path / "out", format=fmt, max_size=4)
    assert len(calls) >= 5
    assert list(tmp_path.iterdir()) == [] and snapshot(folder) == before


def test_not_enough_space_is_checked_first(u16, tmp_path, monkeypatch):
    import shutil

    from ctstack._export import NotEnoughSpace

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(NotEnoughSpace, match="needs about"):
        ctstack.export(u16[0], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_bad_region_and_format(u16, tmp_path):
    with pytest.raises(ExportError, match="outside"):
        ctstack.export(u16[0], tmp_path / "o", z=(5, 99))
    with pytest.raises(ExportError, match="empty"):
        ctstack.export(u16[0], tmp_path / "o", x=slice(5, 5))
    with pytest.raises(ExportError, match="unknown export format"):
        ctstack.export(u16[0], tmp_path / "o", format="jpeg2000")
