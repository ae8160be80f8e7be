"""Orthogonal views (XZ, YZ) in a shown napari viewer: pixels, crosshair, clicks, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ctstack.napari
from ctstack.napari import _ortho
from ctstack.napari._qt.build import controller_for
from ctstack.viewmodel import model_for

from ..conftest import real_scan
from .conftest import correlation, rendered_on_grid

PLUGIN = "napari-ctstack"
pytestmark = pytest.mark.gui


def _open(viewer, path, qtbot):
    """Open with the plugin and wait until its background build (if any) has finished."""
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    ctl = controller_for(viewer)
    qtbot.waitUntil(
        lambda: ctl.job(layer.metadata["stack"]) is not None or layer.multiscale, timeout=5000
    )
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
    return viewer.layers[layer.name]


def _settled(views, qtbot) -> None:
    """Wait until no view shows a coarse stand-in any more (level-0 planes read)."""
    qtbot.waitUntil(lambda: not views.loading("xz") and not views.loading("yz"), timeout=20000)
    qtbot.wait(50)


def _seen(views, view: str, shape_rc, scale_rc) -> np.ndarray:
    model = views.models[view]
    return rendered_on_grid(model, views.screenshot(view), shape_rc, scale_rc)


def _not_flipped(seen: np.ndarray, truth: np.ndarray, r: float, view: str) -> None:
    """The plane flipped up-down or left-right fits clearly worse (3x the misfit at least)."""
    for flip, flipped in (("z", truth[::-1]), ("columns", truth[:, ::-1])):
        rf = correlation(seen, flipped)
        print(f"{view}: r={r:.3f}, {flip} flipped {rf:.3f}")
        assert 1 - rf > 3 * (1 - r), f"{view}: r={r:.3f}, {flip} flipped {rf:.3f}"


def _check_planes(views, layer, qtbot, min_r: float) -> None:
    """The XZ and YZ canvases match the level-0 planes through the crosshair, not flipped."""
    stack = layer.metadata["stack"]
    _z, y, x = views.crosshair
    sz, sy, sx = layer.scale
    for view, truth, scale in (
        ("xz", np.asarray(stack.data[:, y, :], float), (sz, sx)),
        ("yz", np.asarray(stack.data[:, :, x], float), (sz, sy)),
    ):
        views.models[view].reset_view()
        _settled(views, qtbot)
        seen = _seen(views, view, truth.shape, scale)
        assert np.isfinite(seen).mean() > 0.9, f"{view}: the plane is not on the canvas"
        r = correlation(seen, truth)
        assert r > min_r, f"{view}: r={r:.3f}"
        _not_flipped(seen, truth, r, view)


def test_phantom_planes_crosshair_and_idempotence(make_napari_viewer, phantom_dir, qtbot):
    """XZ/YZ show the planes through the crosshair; the crosshair moves every view; the call is
    idempotent and sets the model's layout."""
    viewer = make_napari_viewer()
    layer = _open(viewer, phantom_dir, qtbot)
    views = ctstack.napari.orthogonal_views(viewer)
    assert ctstack.napari.orthogonal_views(viewer) is views
    assert len([d for d in viewer.window.dock_widgets if "Orthogonal" in d]) == 1
    model = model_for(layer.metadata["stack"])
    assert model.layout == "ortho"

    views.crosshair = (30, 40, 60)
    assert views.crosshair == (30, 40, 60) == model.crosshair
    assert layer.world_to_data(viewer.dims.point)[0] == pytest.approx(30)  # main slice moved
    for view, axis, at in (("xz", 1, 40), ("yz", 2, 60)):
        point = views.models[view].dims.point
        assert point[axis] == pytest.approx(at * layer.scale[axis])  # each view slices there
        assert views.models[view].dims.order[-2:] == _ortho.PLANE_AXES[view]
    # the mirrors share the data arrays, and follow the contrast and colormap
    xz = views.mirror("xz", layer)
    assert xz.data[1] is layer.data[1] and xz.data[0].level0 is layer.data[0]
    layer.contrast_limits = (1000, 20000)
    layer.colormap = "magma"
    for view in _ortho.VIEWS:
        mirror = views.mirror(view, layer)
        assert tuple(mirror.contrast_limits) == (1000, 20000)
        assert mirror.colormap.name == "magma"
    views.mirror("yz", layer).contrast_limits = (500, 30000)  # and the other way round
    assert tuple(layer.contrast_limits) == (500, 30000) and model.window == (500, 30000)
    layer.colormap = "gray"
    layer.contrast_limits = tuple(
        float(v) for v in np.percentile(np.asarray(layer.data[-1]), (0.5, 99.5))
    )
    _check_planes(views, layer, qtbot, 0.9)

    # the model moves the views too (e.g. the Jupyter viewer or the panel set it)
    model.crosshair = (10, 20, 70)
    assert views.models["xz"].dims.point[1] == pytest.approx(200.0)
    assert views.models["yz"].dims.point[2] == pytest.approx(700.0)
    lines = views._crosshairs["xz"].data
    assert any(np.allclose(line[:, 0], 10) for line in lines)  # the z line is at z = 10


