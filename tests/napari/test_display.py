"""The display arrays napari slices (``ctstack.napari._display``): same pixels as the dask levels,
lazy tile indexing, read-ahead in bounds and in the direction of travel, no dask per z step."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctstack
from ctstack.cache import clean_location
from ctstack.errors import CacheGone
from ctstack.napari import _layer
from ctstack.napari._display import DisplayArray, PlaneCache, ZarrSource
from ctstack.napari._layer import display_levels, layer_data

SHAPE = (13, 37, 29)  # odd on every axis, so every level has partial edge blocks
MAX_SIZE = 8  # levels 13x37x29, 7x19x15, 4x10x8, 2x5x4


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[ctstack.Stack, list[DisplayArray], list[np.ndarray]]:
    """The odd phantom with its pyramid: the stack, its display levels, and each level in RAM."""
    from ctstack.sample import write_phantom_stack

    folder = tmp_path_factory.mktemp("display") / "phantom"
    write_phantom_stack(folder, SHAPE, "uint16", voxel_size_um=5.0)
    stack = ctstack.open_stack(folder)
    levels = stack.build_pyramid(max_size=MAX_SIZE)
    assert len(levels) == 4
    return stack, display_levels(stack, levels), [np.asarray(a) for a in levels]


def _index(n: int, spill: int = 3) -> st.SearchStrategy:
    """One axis's index: an int (negative too) or a slice with any step and bounds up to
    ``spill`` past either end."""
    bound = st.none() | st.integers(-n - spill, n + spill)
    step = st.none() | st.integers(-4, 4).filter(lambda s: s != 0)
    slices = st.builds(slice, bound, bound, step)
    return slices if n == 0 else st.integers(-n, n - 1) | slices


@st.composite
def index_tuple(draw: st.DrawFn, shape: tuple[int, ...], spill: int = 3) -> tuple:
    """A basic index for ``shape``: up to ndim keys, maybe with an Ellipsis among them."""
    m = draw(st.integers(0, len(shape)))
    if not draw(st.booleans()):
        return tuple(draw(_index(n, spill)) for n in shape[:m])
    at = draw(st.integers(0, m))  # keys before the Ellipsis index the first axes, after it the last
    head = tuple(draw(_index(n, spill)) for n in shape[:at])
    tail = tuple(draw(_index(n, spill)) for n in shape[len(shape) - (m - at) :])
    return (*head, Ellipsis, *tail)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_same_pixels_as_the_dask_levels(phantom, data):
    """Any basic index, applied once or twice (napari: the tile, then the z point), reads the
    same pixels from a display level as numpy indexing of the stack's dask level computed."""
    _, shown, truth = phantom
    k = data.draw(st.integers(0, len(shown) - 1), label="level")
    first = data.draw(index_tuple(truth[k].shape), label="first")
    view = shown[k][first]
    expect = truth[k][first]
    assert view.shape == expect.shape and view.dtype == expect.dtype
    np.testing.assert_array_equal(np.asarray(view), expect)
    if expect.ndim:
        second = data.draw(index_tuple(expect.shape), label="second")
        np.testing.assert_array_equal(np.asarray(view[second]), expect[second])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_same_pixels_as_dask_indexing(phantom, data):
    """The same index on the dask level itself (slice bounds within the axis: dask 2026.8 gets
    a negative step from an out-of-range start wrong, e.g. ``[-11::-1]`` of 10 rows)."""
    stack, shown, _ = phantom
    k = data.draw(st.integers(0, len(shown) - 1), label="level")
    key = data.draw(index_tuple(shown[k].shape, spill=0), label="index")
    np.testing.assert_array_equal(np.asarray(shown[k][key]), stack.levels[k][key].compute())


def test_out_of_range_and_bad_indices_raise_like_numpy(phantom):
    _, shown, _ = phantom
    with pytest.raises(IndexError):
        shown[0][SHAPE[0]]
    with pytest.raises(IndexError):
        shown[0][:, -SHAPE[1] - 1]
    with pytest.raises(IndexError):
        shown[0][0, 0, 0, 0]
    with pytest.raises(IndexError):
        shown[0][..., 0, ...]


