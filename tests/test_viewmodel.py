"""The view model at model level, with no display and no napari: one model per scan, each field
clamped or validated, events once per change, presets from the engine table (HU only on HU
data), the ROI and threshold committed to roi.json, rulers in physical units."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import ctstack
from ctstack import windows
from ctstack.errors import InvalidArgument
from ctstack.roi import ROI, Selection, load_selection
from ctstack.sample import write_phantom_stack
from ctstack.viewmodel import COLORMAPS, Measurement, ViewModel, model_for
from tests.test_dicom import make_series, write_dcm
from tests.test_export_reference import write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (20, 30, 40)


@pytest.fixture
def stack(tmp_path):
    write_phantom_stack(tmp_path / "scan", SHAPE, "uint16", seed=1, voxel_size_um=5.0)
    return ctstack.open_stack(tmp_path / "scan")


def recorder(model: ViewModel) -> dict[str, list]:
    """Every event of the model, by name, with its value."""
    seen: dict[str, list] = {name: [] for name in model.events}
    for name in model.events:
        getattr(model.events, name).connect(seen[name].append)
    return seen


def test_model_imports_no_gui_toolkit():
    code = (
        "import sys, ctstack.viewmodel, ctstack.windows, ctstack.roi\n"
        "bad = {'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy', 'magicgui',"
        " 'anywidget', 'ipywidgets'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_model_per_scan(stack, tmp_path):
    model = model_for(stack)
    assert model_for(stack) is model
    again = ctstack.open_stack(tmp_path / "scan")  # another Stack object, the same scan
    assert again is not stack and model_for(again) is model
    other = tmp_path / "other"
    write_phantom_stack(other, SHAPE, "uint16", seed=1)
    assert model_for(ctstack.open_stack(other)) is not model
    assert model.stack is again  # the most recently attached Stack


def test_crosshair_is_clamped_and_fires_once_per_change(stack):
    model = model_for(stack)
    assert model.crosshair == (9, 14, 19)  # the middle, like napari's first slice
    seen = recorder(model)
    model.crosshair = (3, 4, 5)
    model.crosshair = (3, 4, 5)  # no change: no event
    model.crosshair = (2.6, 4.4, 5.0)  # rounds to the voxel: (3, 4, 5) again
    model.crosshair = (-7, 99, 1e9)
    assert model.crosshair == (0, 29, 39)
    assert seen["crosshair"] == [(3, 4, 5), (0, 29, 39)]
    assert all(not v for k, v in seen.items() if k != "crosshair")
    with pytest.raises(InvalidArgument):
        model.crosshair = (1, 2)


def test_window_presets_and_ranges(stack):
    model = model_for(stack)
    seen = recorder(model)
    assert not model.has_window
    default = model.window  # computed once, from the coarsest level (here level 0's planes)
    assert model.window_preset == "0.5-99.5" and default[0] < default[1]
    assert seen["window"] == []  # reading a default is not a change
    assert model.presets() == ["0.5-99.5", "1-99", "min-max"]  # not HU: no CT presets
    lo, hi = model.apply_window("min-max")
    vol = stack.data.compute()  # no pyramid: a few strided planes are the sample
    assert float(vol.min()) <= lo < default[0] and default[1] < hi <= float(vol.max())
    assert model.window_preset == "min-max"
    model.window = (100, 2000)
    assert model.window == (100.0, 2000.0) and model.window_preset is None
    assert seen["window"] == [(lo, hi), (100.0, 2000.0)]
    assert seen["window_preset"] == ["min-max", None]
    model.window = (100, 2000)  # the same: nothing fires
    assert len(seen["window"]) == 2 and len(seen["window_preset"]) == 2
    with pytest.raises(windows.NotHounsfield, match="not a DICOM CT series"):
        model.apply_window("bone")
    assert model.window == (100.0, 2000.0)  # unchanged by the refusal
    with pytest.raises(InvalidArgument, match="unknown window preset"):
        model.apply_window("sunset")
    with pytest.raises(InvalidArgument):
        model.window = (5, 1)
    model.window = (7, 7)  # flat: widened, never invalid
    assert model.window == (7.0, 8.0)


def test_percentile_presets_on_a_flat_image_stay_valid(tmp_path):
    write_slices(tmp_path / "flat", np.full((4, 8, 8), 300, np.uint16))
    model = model_for(ctstack.open_stack(tmp_path / "flat"))
    for name in ("0.5-99.5", "1-99", "min-max"):
        assert model.apply_window(name) == (300.0, 301.0)


def test_percentiles_come_from_the_coarsest_level(stack):
    stack.build_pyramid(max_size=8)
    coarse = np.asarray(stack.levels[-1]).ravel()
    want = tuple(float(v) for v in np.percentile(coarse, (1, 99)))
    assert model_for(stack).apply_window("1-99") == pytest.approx(want)
    assert windows.window_for(stack, "1-99") == pytest.approx(want)


def test_hounsfield_presets_only_on_rescaled_dicom_ct(tmp_path):
    make_series(tmp_path / "ct", n=4)  # rescale slope 1, intercept -1024: values in HU
    ct = ctstack.open_stack(tmp_path / "ct")
    assert windows.is_hounsfield(ct)
    model = model_for(ct)
    assert model.presets()[-4:] == ["brain", "soft-tissue", "lung", "bone"]
    assert model.apply_window("bone") == (-500.0, 1300.0)
    assert model.apply_window("Soft tissue") == (-160.0, 240.0)
    assert model.apply_window("lung") == (-1350.0, 150.0)
    assert model.apply_window("brain") == (0.0, 80.0)
    assert model.window_preset == "brain"
    # the same scanner output without a rescale is not HU
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):
        write_dcm(
            raw / f"IM{k}.dcm",
            np.full((6, 5), 100 + k, np.uint16),
            (0.0, 0.0, 1.25 * k),
            series_uid="1.2.3",
            instance=k + 1,
            rescale=False,
        )
    with pytest.raises(windows.NotHounsfield, match="no rescale"):
        model_for(ctstack.open_stack(raw)).apply_window("bone")


def test_colormap_level_3d_and_layout(stack):
    model = model_for(stack)
    seen = recorder(model)
    assert model.colormap == "gray" and {"gray", "gray_r", "viridis", "magma"} <= set(COLORMAPS)
    model.colormap = "magma"
    model.colormap = "magma"
    model.level_3d = 1
    model.level_3d = 1
    model.layout = "ortho"
    model.layout = "ortho"
    assert seen["colormap"] == ["magma"] and seen["level_3d"] == [1]
    assert seen["layout"] == ["ortho"]
    with pytest.raises(InvalidArgument):
        model.layout = "grid"
    with pytest.raises(InvalidArgument):
        model.level_3d = -1


def test_roi_and_threshold_commit_to_roi_json(stack, tmp_path):
    model = model_for(stack)
    seen = recorder(model)
    path = tmp_path / "scan" / ".ctstack" / "roi.json"
    # a drag: no write until mouse-up (commit)
    model.set_region(z=(2, 8), commit=False)
    model.set_region(z=(2, 9), commit=False)
    assert model.dirty and not path.exists()
    assert model.commit() == path and not model.dirty
    assert model.commit() is None  # nothing pending: no second write
    # a set from code commits at once; clamped to the stack
    model.roi = ROI((0, 5), (3, 99), (1, 4))
    assert model.roi.y == (3, 30) and not model.dirty
    model.threshold = 1234.5
    assert load_selection(stack) == Selection(model.roi, 1234.5)
    assert [r.z for r in seen["roi"]] == [(2, 8), (2, 9), (0, 5)]
    assert seen["threshold"] == [1234.5]
    assert seen["committed"] == [path, path, path]
    data = json.loads(path.read_text())
    assert data["version"] == 2 and next(iter(data["series"].values()))["threshold"] == 1234.5
    # nothing but the file is left behind (the write is a rename of a temporary)
    assert sorted(p.name for p in path.parent.iterdir()) == ["roi.json"]
    # one set of both, one commit
    model.set_selection(Selection(ROI((1, 2), (0, 30), (0, 40)), 99.0))
    assert seen["committed"][-1] == path and len(seen["committed"]) == 4


def test_a_reopened_scan_reads_roi_json_again(stack, tmp_path):
    """The last writer wins: another process's save is what a reopen shows."""
    model = model_for(stack)
    model.roi = ROI((1, 3), (0, 30), (0, 40))
    other = ctstack.open_stack(tmp_path / "scan")
    from ctstack.roi import save_selection

    save_selection(other, Selection(ROI((4, 6), (0, 30), (0, 40)), 7.0))  # "another writer"
    assert model.roi.z == (1, 3)  # nothing reads the file behind the model's back...
    third = ctstack.open_stack(tmp_path / "scan")
    assert model_for(third) is model and model.restored
    assert model.roi.z == (4, 6) and model.threshold == 7.0  # ...until the scan is reopened


