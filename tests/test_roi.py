"""Auto-ROI on the phantom and on noise; ROI persistence per series, fallback, cache clean;
roi.json version 2 (the threshold beside the ROI) and the migration of version 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ctstack
from ctstack import cache
from ctstack.errors import CTStackError
from ctstack.roi import (
    ROI,
    Selection,
    load_roi,
    load_selection,
    load_threshold,
    resolve_selection,
    roi_path,
    save_roi,
    save_selection,
    series_key,
    suggest,
    suggest_roi,
)
from ctstack.sample import phantom_layout, write_phantom_stack
from tests.test_export_reference import make_volume, write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (48, 64, 80)


@pytest.fixture
def stack(tmp_path):
    write_phantom_stack(tmp_path / "scan", SHAPE, "uint16", seed=3, voxel_size_um=8.0)
    s = ctstack.open_stack(tmp_path / "scan")
    s.build_pyramid(max_size=16)
    return s


def test_suggest_roi_finds_the_object(stack):
    layout = phantom_layout(SHAPE, "uint16", 3)
    found = suggest(stack)
    roi = found.roi
    assert roi.source == "auto" and suggest_roi(stack) == roi
    assert layout.levels["air"] < found.threshold < layout.levels["holder"]
    # the box holds the object (from the plain-numpy mask) and stays near it
    vol = np.stack([stack.read_slice(z) for z in range(SHAPE[0])])
    mask = vol > layout.levels["holder"] * 0.9
    for axis, (a, b) in zip(range(3), (roi.z, roi.y, roi.x), strict=False):
        other = tuple(i for i in range(3) if i != axis)
        present = np.nonzero(mask.any(axis=other))[0]
        assert a <= present[0] and present[-1] < b
        assert present[0] - a <= 0.15 * SHAPE[axis] + 8
    z0, z1 = layout.occupied_z
    assert roi.z[0] <= z0 and roi.z[1] >= z1 and roi.shape[0] < SHAPE[0] + 1
    assert "% of the frame" in roi.reason and f"slices {z0}-" in roi.reason
    assert roi.extra["level"] == len(stack.levels) - 1


def test_suggest_roi_declines_noise(tmp_path):
    write_slices(tmp_path / "noise", make_volume((12, 20, 20), "uint16", 9))
    s = ctstack.open_stack(tmp_path / "noise")
    found = suggest(s)
    roi = found.roi
    assert roi.source == "full" and found.threshold is None
    assert (roi.z, roi.y, roi.x) == ((0, 12), (0, 20), (0, 20))
    assert "does not separate" in roi.reason


def test_roi_saved_per_series_and_survives_cache_clean(tmp_path):
    folder = tmp_path / "two"
    write_slices(folder, make_volume((6, 8, 9), "uint16", 1), prefix="a_")
    write_slices(folder, make_volume((5, 8, 9), "uint16", 2), prefix="b_")
    a = ctstack.open_stack(folder, pattern="a_*")
    b = ctstack.open_stack(folder, pattern="b_*")
    a.build_pyramid(max_size=4)
    pa = save_roi(a, ROI((1, 5), (2, 7), (0, 9)), threshold=12.5)
    pb = save_roi(b, ROI((0, 2), (0, 8), (3, 4)))
    assert pa == pb == folder / ".ctstack" / "roi.json"
    assert load_roi(ctstack.open_stack(folder, pattern="a_*")) == ROI((1, 5), (2, 7), (0, 9))
    assert load_threshold(ctstack.open_stack(folder, pattern="a_*")) == 12.5
    assert load_threshold(ctstack.open_stack(folder, pattern="b_*")) is None
    assert load_roi(ctstack.open_stack(folder, pattern="b_*")).x == (3, 4)
    cache.clean_location(folder / ".ctstack")  # removes pyramids, keeps ROIs
    assert load_roi(ctstack.open_stack(folder, pattern="a_*")).z == (1, 5)
    a2 = ctstack.open_stack(folder, pattern="a_*")
    a2.build_pyramid(max_size=4, rebuild=True)
    assert load_roi(a2).y == (2, 7)
    assert load_roi(ctstack.open_stack(tmp_path / "two", pattern="a_*")) is not None


def test_roi_clamped_to_stack_and_none_when_absent(tmp_path):
    write_slices(tmp_path / "s", make_volume((4, 6, 6), "uint8", 1))
    s = ctstack.open_stack(tmp_path / "s")
    assert load_roi(s) is None
    save_roi(s, ROI((1, 99), (2, 4), (0, 6)))
    assert load_roi(s).z == (1, 4)


def test_roi_falls_back_to_user_cache_when_folder_not_writable(tmp_path, monkeypatch):
    write_slices(tmp_path / "ro", make_volume((4, 6, 6), "uint8", 1))
    s = ctstack.open_stack(tmp_path / "ro")
    from ctstack import locations

    monkeypatch.setenv(locations.ENV_VAR, str(tmp_path / "user-cache"))
    monkeypatch.setattr(locations, "is_writable", lambda folder: False)
    path = save_roi(s, ROI((0, 2), (0, 6), (1, 5)))
    assert (tmp_path / "user-cache") in path.parents
    assert not (tmp_path / "ro" / ".ctstack" / "roi.json").exists()
    assert roi_path(s) == path and load_roi(s).x == (1, 5)


def test_roi_file_version_2_keeps_the_threshold_beside_the_roi(tmp_path):
    write_slices(tmp_path / "s", make_volume((4, 6, 6), "uint8", 1))
    s = ctstack.open_stack(tmp_path / "s")
    path = save_selection(s, Selection(ROI((1, 3), (0, 6), (2, 5)), 42.0))
    data = json.loads(path.read_text())
    assert data["version"] == 2
    [entry] = data["series"].values()
    assert entry["threshold"] == 42.0 and entry["roi"]["z"] == [1, 3]
    assert "threshold" not in entry["roi"] and entry["shape"] == [4, 6, 6]
    # a box saved on its own keeps the threshold; None removes it
    save_roi(s, ROI((0, 2), (0, 6), (0, 6)))
    assert load_selection(s) == Selection(ROI((0, 2), (0, 6), (0, 6)), 42.0)
    save_roi(s, ROI((0, 2), (0, 6), (0, 6)), threshold=None)
    assert load_threshold(s) is None
    assert resolve_selection(s, "saved").roi.z == (0, 2)


def test_roi_file_version_1_is_read_and_migrated(tmp_path):
    """A version-1 entry (flat ROI with its threshold) reads as ROI + threshold; the next save
    writes version 2 and keeps the other series' entries, migrated too."""
    folder = tmp_path / "two"
    write_slices(folder, make_volume((6, 8, 9), "uint16", 1), prefix="a_")
    write_slices(folder, make_volume((5, 8, 9), "uint16", 2), prefix="b_")
    a = ctstack.open_stack(folder, pattern="a_*")
    b = ctstack.open_stack(folder, pattern="b_*")
    v1 = {
        "version": 1,
        "series": {
            series_key(a): {
                "z": [1, 5],
                "y": [2, 7],
                "x": [0, 9],
                "threshold": 12.5,
                "source": "auto",
                "reason": "found",
                "extra": {"level": 1},
                "shape": [6, 8, 9],
            },
            series_key(b): {
                "z": [0, 2],
                "y": [0, 8],
                "x": [3, 4],
                "threshold": None,
                "source": "user",
                "reason": "",
                "extra": {},
                "shape": [5, 8, 9],
            },
        },
    }
    (folder / ".ctstack").mkdir()
    path = folder / ".ctstack" / "roi.json"
    path.write_text(json.dumps(v1))
    assert load_selection(a) == Selection(
        ROI((1, 5), (2, 7), (0, 9), "auto", "found", {"level": 1}), 12.5
    )
    assert load_selection(b) == Selection(ROI((0, 2), (0, 8), (3, 4)), None)
    save_roi(b, ROI((1, 2), (0, 8), (3, 4)))
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert data["series"][series_key(a)]["threshold"] == 12.5
    assert data["series"][series_key(a)]["roi"]["source"] == "auto"
    assert load_selection(a).threshold == 12.5 and load_roi(b).z == (1, 2)


def test_roi_file_from_a_newer_ctstack_is_refused(tmp_path):
    write_slices(tmp_path / "s", make_volume((4, 6, 6), "uint8", 1))
    s = ctstack.open_stack(tmp_path / "s")
    (tmp_path / "s" / ".ctstack").mkdir()
    (tmp_path / "s" / ".ctstack" / "roi.json").write_text('{"version": 3, "series": {}}')
    with pytest.raises(CTStackError, match="version 3 is newer"):
        load_roi(s)