def test_tile_indexing_is_lazy_and_a_step_reads_one_plane(tmp_path):
    """napari's first indexing (all z, the tile) reads nothing; the z point reads one plane."""
    from ctstack.sample import write_phantom_stack

    write_phantom_stack(tmp_path / "p", (9, 33, 21), "uint16")
    stack = ctstack.open_stack(tmp_path / "p")
    [level0] = display_levels(stack, [stack.data])
    calls: list[int] = []
    original = stack.read_slice

    def counting(z: int, out: np.ndarray | None = None) -> np.ndarray:
        calls.append(z)
        return original(z, out)

    stack.read_slice = counting  # type: ignore[method-assign]
    level0.source.cache._read = counting  # the cache holds the bound method it was given
    tile = level0[:, 4:30, 2:19]
    assert isinstance(tile, DisplayArray) and tile.shape == (9, 26, 17)
    assert calls == []
    plane = tile[6]
    assert calls[0] == 6 and isinstance(plane, np.ndarray)
    np.testing.assert_array_equal(plane, np.asarray(stack.data[6, 4:30, 2:19]))


def test_projection_none_and_thick_slices_when_picked(phantom):
    """The plugin's layers slice one plane (projection "none"); a user's "mean" still works."""
    from napari.components import ViewerModel

    stack, _, truth = phantom
    data, kwargs, _ = layer_data(stack, stack.levels[:1])
    assert kwargs["projection_mode"] == "none"
    viewer = ViewerModel()
    layer = viewer.add_image(data, **kwargs)
    assert layer.projection_mode == "none"
    viewer.dims.set_current_step(0, 6)
    np.testing.assert_array_equal(layer._slice.image.raw, truth[0][6])

    # thick slicing picked by the user: the same average as napari makes of the volume in RAM
    twin = viewer.add_image(truth[0], scale=kwargs["scale"], translate=kwargs["translate"])
    for lay in (layer, twin):
        lay.projection_mode = "mean"
    viewer.dims.thickness = (5 * stack.voxel_size[0], *viewer.dims.thickness[1:])
    viewer.dims.set_current_step(0, 7)
    shown = layer._slice.image.raw
    np.testing.assert_array_equal(shown, twin._slice.image.raw)
    assert shown.dtype.kind == "f" and not np.array_equal(shown, truth[0][7])


def test_projection_mode_survives_the_swap(phantom):
    """Replacing the layer by its multiscale twin keeps the user's projection mode."""
    from napari.components import ViewerModel

    stack, _, _ = phantom
    data, kwargs, _ = layer_data(stack, stack.levels[:1])
    viewer = ViewerModel()
    layer = viewer.add_image(data, **kwargs)
    layer.projection_mode = "max"
    new = _layer.replace_with_levels(viewer, layer, stack.levels)
    assert new.multiscale and new.projection_mode == "max"


# --- read-ahead ---------------------------------------------------------------------------------


class FakePlanes:
    """Planes of a fake depth-``n`` volume whose pixels say their z; reads are recorded."""

    def __init__(self, n: int, hold: threading.Event | None = None) -> None:
        self.n = n
        self.hold = hold

    def __call__(self, z: int) -> np.ndarray:
        if self.hold is not None:
            self.hold.wait(10)
        return np.full((4, 4), z, np.uint16)


def test_read_ahead_follows_the_direction_of_travel():
    cache = PlaneCache(FakePlanes(100), 100, plane_bytes=32)
    assert cache.capacity == 8
    cache.get(10)
    cache.wait()
    assert cache.held == (10,)  # one step says nothing about the direction
    cache.get(11)
    cache.wait()
    assert set(cache.held) == {11, *range(12, 19)}
    assert cache.direction == 1
    reads_before = len(cache.reads)
    assert int(cache.get(12)[0, 0]) == 12 and len(cache.reads) == reads_before  # read ahead
    cache.wait()
    assert len(cache.held) <= cache.capacity and max(cache.held) == 19
    cache.get(11)  # turn back: planes ahead of the travel are now below
    cache.wait()
    assert cache.direction == -1
    assert set(cache.held) >= set(range(5, 12)) and len(cache.held) <= cache.capacity
    assert list(cache.reads)[-7:] == [10, 9, 8, 7, 6, 5, 4]  # fetched in travel order


