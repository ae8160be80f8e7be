"""``ctstack export --window``: LOW:HIGH, the engine's presets (percentiles and Hounsfield),
and the bad inputs (an HU preset on data that is not HU, an unknown name, in a batch)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack import windows
from ctstack.cli import main
from tests.conftest import real_scan
from tests.test_dicom import make_series
from tests.test_export_reference import make_volume, write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# the documented ranges (docs/export.md, docs/napari.md): level -/+ width / 2, in HU
HU_RANGES = {
    "bone": (-500.0, 1300.0),
    "soft-tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "brain": (0.0, 80.0),
}


def expected_uint8(volume: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """docs/export.md: round(clip((v - low) / (high - low), 0, 1) * 255), halves rounded up."""
    low, high = window
    scaled = np.clip((volume.astype(np.float64) - low) * (255.0 / (high - low)), 0, 255)
    return np.floor(scaled + 0.5).astype(np.uint8)


def written(folder) -> np.ndarray:
    files = sorted(folder.glob("*.tif"))
    assert files, f"nothing written in {folder}"
    return np.stack([tifffile.imread(f) for f in files])


@pytest.fixture
def ct_series(tmp_path):
    """A synthetic DICOM CT series in HU (slope 1, intercept -1024: -1024..3071 HU)."""
    folder = tmp_path / "ct"
    make_series(folder, n=6, shape=(16, 12))
    return folder


@pytest.mark.parametrize("name", sorted(HU_RANGES))
def test_hounsfield_presets_give_the_documented_ranges(ct_series, tmp_path, capsys, name):
    stack = ctstack.open_stack(ct_series)
    assert windows.is_hounsfield(stack)
    assert windows.window_for(stack, name) == HU_RANGES[name]
    out = tmp_path / "out"
    rc = main(["export", str(ct_series), str(out), "--window", name])
    assert rc == 0, capsys.readouterr().err
    volume = np.asarray(stack.data)
    assert volume.min() < HU_RANGES[name][0] or volume.max() > HU_RANGES[name][1]  # it clips
    got = written(out)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected_uint8(volume, HU_RANGES[name]))


def test_percentile_preset_on_a_real_scan(tmp_path, capsys):
    folder, facts = real_scan("vtkjs_headsq_ct")
    stack = ctstack.open_stack(folder)
    window = windows.window_for(stack, "1-99")
    assert facts["min"] <= window[0] < window[1] <= facts["max"]
    out = tmp_path / "out"
    rc = main(["export", str(folder), str(out), "--z", "40:43", "--window", "1-99"])
    assert rc == 0, capsys.readouterr().err
    volume = np.asarray(stack.data[40:43])
    got = written(out)
    np.testing.assert_array_equal(got, expected_uint8(volume, window))
    assert 0 < (got == 255).mean() < 0.5  # the top percent or so saturates, not everything


def test_low_high_still_works(ct_series, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["export", str(ct_series), str(out), "--window=-1000:500"])
    assert rc == 0, capsys.readouterr().err
    volume = np.asarray(ctstack.open_stack(ct_series).data)
    np.testing.assert_array_equal(written(out), expected_uint8(volume, (-1000.0, 500.0)))


def test_min_max_on_a_flat_image_is_a_valid_window(tmp_path, capsys):
    flat = np.full((4, 8, 9), 700, np.uint16)
    write_slices(tmp_path / "flat", flat, first=0)
    stack = ctstack.open_stack(tmp_path / "flat")
    for name in ("min-max", "1-99", "0.5-99.5"):
        low, high = windows.window_for(stack, name)
        assert low < high and low <= 700 <= high
    out = tmp_path / "out"
    rc = main(["export", str(tmp_path / "flat"), str(out), "--window", "min-max"])
    assert rc == 0, capsys.readouterr().err
    assert written(out).shape == flat.shape


def test_hounsfield_preset_on_non_hu_data_fails_with_one_line(tmp_path, capsys):
    vol = make_volume((5, 10, 11), "uint16", 2)
    write_slices(tmp_path / "s", vol, first=0)
    out = tmp_path / "out"
    rc = main(["export", str(tmp_path / "s"), str(out), "--window", "bone"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert str(tmp_path / "s") in err[0] and "Hounsfield" in err[0] and "not a DICOM" in err[0]
    assert not out.exists()


def test_unknown_preset_lists_the_presets(ct_series, tmp_path, capsys):
    rc = main(["export", str(ct_series), str(tmp_path / "out"), "--window", "bones"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "unknown window preset 'bones'" in err[0] and "soft-tissue" in err[0]


def test_a_batch_works_a_preset_out_per_stack(ct_series, tmp_path, capsys):
    """A preset in a batch resolves per stack: each HU series gets the bone window, and a
    stack that is not HU fails alone, named, while the others are written."""
    second = tmp_path / "ct2"
    shutil.copytree(ct_series, second)
    plain = tmp_path / "plain"
    write_slices(plain, make_volume((4, 9, 10), "uint16", 3), first=0)
    out = tmp_path / "out"
    rc = main(["export", str(ct_series), str(second), str(plain), str(out), "--window", "bone"])
    err = capsys.readouterr().err
    assert rc == 1  # one stack failed
    assert str(plain) in err and "Hounsfield" in err
    volume = ctstack.open_stack(ct_series).data.compute()
    for name in (ct_series.name, second.name):
        assert np.array_equal(written(out / name), expected_uint8(volume, HU_RANGES["bone"]))
    assert not (out / plain.name).exists()
