"""The Export widget: shows the output size first, writes the ROI's slices with the source's
names, and a cancel mid-export leaves nothing behind and says so."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack.napari._layer import layer_data
from ctstack.napari._qt.export import ExportWidget
from ctstack.napari._roi_model import model_for
from ctstack.sample import write_phantom_stack
from ctstack.stack import Stack

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture
def setup(make_napari_viewer, tmp_path):
    folder = tmp_path / "phantom"
    write_phantom_stack(folder, (24, 40, 48), "uint16", seed=2, voxel_size_um=5.0)
    stack = ctstack.open_stack(folder)
    viewer = make_napari_viewer()
    data, kwargs, _ = layer_data(stack, stack.levels)
    viewer.add_image(data, **kwargs)
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Export")
    widget.folder.setText(str(tmp_path / "out"))
    model_for(stack).set_region(z=(5, 17), y=(3, 30), x=(10, 40))
    return stack, widget, tmp_path / "out"


def test_export_writes_the_roi(setup, qtbot, notes):
    stack, widget, out = setup
    assert widget.estimate.text().startswith("12 x 27 x 30 voxels at level 0, uint16: 12 files")
    widget.format.setCurrentIndex(widget.format.findData("tiff-stack"))
    assert "1 file," in widget.estimate.text() and widget.ext.text() == ".tif"
    widget.format.setCurrentIndex(widget.format.findData("tiff"))
    widget.export_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)
    target = out / "phantom_crop"
    names = sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
    assert names == [f"phantom_{i:04d}.tif" for i in range(5, 17)]  # source numbers kept
    expected = stack.read_slice(9)[3:30, 10:40]
    np.testing.assert_array_equal(tifffile.imread(target / "phantom_0009.tif"), expected)
    assert any("wrote 12 tiff files" in str(n.message) for n in notes("info"))
    # a second export to the same name is refused with a notification naming the file
    widget.export_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)
    [err] = notes("error")
    assert "phantom_crop" in str(err.message) and "already exists" in str(err.message)


def test_cancel_leaves_nothing(setup, qtbot, notes, monkeypatch):
    _, widget, out = setup
    reached, release = threading.Event(), threading.Event()
    original = Stack.read_slice
    reads = []

    def slow_read(self, z, out=None):
        reads.append(z)
        if len(reads) > 4:  # hold the export mid-way until the test has pressed cancel
            reached.set()
            release.wait(20)
        return original(self, z, out)

    monkeypatch.setattr(Stack, "read_slice", slow_read)
    widget.export_button.click()
    assert reached.wait(20)
    widget.cancel_button.click()
    release.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)
    assert not (out / "phantom_crop").exists()
    assert not out.exists() or list(out.iterdir()) == []  # no temporary left either
    assert "cancelled" in widget.status.text()
    assert any("cancelled" in str(n.message) for n in notes("info"))
    assert not notes("error")