def test_jumps_read_nothing_ahead():
    """Strided reads (the contrast sample) or slider jumps are not travel: no read-ahead."""
    cache = PlaneCache(FakePlanes(500), 500, plane_bytes=32)
    for z in (62, 125, 187, 250, 312):
        cache.get(z)
    cache.wait()
    assert cache.direction == 0 and list(cache.reads) == [62, 125, 187, 250, 312]
    cache.get(311)  # a step down after the jump: travel again
    cache.wait()
    assert cache.direction == -1 and list(cache.reads)[-8:] == list(range(311, 303, -1))


def test_read_ahead_stays_within_planes_and_bytes():
    plane = 100 * 2**20  # 100 MB planes: 256 MB holds two
    cache = PlaneCache(FakePlanes(50), 50, plane_bytes=plane)
    assert cache.capacity == 2
    for z in range(0, 30, 1):
        cache.get(z)
        assert len(cache.held) <= 2
    cache.wait()
    assert len(cache.held) <= 2 and cache.held[-1] in (29, 30)
    small = PlaneCache(FakePlanes(50), 50, plane_bytes=1)
    for z in [*range(0, 40), *range(40, 0, -3)]:
        small.get(z)
        assert len(small.held) <= 8
    small.wait()
    assert len(small.held) <= 8


def test_read_ahead_stops_at_the_ends_and_waits_for_a_plane_in_flight():
    gate = threading.Event()
    cache = PlaneCache(FakePlanes(6, gate), 6, plane_bytes=8)
    gate.set()
    cache.get(3)
    cache.get(4)
    cache.wait()
    assert max(cache.held) == 5 and 6 not in cache.reads  # nothing past the last plane
    gate.clear()
    cache.get(3)  # now travelling down: 2, 1, 0 are queued behind the gate
    threading.Timer(0.05, gate.set).start()
    assert int(cache.get(2)[0, 0]) == 2  # waits for the read in flight instead of a second read
    cache.wait()
    assert list(cache.reads).count(2) == 1
    assert set(cache.held) <= {0, 1, 2, 3, 4, 5}


def test_level0_steps_read_ahead_on_a_real_stack(phantom):
    stack, _, truth = phantom
    [level0] = display_levels(stack, [stack.data])
    cache = level0.source.cache
    tile = level0[:, 2:-2, 1:-1]
    for z in (3, 4, 5):
        np.testing.assert_array_equal(tile[z], truth[0][z, 2:-2, 1:-1])
    cache.wait()
    assert set(cache.held) >= {6, 7, 8, 9, 10, 11, 12}


class CountingArray:
    """A zarr array that records the regions read from it."""

    def __init__(self, array: object) -> None:
        self.array = array
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks
        self.reads: list[tuple] = []

    def __getitem__(self, key: tuple) -> np.ndarray:
        self.reads.append(key)
        return self.array[key]


def test_steps_through_a_cached_level_read_the_next_band_ahead():
    import zarr

    data = np.arange(64 * 20 * 20, dtype=np.uint16).reshape(64, 20, 20)
    array = zarr.create_array(store={}, shape=data.shape, chunks=(16, 8, 20), dtype=data.dtype)
    array[:] = data
    counted = CountingArray(array)
    level = DisplayArray(ZarrSource(counted))
    for z in (0, 1, 2):  # travelling up through the first band
        np.testing.assert_array_equal(level[z], data[z])
    level.source._ahead[0][1].result()  # the next band, read in the background
    assert [k[0] for k in counted.reads] == [slice(0, 16), slice(16, 32)]
    for z in range(3, 32):
        np.testing.assert_array_equal(level[:, 2:9][z], data[z, 2:9])
    level.source._ahead[0][1].result()
    assert [k[0] for k in counted.reads] == [slice(0, 16), slice(16, 32), slice(32, 48)]
    assert len(level.source._bands[0]) <= 2  # the current band and the next
    np.testing.assert_array_equal(level[60], data[60])  # a jump: read, nothing ahead
    assert counted.reads[-1][0] == slice(48, 64) and len(counted.reads) == 4


# --- a cache entry gone while shown -------------------------------------------------------------