def _click(views, view: str, world_rc) -> None:
    """Press and release at the canvas pixel showing the world point ``world_rc`` (rows, cols),
    through the view's vispy canvas like a real mouse click ("xy": the main viewer)."""
    if view == "xy":
        model, canvas = views.viewer, views.viewer.window._qt_viewer.canvas
    else:
        model, canvas = views.models[view], views.canvases[view].canvas
    cy, cx = model.scene.camera.center[-2:]
    zoom = model.scene.camera.zoom
    w, h = canvas._scene_canvas.size
    pos = (w / 2 + (world_rc[1] - cx) * zoom, h / 2 + (world_rc[0] - cy) * zoom)
    canvas._scene_canvas.events.mouse_press(pos=pos, modifiers=(), button=1)
    canvas._scene_canvas.events.mouse_release(pos=pos, modifiers=(), button=1)


def test_click_in_xz_moves_main_slice(make_napari_viewer, phantom_dir, qtbot):
    """A click in XZ sets z and x: the main viewer's slice and the YZ view follow."""
    viewer = make_napari_viewer()
    layer = _open(viewer, phantom_dir, qtbot)
    views = ctstack.napari.orthogonal_views(viewer)
    views.crosshair = (5, 50, 20)
    sz, _, sx = layer.scale
    _click(views, "xz", (40 * sz, 70 * sx))
    assert views.crosshair == (40, 50, 70)
    assert layer.world_to_data(viewer.dims.point)[0] == pytest.approx(40)
    assert views.models["yz"].dims.point[2] == pytest.approx(70 * sx)
    _click(views, "yz", (12 * sz, 33 * sx))  # and in YZ: z and y
    assert views.crosshair == (12, 33, 70)
    _click(views, "xy", (80 * sx, 9 * sx))  # and in the main view: y and x
    assert views.crosshair == (12, 80, 9)
    assert views.models["xz"].dims.point[1] == pytest.approx(80 * sx)
    views.models["yz"].dims.set_current_step(2, 44)  # a view's slider moves the crosshair too
    assert views.crosshair == (12, 80, 44)


def test_level0_plane_is_read_off_the_gui_thread(
    make_napari_viewer, phantom_dir, qtbot, monkeypatch
):
    """At level 0 the XZ plane is read in a worker: meanwhile the coarse level shows with a
    loading note, then the full plane replaces it."""
    idents: list[int] = []
    original = _ortho.read_plane

    def read_plane(level0, axis, index):
        if level0 is layer.data[0]:  # level 0 (not the coarse stand-in)
            idents.append(threading.get_ident())
        return original(level0, axis, index)

    monkeypatch.setattr(_ortho, "read_plane", read_plane)
    viewer = make_napari_viewer()
    layer = _open(viewer, phantom_dir, qtbot)
    views = ctstack.napari.orthogonal_views(viewer)
    mirror = views.mirror("xz", layer)
    views.models["xz"].scene.camera.zoom *= 4  # close enough for level 0
    qtbot.waitUntil(lambda: mirror.data_level == 0, timeout=5000)
    _settled(views, qtbot)
    idents.clear()
    release = threading.Event()
    gate = threading.Event()

    def held(level0, axis, index):
        if level0 is layer.data[0]:
            gate.set()
            assert release.wait(20)
        return read_plane(level0, axis, index)

    monkeypatch.setattr(_ortho, "read_plane", held)
    views.crosshair = (24, 71, 48)
    assert gate.wait(10), "no level-0 read started"
    assert views.loading("xz") and "loading" in views.labels["xz"].text()
    lazy = mirror.data[0]
    assert not lazy.loaded(71)  # the coarse level is shown meanwhile
    release.set()
    _settled(views, qtbot)
    assert idents and threading.get_ident() not in idents
    assert lazy.loaded(71) and "loading" not in views.labels["xz"].text()
    truth = np.asarray(layer.metadata["stack"].data[:, 71, :])
    shown = np.asarray(mirror._slice.image.raw)
    z0, x0 = (int(v) for v in mirror.corner_pixels[0][[0, 2]])
    assert np.array_equal(shown, truth[z0 : z0 + shown.shape[0], x0 : x0 + shown.shape[1]])


