"""Batch: a parent folder of stacks with one broken, per-stack ROIs, events and a summary."""

from __future__ import annotations

import numpy as np
import pytest

import ctstack
from ctstack.batch import find_stacks, run_batch
from ctstack.roi import ROI, save_roi
from ctstack.sample import write_phantom_stack
from tests.test_export_reference import make_volume, write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def parent(tmp_path):
    root = tmp_path / "scans"
    vol_a = make_volume((6, 10, 12), "uint16", 1)
    write_slices(root / "a", vol_a)
    write_phantom_stack(root / "b", (16, 24, 24), "uint16", seed=1, voxel_size_um=4.0)
    (root / "c_broken").mkdir()
    (root / "c_broken" / "slice_0001.tif").write_bytes(b"not a tiff")
    (root / ".hidden").mkdir()
    save_roi(ctstack.open_stack(root / "a"), ROI((1, 4), (2, 8), (0, 12)))
    return root, vol_a


def test_find_stacks_expands_parent(parent):
    root, _ = parent
    assert [p.name for p in find_stacks([root])] == ["a", "b", "c_broken"]
    assert find_stacks([root / "a"]) == [root / "a"]


def test_batch_goes_on_after_a_failure(parent, tmp_path):
    root, vol_a = parent
    events = []
    summary = run_batch(
        [root], tmp_path / "out", format="ome-zarr", roi="saved", on_event=events.append, max_size=4
    )
    assert [i.ok for i in summary.items] == [True, True, False]
    assert "not a TIFF" in summary.items[2].error or "c_broken" in summary.items[2].error
    a = ctstack.open_stack(tmp_path / "out" / "a.ome.zarr")
    np.testing.assert_array_equal(a.data.compute(), vol_a[1:4, 2:8, :])  # the saved ROI
    b = ctstack.open_stack(tmp_path / "out" / "b.ome.zarr")
    assert b.shape == (16, 24, 24)  # no saved ROI: the full volume
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    assert kinds.count("done") == 2 and kinds.count("failed") == 1
    # each written stack was planned first (the engine's plan_export), and the plan held
    planned = [e for e in events if e.kind == "planned"]
    assert [e.index for e in planned] == [0, 1]
    assert planned[0].plan.shape == (3, 6, 12) and planned[0].plan.out.name == "a.ome.zarr"
    assert summary.items[0].plan is planned[0].plan and summary.items[2].plan is None
    assert any(e.kind == "progress" and e.index == 1 and e.done == e.total for e in events)
    text = summary.text()
    assert "2 of 3 stacks written, 1 failed" in text and "a.ome.zarr" in text


def test_batch_auto_roi_mesh(parent, tmp_path):
    root, _ = parent
    summary = run_batch([root / "b"], tmp_path / "meshes", format="stl", roi="auto")
    (item,) = summary.items
    assert item.ok and item.roi.source == "auto" and item.result.extra["faces"] > 0
    assert item.threshold == item.result.extra["threshold"]  # the auto ROI's Otsu threshold
    assert (tmp_path / "meshes" / "b.stl").is_file()