def test_saved_state_is_loaded_by_a_new_model(tmp_path):
    write_phantom_stack(tmp_path / "s", SHAPE, "uint16", seed=2)
    first = ctstack.open_stack(tmp_path / "s")
    model_for(first).set_selection(Selection(ROI((2, 4), (0, 30), (5, 9)), 42.0))
    key = model_for(first).key
    del first
    import gc

    gc.collect()
    from ctstack import viewmodel

    assert key not in viewmodel._BY_KEY  # no Stack alive: the model is gone
    fresh = model_for(ctstack.open_stack(tmp_path / "s"))
    assert fresh.restored and fresh.roi.x == (5, 9) and fresh.threshold == 42.0


def test_measurements_in_physical_units_or_pixels(stack, tmp_path):
    model = model_for(stack)  # voxel 5 µm in x and y, 5 µm slices
    seen = recorder(model)
    m = model.add_measurement((1, 2, 3), (1, 2, 7))
    assert m == Measurement((1.0, 2.0, 3.0), (1.0, 2.0, 7.0), 20.0, "micrometer")
    diag = model.add_measurement((0, 0, 0), (3, 4, 0))
    assert diag.length == pytest.approx(25.0)
    assert model.measurements == (m, diag) and len(seen["measurements"]) == 2
    clipped = model.measure((0, 0, -50), (0, 0, 500))  # clipped to the volume's extent
    assert clipped.start[2] == -0.5 and clipped.end[2] == 39.5
    stack.voxel_size = (10.0, 10.0, 10.0)  # the stack panel's override
    model.remeasure()
    assert model.measurements[0].length == 40.0 and len(seen["measurements"]) == 3
    model.remove_measurement(0)
    assert model.measurements == (model.measure((0, 0, 0), (3, 4, 0)),)
    model.clear_measurements()
    model.clear_measurements()
    assert model.measurements == () and len(seen["measurements"]) == 5
    # a stack with no voxel size measures in pixels
    write_slices(tmp_path / "plain", np.zeros((3, 8, 8), np.int16))  # no voxel size
    plain = ctstack.open_stack(tmp_path / "plain")
    assert plain.unit == "pixel"
    p = model_for(plain).add_measurement((0, 0, 0), (0, 3, 4))
    assert (p.length, p.unit) == (5.0, "pixel")


def test_an_unreadable_roi_file_is_reported_not_fatal(stack, tmp_path):
    (tmp_path / "scan" / ".ctstack").mkdir()
    bad = tmp_path / "scan" / ".ctstack" / "roi.json"
    bad.write_text("{not json")
    model = model_for(stack)
    assert model.roi.source == "full" and "unreadable ROI file" in model.load_error
    from ctstack.errors import CTStackError

    with pytest.raises(CTStackError, match="unreadable"):
        model.threshold = 5.0  # the commit refuses to overwrite what it cannot read
    assert model.dirty and bad.read_text() == "{not json"