def test_real_scans(make_napari_viewer, qtbot, tmp_path):
    """Each real scan (anisotropic voxels): the XZ/YZ pixels match the planes."""
    import shutil

    viewer = make_napari_viewer()
    views = None
    for name in ("vtkjs_headsq_ct", "niivue_ct_pitch_head", "vtkjs_lidc2_chest_ct"):
        folder, _facts = real_scan(name)
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        viewer.layers.clear()  # the views follow the layer list
        layer = _open(viewer, copy, qtbot)
        views = ctstack.napari.orthogonal_views(viewer)
        shape = layer.level_shapes[0]
        views.crosshair = tuple(n // 2 for n in shape)
        assert views.mirror("xz", layer).scale[0] == pytest.approx(layer.scale[0])
        _check_planes(views, layer, qtbot, 0.85)


def test_foreign_layer_and_2d_image(make_napari_viewer, qtbot, notes):
    """A plain numpy volume (a real scan read into RAM) works from its data and scale; a 2D
    image gets a warning naming it, and no crash."""
    from ctstack import open_stack

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64)), name="flat")
    views = ctstack.napari.orthogonal_views(viewer)
    assert views.crosshair is None
    assert any("'flat' is 2D" in str(n.message) for n in notes("warning"))

    folder, facts = real_scan("vtkjs_headsq_ct")
    vol = np.asarray(open_stack(folder).data)
    scale = tuple(facts["spacing_zyx_mm"])
    layer = viewer.add_image(vol, name="plain", scale=scale)
    assert views.mirror("xz", layer).data is vol  # in RAM: shared as is
    views.crosshair = (40, 30, 35)
    assert views.crosshair == (40, 30, 35)
    assert layer.world_to_data(viewer.dims.point)[0] == pytest.approx(40)
    for view, truth, rc in (
        ("xz", vol[:, 30, :].astype(float), (scale[0], scale[2])),
        ("yz", vol[:, :, 35].astype(float), (scale[0], scale[1])),
    ):
        views.models[view].reset_view()
        qtbot.wait(50)
        seen = _seen(views, view, truth.shape, rc)
        r = correlation(seen, truth)
        assert r > 0.9
        _not_flipped(seen, truth, r, view)


def test_views_follow_the_pyramid_swap_and_let_go(make_napari_viewer, phantom_dir, qtbot, gate):
    """Views opened on level 0 alone read their planes off-thread, follow the swap to the
    multiscale layer, and let go of the viewer when closed."""
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(phantom_dir), plugin=PLUGIN)
    assert gate.reached.wait(10), "the build did not start"
    callbacks = list(viewer.mouse_drag_callbacks)
    views = ctstack.napari.orthogonal_views(viewer)
    assert len(viewer.mouse_drag_callbacks) == len(callbacks) + 1  # the click in XY
    views.crosshair = (20, 50, 40)
    old = views.mirror("xz", layer)
    assert not old.multiscale and isinstance(old.data, _ortho.OffThreadLevel)
    _settled(views, qtbot)
    assert old.data.loaded(50)

    gate.open()
    ctl = controller_for(viewer)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=20000)
    new = viewer.layers["phantom"]
    assert new is not layer and new.multiscale
    assert views.mirror("xz", layer) is None and old not in views.models["xz"].layers
    mirror = views.mirror("xz", new)
    assert mirror.multiscale and mirror.data[1] is new.data[1]
    assert views.crosshair == (20, 50, 40)

    # closing the dock lets go: no crosshair layer, no click callback left in the main viewer
    assert "crosshair" in viewer.layers
    viewer.window.remove_dock_widget(views)
    qtbot.waitUntil(lambda: not views.alive, timeout=5000)
    assert "crosshair" not in viewer.layers
    assert viewer.mouse_drag_callbacks == callbacks
    assert model_for(new.metadata["stack"]).layout == "xy"


