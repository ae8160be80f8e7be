"""Tile geometry without a browser: planes of each view, the level for a zoom, the tiles a
rectangle meets (edges, odd shapes) and the checks on what a request may ask for."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctstack.errors import InvalidArgument
from ctstack.jupyter import _tiles


def test_planes_of_each_view():
    shape = (5, 7, 11)
    assert _tiles.plane_shape(shape, "xy") == (7, 11)
    assert _tiles.plane_shape(shape, "xz") == (5, 11)
    assert _tiles.plane_shape(shape, "yz") == (5, 7)
    assert [_tiles.plane_axis(v) for v in _tiles.VIEWS] == [0, 1, 2]
    with pytest.raises(InvalidArgument, match="view"):
        _tiles.plane_shape(shape, "zx")


def test_aspect_is_row_height_over_column_width():
    voxel = (4.0, 2.0, 1.0)  # dz, dy, dx
    assert _tiles.aspect(voxel, "xy") == 2.0
    assert _tiles.aspect(voxel, "xz") == 4.0
    assert _tiles.aspect(voxel, "yz") == 2.0
    assert _tiles.aspect((1.0, 0.0, 0.0), "xy") == 1.0  # unusable sizes fall back to square


@pytest.mark.parametrize(
    ("zoom", "dpr", "levels", "expected"),
    [
        (1.0, 1.0, 4, 0),  # 1:1 -> full resolution
        (3.0, 1.0, 4, 0),  # zoomed in
        (0.5, 1.0, 4, 1),
        (0.49, 1.0, 4, 1),  # a level-2 pixel would span 1.96 screen pixels: too coarse
        (0.25, 1.0, 4, 2),
        (0.2, 1.0, 4, 2),
        (0.01, 1.0, 4, 3),  # clamped to the coarsest
        (0.5, 2.0, 4, 0),  # a HiDPI screen needs the finer level
        (0.25, 2.0, 4, 1),
        (0.1, 1.0, 1, 0),  # no pyramid: level 0 only
        (None, 1.0, 3, 2),  # no zoom: the coarsest
        (-1.0, 1.0, 3, 2),
        (math.inf, 1.0, 3, 0),
        (math.nan, 1.0, 3, 2),
    ],
)
def test_level_choice(zoom, dpr, levels, expected):
    assert _tiles.choose_level(zoom, levels, dpr) == expected


@given(st.floats(1e-4, 64), st.floats(0.5, 3), st.integers(1, 8))
def test_chosen_level_pixel_spans_at_most_one_device_pixel(zoom, dpr, n):
    k = _tiles.choose_level(zoom, n, dpr)
    assert 0 <= k < n
    device = zoom * dpr * 2**k  # device pixels per level-k pixel
    assert k == 0 or device <= 1 + 1e-9
    # and it is the coarsest such level (unless clamped at the last one)
    assert k == n - 1 or zoom * dpr * 2 ** (k + 1) > 1 - 1e-9


def test_grid_and_bounds_cut_at_the_edges():
    assert _tiles.grid(513, 256, 256) == (3, 1)
    assert _tiles.tile_bounds(2, 0, 513, 256, 256) == (512, 513, 0, 256)
    assert _tiles.tile_bounds(0, 0, 7, 5, 256) == (0, 7, 0, 5)
    assert _tiles.grid(1, 1) == (1, 1)


def test_visible_tiles_of_a_rectangle():
    # 600 x 300 plane, tiles of 256: a 3 x 2 grid
    assert _tiles.visible_tiles((600, 300), 0, 0, 600, 300) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)
    ]  # fmt: skip
    assert _tiles.visible_tiles((600, 300), 250, 10, 260, 20) == [(0, 0), (1, 0)]
    assert _tiles.visible_tiles((600, 300), 256, 256, 512, 300) == [(1, 1)]  # edges half-open
    # a view larger than the plane is clipped to it; one outside it sees nothing
    assert len(_tiles.visible_tiles((600, 300), -1e6, -1e6, 1e6, 1e6)) == 6
    assert _tiles.visible_tiles((600, 300), 700, 0, 900, 300) == []
    assert _tiles.visible_tiles((600, 300), 10, 10, 10, 50) == []  # empty
    assert _tiles.visible_tiles((600, 300), math.nan, 0, 10, 10) == []


@given(
    st.integers(1, 2000),
    st.integers(1, 2000),
    st.sampled_from([16, 64, 256]),
    st.floats(-500, 2500),
    st.floats(-500, 2500),
    st.floats(1, 3000),
    st.floats(1, 3000),
)
def test_visible_tiles_cover_exactly_the_pixels_in_view(rows, cols, tile, top, left, h, w):
    got = set(_tiles.visible_tiles((rows, cols), top, left, top + h, left + w, tile))
    nr, nc = _tiles.grid(rows, cols, tile)
    for r, c in got:
        r0, r1, c0, c1 = _tiles.tile_bounds(r, c, rows, cols, tile)
        assert 0 <= r < nr and 0 <= c < nc
        assert r0 < top + h and r1 > top - tile and c0 < left + w and c1 > left - tile
    # every pixel inside both the plane and the rectangle is in a returned tile
    for y in (max(top, 0), min(top + h, rows) - 1e-6):
        for x in (max(left, 0), min(left + w, cols) - 1e-6):
            if 0 <= y < rows and 0 <= x < cols and top <= y < top + h and left <= x < left + w:
                assert (int(y // tile), int(x // tile)) in got


def test_fit_zoom_fits_the_plane_with_its_aspect():
    assert _tiles.fit_zoom((100, 200), (400, 400)) == 2.0
    assert _tiles.fit_zoom((100, 200), (400, 400), vscale=8.0) == 0.5  # 800 tall physically


def test_requested_tiles_are_checked():
    assert _tiles.check_tiles([[0, 1], (1, 0)], 300, 300) == [(0, 1), (1, 0)]
    with pytest.raises(InvalidArgument, match="outside"):
        _tiles.check_tiles([[2, 0]], 300, 300)
    with pytest.raises(InvalidArgument, match="outside"):
        _tiles.check_tiles([[-1, 0]], 300, 300)
    with pytest.raises(InvalidArgument, match=r"\[row, col\]"):
        _tiles.check_tiles([[0]], 300, 300)
    with pytest.raises(InvalidArgument, match=r"\[row, col\]"):
        _tiles.check_tiles(["ab"], 300, 300)
    with pytest.raises(InvalidArgument, match="at most"):
        _tiles.check_tiles([[0, 0]] * (_tiles.MAX_TILES + 1), 300, 300)


def test_level_range_maps_a_level_index_back_to_level_0():
    assert list(_tiles.level_range(0, 4, 10)) == [4]
    assert list(_tiles.level_range(2, 1, 10)) == [4, 5, 6, 7]
    assert list(_tiles.level_range(2, 2, 10)) == [8, 9]  # cut at the edge
