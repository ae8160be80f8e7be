"""The ruler in a viewer: lengths of known lines on the XY and XZ planes match the (anisotropic,
mm) voxel size, µm or mm as it reads best, "pixels" when the voxel size is unknown, several
lines kept as features, CSV export, the view model shared with a second viewer (as the
orthogonal views hold), and a drag through napari's own canvas that shows the length live."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from napari.utils._test_utils import read_only_mouse_event
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)

from ctstack.napari import export_measurements, measure_mode, ruler, stack_of
from ctstack.napari._qt.panel import StackPanel
from ctstack.napari._ruler import format_length
from ctstack.sample import write_phantom_stack
from ctstack.viewmodel import model_for

from ..test_dicom import make_series

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]

PLUGIN = "napari-ctstack"
DICOM_VOXEL = (1.25, 0.5, 0.7)  # mm: slice distance 1.25, PixelSpacing (0.5, 0.7)


@pytest.fixture
def ct_series(tmp_path):
    folder = tmp_path / "ct"
    make_series(folder, n=8, shape=(20, 18))
    return folder


def open_one(viewer, path):
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    return layer


def draw(shapes, image, start, end, displayed=(1, 2), moves=3):
    """Drag from data point ``start`` to ``end`` (level-0 voxel indices of ``image``) through
    napari's mouse callbacks of the active measurements layer; returns the labels seen while
    the mouse moved (the live length)."""
    live = []

    def event(kind, point):
        world = tuple(float(v) for v in image.data_to_world(point))
        return read_only_mouse_event(
            type=kind,
            position=world,
            button=1,
            dims_displayed=list(displayed),
            is_dragging=kind == "mouse_move",
        )

    mouse_press_callbacks(shapes, event("mouse_press", start))
    for t in np.linspace(0, 1, moves + 1)[1:]:
        point = np.asarray(start, float) + t * (np.asarray(end, float) - np.asarray(start, float))
        mouse_move_callbacks(shapes, event("mouse_move", point))
        live.append(str(shapes.features["label"].iloc[-1]))
    mouse_release_callbacks(shapes, event("mouse_release", end))
    return live


def test_length_on_the_xy_and_xz_planes_matches_the_voxel_size(make_napari_viewer, ct_series):
    viewer = make_napari_viewer()
    image = open_one(viewer, ct_series)
    assert stack_of(image).voxel_size == pytest.approx(DICOM_VOXEL)
    assert stack_of(image).unit == "millimeter"
    r = measure_mode(viewer)
    assert r.measuring and viewer.layers.selection.active is r.layer
    assert not r.layer.mouse_pan  # a drag draws, it does not pan

    z = int(viewer.dims.current_step[0])
    live = draw(r.layer, image, (z, 2, 1), (z, 10, 7))
    xy = math.hypot(8 * 0.5, 6 * 0.7)  # 5.8 mm
    assert live[-1] == "5.8 mm" and len(set(live)) == len(live)  # it grew while dragging

    viewer.dims.order = (1, 0, 2)  # roll to the XZ plane (z and x shown, y fixed)
    y = int(viewer.dims.current_step[1])
    draw(r.layer, image, (1, y, 3), (6, y, 15), displayed=(0, 2))
    xz = math.hypot(5 * 1.25, 12 * 0.7)

    features = r.layer.features
    assert list(features["length"]) == pytest.approx([xy, xz])
    assert list(features["unit"]) == ["millimeter", "millimeter"]
    assert list(features["label"]) == [format_length(xy, "millimeter"), "10.47 mm"]
    model = model_for(stack_of(image))
    assert [m.length for m in model.measurements] == pytest.approx([xy, xz])
    assert model.measurements[1].start == (1.0, float(y), 3.0)


def test_micrometres_read_as_um_or_mm(make_napari_viewer, phantom_dir):
    viewer = make_napari_viewer()
    image = open_one(viewer, phantom_dir)  # 10 µm voxels
    r = measure_mode(viewer)
    draw(r.layer, image, (5, 10, 10), (5, 10, 40))
    draw(r.layer, image, (5, 0, 0), (5, 95, 95))
    assert list(r.layer.features["label"]) == ["300 µm", f"{95 * math.sqrt(2) * 0.01:.4g} mm"]
    assert format_length(0.5, "micrometer") == "0.5 µm"
    assert format_length(2.0, "centimeter") == "20 mm"

    # a new voxel size re-measures the kept lines (the stack panel's override)
    panel = StackPanel(viewer)
    panel.layer = image
    panel.set_voxel_size((20.0, 20.0, 20.0))
    assert r.layer.features["length"].iloc[0] == pytest.approx(600.0)
    assert tuple(r.layer.scale) == (20.0, 20.0, 20.0)


def test_unknown_voxel_size_says_pixels(make_napari_viewer, tmp_path):
    write_phantom_stack(tmp_path / "bare", (12, 40, 40), "uint16")  # no voxel size anywhere
    viewer = make_napari_viewer()
    image = open_one(viewer, tmp_path / "bare")
    assert stack_of(image).unit == "pixel"
    r = measure_mode(viewer)
    draw(r.layer, image, (3, 4, 5), (3, 7, 9))
    assert r.layer.features["label"].iloc[0] == "5 pixels"
    rows = list(csv.DictReader(export_measurements(viewer, tmp_path / "m.csv").open()))
    assert rows[0]["unit"] == "pixel" and float(rows[0]["length"]) == 5.0

    # a layer from elsewhere, scale 1 and no units: pixels too
    other_viewer = make_napari_viewer()
    plain = other_viewer.add_image(np.zeros((30, 30)))
    r2 = measure_mode(other_viewer)
    assert r2.image is plain and r2.model is None
    draw(r2.layer, plain, (0, 0), (6, 8), displayed=(0, 1))
    assert r2.layer.features["label"].iloc[0] == "10 pixels"


def test_several_measurements_export_as_csv(make_napari_viewer, ct_series, tmp_path, notes):
    viewer = make_napari_viewer()
    image = open_one(viewer, ct_series)
    panel = StackPanel(viewer)
    box = panel.ruler_box
    box.measure_button.setChecked(True)
    r = ruler(viewer)
    assert r.measuring
    lines = [((1, 0, 0), (1, 0, 10)), ((2, 3, 4), (2, 13, 4)), ((0, 5, 5), (0, 9, 8))]
    for a, b in lines:
        viewer.dims.set_current_step(0, a[0])
        draw(r.layer, image, a, b)
    assert len(r.layer.data) == 3 and "3 measurement(s)" in box.summary.text()
    expected = [
        math.sqrt(sum(((q - p) * v) ** 2 for p, q, v in zip(a, b, DICOM_VOXEL, strict=True)))
        for a, b in lines
    ]

    written = box.export(str(tmp_path / "lengths.csv"))
    assert written == tmp_path / "lengths.csv"
    assert any("lengths.csv" in str(n.message) for n in notes("info"))
    rows = list(csv.reader(written.open()))
    header = ["measurement", "start_z", "start_y", "start_x", "end_z", "end_y", "end_x"]
    assert rows[0] == [*header, "length", "unit", "label"]
    assert len(rows) == 4
    for row, (a, b), length in zip(rows[1:], lines, expected, strict=True):
        assert [float(v) for v in row[1:7]] == [*map(float, a), *map(float, b)]
        assert float(row[7]) == pytest.approx(length) and row[8] == "millimeter"
        assert row[9] == format_length(length, "millimeter")
    # the layer itself exports the same rows
    again = export_measurements(r.layer, tmp_path / "again.csv")
    assert again.read_text() == written.read_text()

    box.clear()
    assert len(r.layer.data) == 0 and model_for(stack_of(image)).measurements == ()
    box.measure_button.setChecked(False)
    assert not r.measuring and r.layer.mouse_pan
    measure_mode(viewer, True)  # from a script: the button follows
    assert box.measure_button.isChecked()

    # an unwritable place: a notification naming it, no crash
    assert box.export(str(tmp_path / "missing" / "x.csv")) is None
    [error] = notes("error")
    assert "missing" in str(error.message)


def test_a_second_viewer_shares_the_measurements(make_napari_viewer, ct_series):
    """What the orthogonal views do: another viewer model shows a copy of the plugin layer (a
    plain Image on the same data and scale); its ruler, given the stack's view model, shares
    the measurements, so a line drawn in either shows in both."""
    from napari.components import ViewerModel

    viewer = make_napari_viewer()
    image = open_one(viewer, ct_series)
    main = ruler(viewer)
    side = ViewerModel()
    twin = side.add_image(image.data, scale=image.scale, translate=image.translate)
    twin_units = twin.units
    side.dims.order = (1, 0, 2)  # an XZ view
    view = ruler(side, image=twin, model=main.model)
    view.measuring = True
    assert view.model is main.model and stack_of(twin) is None
    draw(view.layer, twin, (2, 1, 1), (5, 1, 9), displayed=(0, 2))
    length = math.hypot(3 * 1.25, 8 * 0.7)
    assert len(main.layer.data) == 1
    assert main.layer.features["length"].iloc[0] == pytest.approx(length)
    assert view.layer.features["label"].iloc[0] == format_length(length, "millimeter")
    assert str(twin_units[0]) == "pixel"  # the units came from the model, not the copy
    main.clear()
    assert len(view.layer.data) == 0


def test_live_length_through_the_canvas_and_the_layer_swap(make_napari_viewer, phantom_dir, qtbot):
    """A real drag on the canvas (napari's event path, throttled moves) draws a line whose label
    is its length; after the pyramid build swaps the layer the ruler measures on the new one."""
    viewer = make_napari_viewer(show=True)
    open_one(viewer, phantom_dir)  # 10 µm voxels; its pyramid builds in the background
    r = measure_mode(viewer)
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    press = canvas.events.mouse_press(pos=(200, 150), button=1, modifiers=())
    labels = []
    for x in (240, 280, 320):
        canvas.events.mouse_move(pos=(x, 170), button=1, modifiers=(), press_event=press)
        qtbot.wait(15)
        labels.append(str(r.layer.features["label"].iloc[-1]))
    canvas.events.mouse_release(pos=(320, 170), button=1, modifiers=())
    assert len(r.layer.data) == 1 and len(set(labels)) == 3
    start, end = r.layer.data[0]
    length = math.sqrt(
        sum(((b - a) * v) ** 2 for a, b, v in zip(start, end, (10, 10, 10), strict=True))
    )
    assert start[0] == end[0]  # on the current plane
    assert r.layer.features["length"].iloc[0] == pytest.approx(length)
    assert labels[-1] == format_length(length, "micrometer")

    qtbot.waitUntil(
        lambda: any(getattr(x, "multiscale", False) for x in viewer.layers), timeout=30000
    )
    image = next(x for x in viewer.layers if stack_of(x) is not None)
    assert r.image is image and ruler(viewer) is r
    assert len(r.layer.data) == 1
    assert [x.name for x in viewer.layers].count("measurements") == 1