def test_each_view_picks_its_level(make_napari_viewer, tmp_path, qtbot):
    """A wide stack (more pixels than the canvases): zooming the XZ view changes the level it
    shows, and only its own."""
    from ctstack.sample import write_phantom_stack

    folder = tmp_path / "wide"
    write_phantom_stack(folder, (16, 32, 1536), "uint16", voxel_size_um=10.0)
    viewer = make_napari_viewer()
    layer = _open(viewer, folder, qtbot)
    assert layer.multiscale and len(layer.data) > 3
    views = ctstack.napari.orthogonal_views(viewer)
    views.crosshair = (8, 16, 700)
    mirror = views.mirror("xz", layer)
    camera = views.models["xz"].scene.camera
    views.models["xz"].reset_view()
    qtbot.wait(50)
    far, main_level = mirror.data_level, layer.data_level
    assert far > 0  # 1536 columns in a canvas a few hundred pixels wide
    camera.zoom *= 2**far
    qtbot.waitUntil(lambda: mirror.data_level < far, timeout=5000)
    assert layer.data_level == main_level
    _settled(views, qtbot)
    k = mirror.data_level  # the tile shown is that level's XZ plane at y = 16
    plane = np.asarray(layer.data[k][:, 16 // 2**k, :])
    shown = np.asarray(mirror._slice.image.raw)
    z0, x0 = (int(v) for v in mirror.corner_pixels[0][[0, 2]])
    assert shown.shape[1] > 8
    assert np.array_equal(shown, plane[z0 : z0 + shown.shape[0], x0 : x0 + shown.shape[1]])


def test_unreadable_plane_is_a_notification(
    make_napari_viewer, phantom_dir, qtbot, monkeypatch, notes
):
    """A level-0 plane whose read fails: one warning naming the layer, the coarse level stays
    on screen, and the read is not retried on every redraw."""
    calls: list[int] = []
    original = _ortho.read_plane

    def failing(level0, axis, index):
        if level0 is layer.data[0]:
            calls.append(index)
            raise OSError(f"disk gone while reading row {index}")
        return original(level0, axis, index)

    viewer = make_napari_viewer()
    layer = _open(viewer, phantom_dir, qtbot)
    monkeypatch.setattr(_ortho, "read_plane", failing)
    views = ctstack.napari.orthogonal_views(viewer)
    views.crosshair = (10, 60, 30)
    qtbot.waitUntil(lambda: 60 in calls and not views.loading("xz"), timeout=10000)
    qtbot.wait(100)
    mirror = views.mirror("xz", layer)
    mirror.refresh()
    qtbot.wait(100)
    assert calls.count(60) == 1 and not views.loading("xz")
    [note] = [n for n in notes("warning") if "XZ view" in str(n.message)]  # once, not per plane
    assert "'phantom'" in str(note.message) and "disk gone" in str(note.message)
    shown = np.asarray(mirror._slice.image.raw)
    assert shown.std() > 0  # the coarse level, not a blank plane


def test_off_thread_level_serves_numpy_selections():
    """Without napari: any selection of an OffThreadLevel equals numpy's, a missing plane is the
    coarse level upsampled until the worker (not this thread) has read it."""
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 4000, (9, 14, 11)).astype(np.uint16)
    coarse = vol[::2, ::2, ::2]
    landed: list[tuple[int, int]] = []
    done = threading.Event()

    def on_loaded(index: int) -> None:
        landed.append((index, threading.get_ident()))
        done.set()

    lazy = _ortho.OffThreadLevel(vol, 1, coarse, on_loaded)
    try:
        stand_in = np.asarray(lazy[:, 5, :])
        expect = coarse[:, 2, :][np.ix_(np.arange(9) // 2, np.arange(11) // 2)]
        assert np.array_equal(stand_in, expect)  # nearest coarse voxel, at level-0 size
        assert done.wait(10) and landed == [(5, landed[0][1])]
        assert landed[0][1] != threading.get_ident()
        for key in (
            (slice(2, 7), 5, slice(1, 9)),  # napari: the tile, then the point
            (slice(None), slice(3, 4), 4),
            (-1, slice(None), slice(None)),
            (Ellipsis, 2),
            (slice(0, 9, 2), 1, 0),
        ):
            assert np.array_equal(np.asarray(lazy[key]), vol[key]), key
        tile = lazy[2:7, :, 1:9]  # composed lazily, as napari indexes
        assert tile.shape == (5, 14, 8)
        assert np.array_equal(np.asarray(tile[:, 5]), vol[2:7, 5, 1:9])
    finally:
        lazy.close()
