"""The Crop widget: a box drawn zoomed out on level 2 maps to exact level-0 voxels; Z range from
sliders and the current slice; the ROI is saved in the stack's ROI file and restored on reopen;
the auto button proposes the phantom's object box."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ctstack
from ctstack.napari._layer import layer_data, replace_with_levels
from ctstack.napari._qt.crop import CropWidget
from ctstack.sample import phantom_layout, write_phantom_stack

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]

SHAPE = (48, 96, 96)
TRANSLATE = (5.0, -30.0, 70.0)  # an origin that is not zero, so nothing works by accident


def add_stack(viewer, folder, levels: bool = True, translate=TRANSLATE):
    stack = ctstack.open_stack(folder)
    if levels:
        stack.build_pyramid(max_size=24)  # 96 -> 48 -> 24: three levels
    data, kwargs, _ = layer_data(stack, stack.levels)
    kwargs["translate"] = translate
    return viewer.add_image(data, **kwargs)


def test_box_on_level_2_z_range_and_saved_roi(make_napari_viewer, tmp_path, qtbot):
    folder = tmp_path / "phantom"
    write_phantom_stack(folder, SHAPE, "uint16", voxel_size_um=10.0)
    viewer = make_napari_viewer()
    layer = add_stack(viewer, folder)
    widget = CropWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Crop")
    assert widget.layer is layer and widget.model.roi.source == "full"
    shapes = widget.shapes
    assert shapes is not None and viewer.layers.selection.active is layer

    # zoom out until napari shows level 2, then "draw" a rectangle in world coordinates
    zoom = 0.1
    while layer.data_level != 2 and zoom > 1e-3:
        viewer.scene.camera.zoom = zoom
        qtbot.wait(20)
        zoom /= 2
    assert layer.data_level == 2
    # world y 175 -> data 20.5 (edge between voxels 20 and 21); 433 -> 46.3 (inside voxel 46)
    # world x 100 -> data 3.0 (inside voxel 3); 688 -> 61.8 (inside voxel 62)
    corners = np.array([[175.0, 100.0], [175.0, 688.0], [433.0, 688.0], [433.0, 100.0]])
    shapes.add_rectangles(np.array([shapes.world_to_data(c) for c in corners]))
    assert (widget.model.roi.y, widget.model.roi.x) == ((21, 47), (3, 63))
    assert (widget.fields["y0"].value(), widget.fields["x1"].value()) == (21, 63)
    # the box is snapped to those voxels' outer edges, and only one box is left
    qtbot.waitUntil(lambda: len(shapes.data) == 1)
    box = np.array([shapes.data_to_world(v) for v in shapes.data[0]])
    assert box.min(axis=0) == pytest.approx([-30 + 20.5 * 10, 70 + 2.5 * 10])
    assert box.max(axis=0) == pytest.approx([-30 + 46.5 * 10, 70 + 62.5 * 10])

    # dragging the box (a changed rectangle) updates the ROI too
    shapes.data = [(shapes.data[0] + np.array([10.0, 0.0]), "rectangle")]
    assert widget.model.roi.y == (31, 57)

    # z from "set from current slice" (world z = 5 + 10 * index) and from the sliders
    viewer.dims.set_point(0, 5 + 10 * 30)
    widget.z_start_here.click()
    viewer.dims.set_point(0, 5 + 10 * 40)
    widget.z_stop_here.click()
    assert widget.model.roi.z == (30, 41)
    widget.z_start_slider.setValue(12)
    assert widget.model.roi.z == (12, 41)
    widget.fields["z1"].setValue(44)
    assert widget.model.roi.z == (12, 44) and widget.z_stop_slider.value() == 44

    # the pyramid swap replaces the layer: the widget follows it and keeps the ROI
    new = replace_with_levels(viewer, layer, list(layer.data))
    assert widget.layer is new and widget.model.roi.z == (12, 44)

    # committed into the stack's ROI file, not the cache, and restored on reopen
    qtbot.waitUntil(lambda: not widget.model.dirty, timeout=5000)
    saved = json.loads((folder / ".ctstack" / "roi.json").read_text())
    [entry] = saved["series"].values()
    box = entry["roi"]
    assert (box["z"], box["y"], box["x"]) == ([12, 44], [31, 57], [3, 63])
    ctstack.cache.PyramidCache(folder, "phantom").clean()  # cache clean keeps the ROI
    viewer.layers.remove(new)
    assert widget.stack is None
    again = add_stack(viewer, folder, levels=False)
    assert widget.layer is again and widget.model.restored
    roi = widget.model.roi
    assert (roi.z, roi.y, roi.x) == ((12, 44), (31, 57), (3, 63))
    assert widget.fields["z0"].value() == 12 and widget.fields["y1"].value() == 57
    assert "restored" in widget.status.text()


def test_auto_button_proposes_the_object_box(make_napari_viewer, tmp_path, qtbot, notes):
    folder = tmp_path / "phantom"
    write_phantom_stack(folder, SHAPE, "uint16", seed=3, voxel_size_um=10.0)
    viewer = make_napari_viewer()
    add_stack(viewer, folder, translate=(0.0, 0.0, 0.0))
    widget = CropWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Crop")
    widget.auto_button.click()
    qtbot.waitUntil(lambda: widget.task is None, timeout=30000)
    roi = widget.model.roi
    assert roi.source == "auto"
    # the phantom's object: occupied slices in z, the holder's outer radius in y and x
    layout = phantom_layout(SHAPE, "uint16", 3)
    z0, z1 = layout.occupied_z
    assert roi.z[0] <= z0 and roi.z[1] >= z1
    r = layout.holder_radius[1]
    for (a, b), n in ((roi.y, SHAPE[1]), (roi.x, SHAPE[2])):
        assert a <= n / 2 - r + 1 and b >= n / 2 + r - 1
    assert roi.shape[1] < SHAPE[1] or roi.shape[2] < SHAPE[2] or roi.shape[0] < SHAPE[0]
    # the same box as the engine's, shown in the fields and announced
    engine = ctstack.suggest_roi(ctstack.open_stack(folder))
    assert (roi.z, roi.y, roi.x) == (engine.z, engine.y, engine.x)
    assert widget.fields["x0"].value() == roi.x[0]
    assert any("% of the frame" in str(n.message) for n in notes())


def test_widgets_follow_the_layer_and_share_the_roi(make_napari_viewer, tmp_path):
    """All four widgets start on an empty viewer, follow a stack opened by the reader, share
    one ROI per stack, and let go when the layer is removed."""
    from ctstack.napari._qt.batch import BatchWidget
    from ctstack.napari._qt.export import ExportWidget
    from ctstack.napari._qt.preview import PreviewWidget

    viewer = make_napari_viewer()
    crop, preview, export = CropWidget(viewer), PreviewWidget(viewer), ExportWidget(viewer)
    for w in (crop, preview, export, BatchWidget(viewer)):
        viewer.window.add_dock_widget(w)
    assert crop.stack is None and not crop.auto_button.isEnabled()
    write_phantom_stack(tmp_path / "p", (8, 16, 16), "uint8")
    [layer] = viewer.open(str(tmp_path / "p"), plugin="napari-ctstack")
    assert crop.layer is layer and preview.stack is export.stack is crop.stack
    crop.fields["x0"].setValue(3)
    assert export.model.roi.x == (3, 16) and "x 3:16" in export.source.text()
    viewer.layers.remove(layer)
    assert export.stack is None and crop.stack is None
