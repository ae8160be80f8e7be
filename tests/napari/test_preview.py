"""The 3D preview: iso rendering of the ROI driven by the threshold slider, and "make mesh"
adding a Surface layer in world units where the object is."""

from __future__ import annotations

import numpy as np
import pytest

import ctstack
from ctstack.napari._layer import layer_data
from ctstack.napari._qt.preview import PreviewWidget
from ctstack.napari._roi_model import model_for
from ctstack.sample import phantom_layout, write_phantom_stack

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]

SHAPE = (40, 80, 80)
VOXEL = 10.0


def physical_box(stack, roi):
    """World (z, y, x) bounds of the ROI's outer voxel faces: ``origin + (i - 0.5) * voxel``."""
    start = np.array([r[0] for r in (roi.z, roi.y, roi.x)], float)
    stop = np.array([r[1] for r in (roi.z, roi.y, roi.x)], float)
    voxel, origin = np.asarray(stack.voxel_size), np.asarray(stack.origin)
    return origin + (start - 0.5) * voxel, origin + (stop - 0.5) * voxel


def test_preview_and_mesh_land_on_the_object(make_napari_viewer, tmp_path, qtbot, notes):
    folder = tmp_path / "phantom"
    write_phantom_stack(folder, SHAPE, "uint16", seed=1, voxel_size_um=VOXEL)
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=40)
    viewer = make_napari_viewer()
    data, kwargs, _ = layer_data(stack, stack.levels)
    viewer.add_image(data, **kwargs)
    widget = PreviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="3D preview")
    model = model_for(stack)
    roi = model.set_region(z=(4, 36), y=(0, 80), x=(10, 60))  # whole in y, cut in x
    layout = phantom_layout(SHAPE, "uint16", 1)
    threshold = (layout.levels["air"] + layout.levels["holder"]) / 2

    # the preview: level 1 of the ROI, in the ROI's place, with the slider driving iso
    widget.level.setCurrentIndex(widget.level.findData(1))
    widget.show_preview()
    qtbot.waitUntil(lambda: widget.task is None, timeout=20000)
    preview = widget.preview
    assert viewer.dims.ndisplay == 3 and preview.rendering == "iso"
    assert preview.data.shape == (16, 40, 25)
    lo, hi = physical_box(stack, roi)
    assert np.all(preview.extent.world[0] >= lo - VOXEL) and np.all(preview.extent.world[1] <= hi)
    widget.set_threshold(threshold)
    assert preview.iso_threshold == pytest.approx(threshold)
    assert model.threshold == pytest.approx(threshold)

    # the mesh, made at level 0 by the engine, lies inside the ROI's physical box and
    # spans the object there: the holder's outer radius in y, the cut planes in x
    widget.level.setCurrentIndex(widget.level.findData(0))
    widget.make_mesh()
    qtbot.waitUntil(lambda: widget.task is None, timeout=30000)
    surface = widget.surface
    assert surface is not None and surface in viewer.layers
    verts = surface.data[0]
    vmin, vmax = verts.min(axis=0), verts.max(axis=0)
    assert np.all(vmin >= lo - 1e-3) and np.all(vmax <= hi + 1e-3)
    centre = (SHAPE[1] / 2 - 0.5) * VOXEL
    radius = layout.holder_radius[1] * VOXEL
    assert vmin[1] == pytest.approx(centre - radius, abs=2 * VOXEL)
    assert vmax[1] == pytest.approx(centre + radius, abs=2 * VOXEL)
    # x is cut on both sides (the holder spans about 4..75): the surface stops at the cuts
    assert vmin[2] == pytest.approx(roi.x[0] * VOXEL, abs=1e-3)
    assert vmax[2] == pytest.approx((roi.x[1] - 1) * VOXEL, abs=1e-3)
    z0, z1 = layout.occupied_z
    assert vmin[0] <= max(z0, roi.z[0]) * VOXEL + VOXEL and vmax[0] >= (min(z1, 36) - 2) * VOXEL
    # the Surface layer is in world units: the same place the image layer puts those voxels
    assert tuple(surface.scale) == (1.0, 1.0, 1.0)
    assert any("mesh at threshold" in str(n.message) for n in notes())
