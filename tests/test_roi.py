"""Auto-ROI on the phantom and on noise; ROI persistence per series, fallback, cache clean."""

from __future__ import annotations

import numpy as np
import pytest

import ctstack
from ctstack import cache
from ctstack.roi import ROI, load_roi, roi_path, save_roi, suggest_roi
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
    roi = suggest_roi(stack)
    assert roi.source == "auto"
    assert layout.levels["air"] < roi.threshold < layout.levels["holder"]
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
    roi = suggest_roi(s)
    assert roi.source == "full" and roi.threshold is None
    assert (roi.z, roi.y, roi.x) == ((0, 12), (0, 20), (0, 20))
    assert "does not separate" in roi.reason


def test_roi_saved_per_series_and_survives_cache_clean(tmp_path):
    folder = tmp_path / "two"
    write_slices(folder, make_volume((6, 8, 9), "uint16", 1), prefix="a_")
    write_slices(folder, make_volume((5, 8, 9), "uint16", 2), prefix="b_")
    a = ctstack.open_stack(folder, pattern="a_*")
    b = ctstack.open_stack(folder, pattern="b_*")
    a.build_pyramid(max_size=4)
    pa = save_roi(a, ROI((1, 5), (2, 7), (0, 9), threshold=12.5))
    pb = save_roi(b, ROI((0, 2), (0, 8), (3, 4)))
    assert pa == pb == folder / ".ctstack" / "roi.json"
    assert load_roi(ctstack.open_stack(folder, pattern="a_*")) == ROI(
        (1, 5), (2, 7), (0, 9), threshold=12.5
    )
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
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "user-cache"))
    monkeypatch.setattr(cache, "is_writable", lambda folder: False)
    path = save_roi(s, ROI((0, 2), (0, 6), (1, 5)))
    assert (tmp_path / "user-cache") in path.parents
    assert not (tmp_path / "ro" / ".ctstack" / "roi.json").exists()
    assert roi_path(s) == path and load_roi(s).x == (1, 5)