def test_missing_chunk_raises_and_the_layer_guard_reports_it(tmp_path, monkeypatch):
    from ctstack.sample import write_phantom_stack

    folder = tmp_path / "phantom"
    write_phantom_stack(folder, (16, 40, 40), "uint16")
    stack = ctstack.open_stack(folder)
    levels = stack.build_pyramid(max_size=16)
    raw = DisplayArray(ZarrSource(stack.pyramid.stores[0]))
    seen: list[tuple[object, CacheGone]] = []
    monkeypatch.setattr(_layer, "_gone_handlers", [lambda s, e: seen.append((s, e))])
    shown = display_levels(stack, levels)
    before = np.asarray(shown[1][2])  # a z step: its chunk band is now held in memory
    assert before.any()
    clean_location(folder / ".ctstack")
    with pytest.raises(CacheGone, match=r"\.ctstack.*level 1"):
        np.asarray(raw[2])
    np.testing.assert_array_equal(shown[1][2], before)  # what was read stays valid
    plane = np.asarray(shown[1][:, 3:9][:, 2])  # an xz read: zeros for this read, reported
    assert plane.shape == (8, 20) and not plane.any()
    np.asarray(shown[2][:, 1])
    assert len(seen) == 1 and seen[0][0] is stack  # one report per entry


def test_cached_levels_read_bands_within_their_bound(phantom):
    """A plane of a cached level comes from its chunk band when the band fits the bound, else
    straight from zarr; the pixels are the same either way."""
    stack, _, truth = phantom
    store = stack.pyramid.stores[0]
    nz, ny, _ = truth[1].shape
    banded, direct = ZarrSource(store), ZarrSource(store, max_band_bytes=0)
    plane_only = ZarrSource(store, max_band_bytes=nz * ny * 2)  # a yz plane, not its band
    keys = [(3,), (slice(None), 5), (slice(None, None, -1), slice(2, 17, 3), 4), (-1, -2)]
    for key in keys:
        for source in (banded, direct, plane_only):
            np.testing.assert_array_equal(DisplayArray(source)[key], truth[1][key])
    assert set(banded._bands) == {0, 1, 2} and not direct._bands
    assert len(plane_only._bands[2][0][0][2]) == 1  # the yz plane alone is held
    z_band = banded._bands[0][0][0]
    assert z_band[0].start % store.chunks[0] == 0 and len(z_band[1]) == truth[1].shape[1]


# --- a real viewer: no dask computation during z steps ------------------------------------------


@pytest.mark.gui
def test_no_dask_compute_during_z_steps(make_napari_viewer, phantom_dir: Path, qtbot):
    from dask.callbacks import Callback

    from ctstack.napari._qt.build import controller_for

    ctstack.open_stack(phantom_dir).build_pyramid(max_size=64)
    viewer = make_napari_viewer(show=True)  # shown: napari picks levels by the canvas size
    [layer] = viewer.open(str(phantom_dir), plugin="napari-ctstack")
    assert layer.multiscale and layer.projection_mode == "none"
    qtbot.waitUntil(lambda: not controller_for(viewer).busy, timeout=20000)
    stack = layer.metadata["stack"]

    class Count(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def _start(self, dsk: object) -> None:
            self.n += 1

    counter = Count()
    seen = []
    with counter:
        for px in (0.3, 2.0):  # screen pixels per voxel: level 1 (zoomed out), then level 0
            viewer.reset_view()
            viewer.scene.camera.zoom = px / layer.scale[-1]
            qtbot.wait(50)
            for z in range(10, 20):
                viewer.dims.set_current_step(0, z)
                qtbot.wait(1)
                seen.append((layer.data_level, z, np.array(layer._slice.image.raw)))
    levels_seen = {level for level, _, _ in seen}
    for level, z, raw in seen:  # and what was shown is the right plane
        plane = np.asarray(stack.levels[level][int(np.round(z / 2**level))])  # napari rounds
        assert any(
            np.array_equal(raw, plane[y : y + raw.shape[0], x : x + raw.shape[1]])
            for y in range(plane.shape[0] - raw.shape[0] + 1)
            for x in range(plane.shape[1] - raw.shape[1] + 1)
        )
    assert levels_seen == {0, 1}
    assert counter.n == 0
    with counter:  # the counter does see a dask computation
        stack.data[3].compute()
    assert counter.n == 1
