"""The plugin in a shown napari viewer (Xvfb): open, render, background build, cancel, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ctstack.napari._qt.build import controller_for

from .conftest import MAX_SIZE, correlation, rendered_on_grid

PLUGIN = "napari-ctstack"
pytestmark = pytest.mark.gui


def _open(viewer, path, qtbot):
    """Open with the plugin and wait until its background build (if any) has finished."""
    [layer] = viewer.open(path, plugin=PLUGIN)
    ctl = controller_for(viewer)
    qtbot.waitUntil(
        lambda: ctl.job(layer.metadata["stack"]) is not None or layer.multiscale, timeout=5000
    )
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
    return viewer.layers[layer.name]


def test_real_scan_2d_3d(make_napari_viewer, scan_copy, qtbot):
    """Each real scan: levels built in the background, then 2D and 3D frames match the data."""
    folder, facts = scan_copy
    viewer = make_napari_viewer()
    layer = _open(viewer, str(folder), qtbot)
    shape = tuple(facts["shape_zyx"])

    assert layer.multiscale and tuple(layer.level_shapes[0]) == shape
    assert max(layer.level_shapes[-1]) <= MAX_SIZE < max(layer.level_shapes[-2])
    lo, hi = layer.contrast_limits
    assert facts["min"] <= lo < hi <= facts["max"]
    assert (tmp := list(folder.glob(".ctstack/*.pyramid"))) and len(tmp) == 1

    # 2D: the rendered middle slice lines up with the data's middle slice
    z = shape[0] // 2
    viewer.dims.set_current_step(0, z)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    stack = layer.metadata["stack"]
    truth = stack.read_slice(z).astype(float)
    seen = rendered_on_grid(viewer, shot, shape[1:], layer.scale[1:])
    assert np.isfinite(seen).mean() > 0.9
    assert correlation(seen, truth) > 0.95  # an up-down flipped slice scores 0.85 at best

    # 3D (looking down z): the frame follows the coarsest level's maximum projection
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    shot3 = viewer.screenshot(canvas_only=True, flash=False)
    coarse = np.asarray(layer.data[-1])
    mip = coarse.max(axis=0).astype(float)
    seen3 = rendered_on_grid(
        viewer,
        shot3,
        mip.shape,
        np.asarray(layer.scale[1:]) * (np.asarray(shape[1:]) / np.asarray(mip.shape)),
    )
    assert (seen3 > 40).mean() > 0.05, "the 3D frame is (nearly) black"
    assert correlation(seen3, mip) > 0.85  # a flipped projection scores 0.70 at best


def test_background_build_swaps_and_keeps_view(make_napari_viewer, phantom_dir, qtbot, gate, notes):
    """Level 0 shows at once; the build runs while the user moves; the swap keeps the view."""
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(phantom_dir), plugin=PLUGIN)
    assert not layer.multiscale and layer.data.shape == (48, 96, 96)
    assert tuple(layer.scale) == pytest.approx((10.0, 10.0, 10.0))
    ctl = controller_for(viewer)
    assert gate.reached.wait(10), "the build did not start"
    job = ctl.job(layer.metadata["stack"])
    assert ctl.busy and job.state == "building"
    qtbot.wait(150)  # the event loop runs while the worker is held mid-build
    viewer.dims.set_current_step(0, 30)
    viewer.scene.camera.zoom *= 2
    zoom = viewer.scene.camera.zoom
    layer.colormap = "magma"
    layer.contrast_limits = (2500, 30000)
    viewer.add_points([[0, 0, 0]], name="marks")  # the image is no longer on top
    viewer.layers.selection.active = layer
    gate.open()
    qtbot.waitUntil(lambda: not ctl.busy, timeout=20000)

    new = viewer.layers["phantom"]
    assert new is not layer and new.multiscale
    assert [tuple(s) for s in new.level_shapes] == [(48, 96, 96), (24, 48, 48)]
    assert [lay.name for lay in viewer.layers] == ["phantom", "marks"]
    assert new.world_to_data(viewer.dims.point)[0] == pytest.approx(30)  # slice 30, at 300 µm
    assert viewer.scene.camera.zoom == pytest.approx(zoom)
    assert new.colormap.name == "magma" and tuple(new.contrast_limits) == (2500, 30000)
    assert viewer.layers.selection.active is new
    assert job.state == "done" and job.done == job.total == 48
    assert any("pyramid ready" in str(n.message) for n in notes("info"))


def test_cancel_leaves_no_cache(make_napari_viewer, phantom_dir, qtbot, gate, notes):
    """Cancelling through the progress bar stops the build mid-way and caches nothing."""
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(phantom_dir), plugin=PLUGIN)
    ctl = controller_for(viewer)
    assert gate.reached.wait(10)
    job = ctl.job(layer.metadata["stack"])
    job.pbar.cancel()  # what the progress bar's cancel button calls
    gate.open()
    qtbot.waitUntil(lambda: not ctl.busy, timeout=20000)
    assert job.state == "cancelled" and 0 < job.done < job.total
    assert viewer.layers["phantom"] is layer and not layer.multiscale
    assert not list((phantom_dir / ".ctstack").glob("*.pyramid"))
    assert any("cancelled" in str(n.message) for n in notes("info"))


def test_corrupt_slice_and_empty_folder_notify(
    make_napari_viewer, phantom_dir, tmp_path, qtbot, notes
):
    """A corrupt slice gives one warning naming the file; a folder of no images, an error."""
    bad = phantom_dir / "phantom_0007.tif"
    bad.write_bytes(b"II*\x00 this is not a TIFF any more")
    viewer = make_napari_viewer()
    layer = _open(viewer, str(phantom_dir), qtbot)
    [warning] = [n for n in notes("warning") if "bad slice" in str(n.message)]
    assert "1 bad slice" in str(warning.message) and "phantom_0007.tif" in str(warning.message)
    assert layer.multiscale  # the pyramid still completes
    assert not np.asarray(layer.data[0][7]).any()  # and the bad slice reads as zeros

    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("no slices")
    assert viewer.open(str(empty), plugin=PLUGIN) == []
    [error] = notes("error")
    assert str(empty) in str(error.message)
    assert len(viewer.layers) == 1
