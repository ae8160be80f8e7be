"""Tile pixels read for the viewer equal numpy slices of the stack and its pyramid levels, for
every view, level and odd shape; dtypes are converted as the browser expects; missing and
bad slices come back as zeros, flagged."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctstack
from ctstack.errors import InvalidArgument
from ctstack.jupyter import _tiles
from ctstack.jupyter._reader import TileReader, sent_dtype
from ctstack.sample import write_phantom_stack

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPES = [(9, 37, 23), (1, 5, 70), (16, 16, 16)]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Stacks of odd shapes with a cached pyramid down to 4 voxels, and their volumes."""
    out = []
    for i, shape in enumerate(SHAPES):
        folder = tmp_path_factory.mktemp(f"odd{i}")
        write_phantom_stack(folder / "s", shape, "uint16", seed=i)
        stack = ctstack.open_stack(folder / "s")
        stack.build_pyramid(max_size=4, cache_dir=folder / "cache")
        levels = [np.asarray(level) for level in stack.levels]
        out.append((stack, levels))
    return out


def plane_of(volume: np.ndarray, view: str, plane: int) -> np.ndarray:
    index = [slice(None)] * 3
    index[_tiles.plane_axis(view)] = plane
    return volume[tuple(index)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_tiles_equal_numpy_slices_of_every_level(stacks, data):
    stack, levels = data.draw(st.sampled_from(stacks))
    tile = data.draw(st.sampled_from([3, 8, 256]))
    reader = TileReader(stack, tile=tile)
    assert reader.shapes == [lv.shape for lv in levels]
    view = data.draw(st.sampled_from(_tiles.VIEWS))
    level = data.draw(st.integers(0, len(levels) - 1))
    volume = levels[level]
    plane = data.draw(st.integers(0, volume.shape[_tiles.plane_axis(view)] - 1))
    expected = plane_of(volume, view, plane)
    nr, nc = _tiles.grid(*expected.shape, tile)
    every = [(r, c) for r in range(nr) for c in range(nc)]
    wanted = data.draw(st.lists(st.sampled_from(every), min_size=1, max_size=6, unique=True))
    got = reader.read(view, level, plane, [list(t) for t in wanted])
    assert [(t.r, t.c) for t in got] == wanted
    for t in got:
        r0, r1, c0, c1 = _tiles.tile_bounds(t.r, t.c, *expected.shape, tile)
        assert (t.h, t.w) == (r1 - r0, c1 - c0) == t.data.shape
        assert t.data.flags.c_contiguous and t.data.dtype == np.uint16
        np.testing.assert_array_equal(t.data, expected[r0:r1, c0:c1])
        assert not t.missing


def test_level_0_comes_from_the_slice_reader_and_levels_from_the_cache(stacks):
    stack, _ = stacks[0]
    assert stack.pyramid is not None and stack.pyramid.stores
    reader = TileReader(stack)
    assert reader._arrays[1] is stack.pyramid.stores[0]  # zarr, not dask
    calls = []
    original = stack.read_slice

    def counting(z, out=None):
        calls.append(z)
        return original(z, out=out)

    stack.read_slice = counting
    try:
        reader.read("xy", 0, 4, [[0, 0]])
        reader.read("xy", 0, 4, [[0, 0]])  # the decoded slice is reused
        reader.read("xz", 0, 2, [[0, 0]])
        reader.read("yz", 1, 1, [[0, 0]])  # level 1: no slice read
    finally:
        del stack.read_slice
    assert calls.count(4) == 1
    assert sorted(set(calls)) == list(range(stack.shape[0]))  # xz read each slice once


@pytest.mark.parametrize(
    ("dtype", "sent"),
    [
        ("uint8", "uint8"),
        ("uint16", "uint16"),
        ("int16", "int16"),
        ("float32", "float32"),
        ("int32", "float32"),
        ("uint32", "float32"),
        ("float64", "float32"),
    ],
)
def test_sent_dtypes(dtype, sent):
    assert sent_dtype(dtype) == np.dtype(sent)


def test_int32_stack_sent_as_float32(tmp_path):
    volume = np.arange(3 * 4 * 5, dtype=np.int32).reshape(3, 4, 5) * 1000 - 7000
    for z, plane in enumerate(volume):
        tifffile.imwrite(tmp_path / f"s_{z:03d}.tif", plane)
    stack = ctstack.open_stack(tmp_path)
    (tile,) = TileReader(stack).read("yz", 0, 2, [[0, 0]])
    assert tile.data.dtype == np.float32
    np.testing.assert_array_equal(tile.data, volume[:, :, 2].astype(np.float32))


def test_missing_and_bad_slices_are_zeros_flagged(tmp_path):
    volume = (np.arange(6 * 4 * 5, dtype=np.uint16).reshape(6, 4, 5) + 1) * 10
    for z in (0, 1, 3, 4, 5):  # z = 2 has no file: a gap in the numbering
        tifffile.imwrite(tmp_path / f"s_{z:03d}.tif", volume[z])
    (tmp_path / "s_004.tif").write_bytes(b"not a tiff at all")  # a bad slice
    stack = ctstack.open_stack(tmp_path)
    assert stack.missing == [2] and [b.z for b in stack.bad_slices] == [4]
    reader = TileReader(stack, tile=2)
    (t,) = reader.read("xy", 0, 2, [[0, 0]])
    assert t.missing and not t.data.any()
    (t,) = reader.read("xy", 0, 3, [[1, 1]])
    assert not t.missing
    np.testing.assert_array_equal(t.data, volume[3, 2:4, 2:4])
    top, middle, bottom = reader.read("xz", 0, 1, [[0, 0], [1, 0], [2, 0]])  # rows z 0-1, 2-3, 4-5
    assert (top.missing, middle.missing, bottom.missing) == (False, True, True)
    assert not middle.data[0].any() and not bottom.data[0].any()
    np.testing.assert_array_equal(middle.data[1], volume[3, 1, :2])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("zz", 0, 0, [[0, 0]]), "view"),
        (("xy", 7, 0, [[0, 0]]), "level"),
        (("xy", -1, 0, [[0, 0]]), "level"),
        (("xy", 0, 99, [[0, 0]]), "plane"),
        (("xy", 0, "3", [[0, 0]]), "plane"),
        (("xy", 0, 0, [[5, 5]]), "outside"),
        (("xy", 0, 0, [None]), "row, col"),
    ],
)
def test_bad_requests_are_invalid_argument(stacks, args, match):
    stack, _ = stacks[2]
    with pytest.raises(InvalidArgument, match=match):
        TileReader(stack).read(*args)


def test_no_tiles_reads_nothing(stacks):
    stack, _ = stacks[1]
    assert TileReader(stack).read("xy", 0, 0, []) == []


def test_an_ome_zarr_source_is_read_from_its_own_levels(stacks, tmp_path):
    stack, _ = stacks[0]
    out = tmp_path / "scan.ome.zarr"
    ctstack.export(stack, out, format="ome-zarr", max_size=8)
    ome = ctstack.open_stack(out)
    assert ome.stored_levels and ome.pyramid is None
    levels = [np.asarray(level) for level in ome.levels]
    reader = TileReader(ome, tile=8)
    assert reader.shapes == [lv.shape for lv in levels]
    for view, level, plane in [("xz", 0, 5), ("yz", 0, 3), ("xy", 1, 2), ("yz", 2, 1)]:
        expected = plane_of(levels[level], view, plane)
        (t,) = reader.read(view, level, plane, [[0, 1]])
        np.testing.assert_array_equal(t.data, expected[:8, 8:16])
