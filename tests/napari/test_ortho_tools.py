"""The main viewer's tools in the orthogonal views: window/level by Control + drag (and the
Shift-W mode) in XZ changes the shared window; with measure mode on, a drag in XZ draws a ruler
line on that plane whose length follows the anisotropic voxel size, live, kept in the view
model, in the main "measurements" layer and its CSV, and drawn in XZ; a plain click still moves
the crosshair. Driven through the views' own vispy canvases, as a mouse does."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from vispy.util import keys

import ctstack.napari
from ctstack.napari import enable_window_drag, export_measurements, measure_mode, ruler
from ctstack.napari._qt.panel import StackPanel
from ctstack.napari._ruler import format_length
from ctstack.napari._window import PIXELS_PER_DOUBLING, PIXELS_PER_WIDTH
from ctstack.viewmodel import model_for

from .test_ortho import _open

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]

VOXEL = (25.0, 10.0, 10.0)  # µm: z spacing 2.5x the pixel size


def _pixel(views, view: str, index_rc) -> tuple[float, float]:
    """The canvas pixel (x, y) showing level-0 voxel ``index_rc`` (rows = z, cols = x or y)."""
    model = views.models[view]
    scale = [model.layers[0].scale[a] for a in model.dims.displayed[-2:]]  # the mirror's
    cy, cx = model.scene.camera.center[-2:]
    zoom = model.scene.camera.zoom
    w, h = views.canvases[view].canvas._scene_canvas.size
    row, col = (i * s for i, s in zip(index_rc, scale, strict=True))
    return (w / 2 + (col - cx) * zoom, h / 2 + (row - cy) * zoom)


def _drag(views, view, qtbot, start, end, modifiers=(), watch=None):
    """A left drag on a view's canvas (pixels): press, moves ~15 ms apart (napari throttles
    them), release; ``watch()`` is called after each move and its results returned."""
    canvas = views.canvases[view].canvas._scene_canvas
    press = canvas.events.mouse_press(pos=start, button=1, modifiers=modifiers)
    seen = []
    for t in (0.25, 0.5, 0.75, 1.0):
        pos = tuple(a + t * (b - a) for a, b in zip(start, end, strict=True))
        canvas.events.mouse_move(pos=pos, button=1, modifiers=modifiers, press_event=press)
        qtbot.wait(15)
        if watch is not None:
            seen.append(watch())
    canvas.events.mouse_release(pos=end, button=1, modifiers=modifiers)
    return seen


def _click(views, view, pos) -> None:
    canvas = views.canvases[view].canvas._scene_canvas
    canvas.events.mouse_press(pos=pos, button=1, modifiers=())
    canvas.events.mouse_release(pos=pos, button=1, modifiers=())


def _setup(make_napari_viewer, phantom_dir, qtbot):
    """A shown viewer on the phantom (anisotropic voxel size set in the stack panel), its
    orthogonal views reset to the new aspect, the crosshair away from the test lines."""
    viewer = make_napari_viewer(show=True)
    layer = _open(viewer, phantom_dir, qtbot)
    panel = StackPanel(viewer)
    panel.layer = layer
    panel.set_voxel_size(VOXEL)
    views = ctstack.napari.orthogonal_views(viewer)
    views.crosshair = (4, 50, 88)
    for model in views.models.values():
        model.reset_view()
    qtbot.wait(50)
    return viewer, layer, panel, views


def test_control_drag_in_xz_sets_the_shared_window(make_napari_viewer, phantom_dir, qtbot):
    viewer, layer, panel, views = _setup(make_napari_viewer, phantom_dir, qtbot)
    model = model_for(layer.metadata["stack"])
    mirror = views.mirror("xz", layer)
    low, high = (float(v) for v in layer.contrast_limits)
    width, level = high - low, (low + high) / 2
    camera = views.models["xz"].scene.camera
    center, zoom = tuple(camera.center), camera.zoom
    crosshair = views.crosshair

    start = (120.0, 100.0)
    end = (start[0] + PIXELS_PER_DOUBLING, start[1] + PIXELS_PER_WIDTH / 4)
    _drag(views, "xz", qtbot, start, end, modifiers=(keys.CONTROL,))
    low2, high2 = (float(v) for v in layer.contrast_limits)
    assert high2 - low2 == pytest.approx(2 * width)  # right: twice as wide
    assert (low2 + high2) / 2 == pytest.approx(level + width / 4)  # down: level up
    assert model.window == pytest.approx((low2, high2)) and model.window_preset is None
    assert tuple(mirror.contrast_limits) == pytest.approx((low2, high2))
    assert tuple(views.mirror("yz", layer).contrast_limits) == pytest.approx((low2, high2))
    # the view did not pan, and the drag was no click
    assert tuple(camera.center) == center and camera.zoom == zoom and camera.mouse_pan
    assert views.crosshair == crosshair

    # Shift-W in the main viewer switches the plain-drag mode in the views too
    enable_window_drag(viewer).toggle()
    assert enable_window_drag(views.models["yz"]).enabled
    before = tuple(layer.contrast_limits)
    _drag(views, "yz", qtbot, (100.0, 100.0), (160.0, 130.0))
    assert tuple(layer.contrast_limits) != before
    assert model.window == pytest.approx(tuple(float(v) for v in layer.contrast_limits))
    assert views.crosshair == crosshair
    enable_window_drag(views.models["xz"]).toggle()  # and back, from a view
    assert not enable_window_drag(viewer).enabled
    assert not panel.window_drag.isChecked()


def test_ruler_drag_in_xz_measures_in_physical_units(
    make_napari_viewer, phantom_dir, qtbot, tmp_path
):
    viewer, layer, panel, views = _setup(make_napari_viewer, phantom_dir, qtbot)
    stack = layer.metadata["stack"]
    model = model_for(stack)
    assert stack.voxel_size == VOXEL and tuple(views.mirror("xz", layer).scale) == VOXEL
    panel.ruler_box.measure_button.setChecked(True)  # the main viewer's measure mode
    main = ruler(viewer)
    assert main.measuring
    xz = ruler(views.models["xz"])
    assert xz.measuring and views.models["xz"].layers.selection.active is xz.layer
    crosshair = views.crosshair
    y = crosshair[1]

    a, b = (10, 20), (40, 60)  # (z, x) voxels; the crosshair is at z 4, x 88
    before = views.screenshot("xz")
    live = _drag(
        views,
        "xz",
        qtbot,
        _pixel(views, "xz", a),
        _pixel(views, "xz", b),
        watch=lambda: str(xz.layer.features["label"].iloc[-1]),
    )
    assert len(set(live)) == len(live)  # the length shown grew with the drag
    [m] = model.measurements
    (z0, y0, x0), (z1, y1, x1) = m.start, m.end
    assert y0 == y1 == pytest.approx(y)  # on the XZ plane at the crosshair's y
    assert (z0, x0) == pytest.approx(a, abs=1) and (z1, x1) == pytest.approx(b, abs=1)
    length = math.hypot((z1 - z0) * VOXEL[0], (x1 - x0) * VOXEL[2])
    assert m.length == pytest.approx(length) and m.unit == "micrometer"
    assert length == pytest.approx(math.hypot(30 * 25, 40 * 10), rel=0.05)  # ~1 mm, not ~0.5
    label = format_length(length, "micrometer")
    assert live[-1] == xz.layer.features["label"].iloc[0] == label
    assert views.crosshair == crosshair  # a drag is no click

    # kept in the main "measurements" layer, its features and the CSV
    assert len(main.layer.data) == 1
    assert main.layer.features["length"].iloc[0] == pytest.approx(length)
    rows = list(csv.DictReader(export_measurements(viewer, tmp_path / "m.csv").open()))
    assert len(rows) == 1 and float(rows[0]["length"]) == pytest.approx(length)
    assert float(rows[0]["start_z"]) == pytest.approx(z0) and rows[0]["unit"] == "micrometer"
    assert float(rows[0]["end_x"]) == pytest.approx(x1)

    # drawn in XZ, where it was made: yellow along the line where there was none
    qtbot.wait(100)
    after = views.screenshot("xz")
    for t in (0.3, 0.5, 0.7):
        col, row = (
            round(p + t * (q - p))
            for p, q in zip(
                _pixel(views, "xz", (z0, x0)), _pixel(views, "xz", (z1, x1)), strict=True
            )
        )
        near = (slice(row - 2, row + 3), slice(col - 2, col + 3))
        assert _yellow(after[near]).any() and not _yellow(before[near]).any(), t

    # measure mode off in the main viewer: off in the views, a drag there draws nothing
    measure_mode(viewer, False)
    assert not xz.measuring
    _drag(views, "xz", qtbot, _pixel(views, "xz", (30, 10)), _pixel(views, "xz", (44, 30)))
    assert len(model.measurements) == 1


def test_plain_click_in_xz_still_moves_the_crosshair(make_napari_viewer, phantom_dir, qtbot):
    viewer, layer, _panel, views = _setup(make_napari_viewer, phantom_dir, qtbot)
    model = model_for(layer.metadata["stack"])
    measure_mode(viewer, True)
    y = views.crosshair[1]
    _click(views, "xz", _pixel(views, "xz", (30, 20)))  # measuring: a click adds no line
    assert views.crosshair == (30, y, 20) and model.measurements == ()
    assert layer.world_to_data(viewer.dims.point)[0] == pytest.approx(30)
    measure_mode(viewer, False)
    _click(views, "xz", _pixel(views, "xz", (12, 70)))
    assert views.crosshair == (12, y, 70)
    before = tuple(layer.contrast_limits)
    _click(views, "yz", _pixel(views, "yz", (8, 33)))  # a click changes no window either
    assert views.crosshair == (8, 33, 70) and tuple(layer.contrast_limits) == before


def _yellow(rgba: np.ndarray) -> np.ndarray:
    r, g, b = (rgba[..., i].astype(int) for i in range(3))
    return (r > 150) & (g > 150) & (b < 100)


def test_views_measure_on_the_swapped_layer(make_napari_viewer, phantom_dir, qtbot, gate):
    """Measure mode on before the views open and across the pyramid build's layer swap: the
    views' rulers follow the new mirrors and a drag in YZ still lands in the model."""
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(str(phantom_dir), plugin="napari-ctstack")
    assert gate.reached.wait(10), "the build did not start"
    measure_mode(viewer, True)
    views = ctstack.napari.orthogonal_views(viewer)
    yz = ruler(views.models["yz"])
    assert yz.measuring and yz.image is views.mirror("yz", layer)
    gate.open()
    qtbot.waitUntil(lambda: viewer.layers["phantom"] is not layer, timeout=20000)
    new = viewer.layers["phantom"]
    qtbot.waitUntil(lambda: new.multiscale, timeout=20000)
    assert yz.image is views.mirror("yz", new) and yz.measuring
    assert views.models["yz"].layers.selection.active is yz.layer
    views.crosshair = (4, 50, 88)
    views.models["yz"].reset_view()
    qtbot.wait(50)
    _drag(views, "yz", qtbot, _pixel(views, "yz", (10, 20)), _pixel(views, "yz", (30, 20)))
    [m] = model_for(new.metadata["stack"]).measurements
    assert m.start[2] == m.end[2] == pytest.approx(88)  # on the YZ plane at the crosshair's x
    assert m.length == pytest.approx(abs(m.end[0] - m.start[0]) * 10.0)
    assert m.length == pytest.approx(200.0, rel=0.1)
    assert ruler(viewer).layer.features["length"].iloc[0] == pytest.approx(m.length)
