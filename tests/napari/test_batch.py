"""The Batch export widget: a parent folder of stacks, one of them broken, each with its own
ROI; the broken one is reported and the others are written; the summary says where."""

from __future__ import annotations

import pytest
import tifffile

import ctstack
from ctstack.roi import ROI, save_roi
from ctstack.sample import write_phantom_stack

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_batch_reports_the_broken_stack_and_finishes_the_others(
    make_napari_viewer, tmp_path, qtbot, notes
):
    from ctstack.napari._qt.batch import BatchWidget

    parent = tmp_path / "scans"
    write_phantom_stack(parent / "a_first", (12, 32, 32), "uint16", seed=1)
    broken = parent / "b_broken"
    broken.mkdir()
    for i in range(3):  # files that look like slices but are not images
        (broken / f"slice_{i:04d}.tif").write_bytes(b"not a tiff at all")
    write_phantom_stack(parent / "c_third", (10, 24, 24), "uint8", seed=2)
    save_roi(ctstack.open_stack(parent / "c_third"), ROI((2, 7), (4, 20), (0, 24)))

    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Batch export")
    widget.add_paths([parent], expand=True)
    assert [p.name for p in widget.paths()] == ["a_first", "b_broken", "c_third"]
    widget.set_roi_choice(0, "full")
    widget.set_roi_choice(2, "saved")
    out = tmp_path / "out"
    widget.folder.setText(str(out))
    widget.format.setCurrentIndex(widget.format.findData("tiff-stack"))
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)

    summary = widget.summary
    assert [i.ok for i in summary.items] == [True, False, True]
    assert tifffile.imread(out / "a_first.tif").shape == (12, 32, 32)
    assert tifffile.imread(out / "c_third.tif").shape == (5, 16, 24)  # its saved ROI
    assert not (out / "b_broken.tif").exists()
    assert widget.status(1).startswith("FAILED") and "b_broken" in widget.status(1)
    assert widget.status(0).startswith("wrote") and widget.status(2).startswith("wrote")
    assert widget.overall.value() == 3
    report = widget.report.toPlainText()
    assert str(out / "a_first.tif") in report and "FAILED" in report
    assert "2 of 3 stacks written, 1 failed" in report
    assert any("b_broken" in str(n.message) for n in notes())
