"""The stack panel docked in a shown viewer: facts, voxel-size override, series, 3D detail."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ctstack.napari._qt.build import controller_for
from ctstack.napari._qt.panel import StackPanel

from ..conftest import real_scan

pytestmark = pytest.mark.gui


def test_manifest_validates():
    """npe2 accepts the manifest, and it is the one the installed package points at."""
    npe2 = shutil.which("npe2", path=str(__import__("pathlib").Path(sys.executable).parent))
    out = subprocess.run([npe2, "validate", "napari-ctstack"], capture_output=True, text=True)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


def test_panel_voxel_edit_series_and_3d_detail(make_napari_viewer, tmp_path, qtbot):
    """Open through the panel, override the voxel size, switch series, pick the 3D level."""
    folder, facts = real_scan("vtkjs_lidc2_chest_ct")
    copy = tmp_path / "lidc"
    shutil.copytree(folder, copy)
    for f in sorted(copy.glob("slice_*.tif"))[:20]:  # a second, smaller series beside it
        shutil.copy(f, copy / f.name.replace("slice_", "scout_"))
    viewer = make_napari_viewer()
    panel = StackPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Stack")
    [layer] = panel.open(str(copy))
    ctl = controller_for(viewer)
    qtbot.waitUntil(lambda: viewer.layers["slice"].multiscale, timeout=30000)
    layer = viewer.layers["slice"]
    assert panel.layer is layer
    assert panel.shape.text() == "133 x 256 x 256" and panel.dtype.text() == "uint16"
    assert panel.count.text() == "133" and panel.missing.text() == "none"
    assert panel.status.text().startswith("3 levels")

    # the JSON spacing typed into the panel becomes the layer's scale
    for box, v in zip(panel.voxel, facts["spacing_zyx_mm"], strict=False):
        box.setValue(v)
    panel.voxel[0].editingFinished.emit()
    assert tuple(layer.scale) == pytest.approx(facts["spacing_zyx_mm"])
    assert layer.metadata["stack"].voxel_size == pytest.approx(facts["spacing_zyx_mm"])

    # 3D detail offers every level here (all fit a 2048 texture) and locks the chosen one in 3D
    levels = [panel.detail.itemData(i) for i in range(panel.detail.count())]
    assert levels == [None, 0, 1, 2]
    panel.detail.setCurrentIndex(2)
    panel.detail.activated.emit(2)
    viewer.dims.ndisplay = 3
    assert layer.locked_data_level == 1 and layer.data_level == 1
    viewer.dims.ndisplay = 2
    assert layer.locked_data_level is None

    # the other series is offered and opens in place of the current layer
    assert panel.series.count() == 2 and "scout_" in panel.series.itemText(1)
    panel.series.activated.emit(1)
    qtbot.waitUntil(lambda: "scout" in viewer.layers and not ctl.busy, timeout=30000)
    assert [lay.name for lay in viewer.layers] == ["scout"]
    assert viewer.layers["scout"].level_shapes[0].tolist() == [20, 256, 256]
    assert panel.layer is viewer.layers["scout"]


def test_sample_data_opens_through_reader(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    [layer] = viewer.open_sample("napari-ctstack", "ct_phantom")
    assert layer.name == "phantom" and layer.data.shape == (128, 256, 256)
    assert tuple(layer.scale) == pytest.approx((10.0, 10.0, 10.0))
    assert tuple(layer.units) == ("micrometer",) * 3 or str(layer.units[0]) == "micrometer"
    ctl = controller_for(viewer)
    qtbot.waitUntil(lambda: viewer.layers["phantom"].multiscale and not ctl.busy, timeout=30000)
