"""Hardening (issue 13): DICOM positions that are NaN or missing, and files skipped in a series."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ctstack import open_stack
from ctstack.cli import main
from tests.test_dicom import NORMAL, write_dcm

ORIGIN = np.array([-30.0, 12.0, 80.0])


def series(folder: Path, distances, uid=None) -> list[tuple[Path, np.ndarray]]:
    """Slices at `distances` along the normal, file and instance numbers in z order."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    rng = np.random.default_rng(3)
    out = []
    for k, d in enumerate(distances):
        pixels = rng.integers(0, 4096, (6, 5)).astype(np.uint16)
        path = folder / f"IM{k:04d}.dcm"
        write_dcm(path, pixels, ORIGIN + d * NORMAL, series_uid=uid, instance=k + 1)
        out.append((path, pixels))
    return out


def set_position(path: Path, value) -> None:
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom: 'nan' is not a valid DS value
        if value is None:
            del ds.ImagePositionPatient
        else:
            ds.ImagePositionPatient = value
        ds.save_as(path)


def opened(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = open_stack(path, **kw)
    return stack, " ".join(str(w.message) for w in caught)


@pytest.mark.parametrize("bad", ["nan", "missing"])
def test_a_nan_or_missing_position_is_left_out_of_the_spacing_with_a_warning(tmp_path, bad, capsys):
    written = series(tmp_path, [1.25 * k for k in range(6)])
    set_position(written[2][0], None if bad == "missing" else ["nan", "nan", "nan"])
    stack, said = opened(tmp_path)
    assert stack.shape == (6, 6, 5)
    assert math.isfinite(stack.voxel_size[0])
    assert stack.voxel_size == pytest.approx((1.25, 0.5, 0.7))
    assert "IM0002.dcm" in said and "spacing" in said
    assert stack.files == [p for p, _ in written]  # ordered by InstanceNumber instead
    assert main(["info", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert doc["voxel_size"] == pytest.approx([1.25, 0.5, 0.7])


def test_info_json_is_strict_even_with_a_nan_voxel_size(tmp_path, capsys):
    series(tmp_path, [0.0, 1.0, 2.0])
    assert main(["info", str(tmp_path), "--json"]) == 0
    json.loads(capsys.readouterr().out)
    import ctstack.stack as stack_module

    real = stack_module.Stack.summary

    def with_nan(self):
        out = real(self)
        out["voxel_size"] = [math.nan, 1.0, math.inf]
        return out

    stack_module.Stack.summary = with_nan  # type: ignore[method-assign]
    try:
        assert main(["info", str(tmp_path), "--json"]) == 0
    finally:
        stack_module.Stack.summary = real  # type: ignore[method-assign]
    doc = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert doc["voxel_size"] == [None, 1.0, None]


@pytest.mark.parametrize("how", ["truncated", "zero-bytes", "absent"])
def test_a_skipped_file_leaves_a_listed_zero_slice_not_a_shift(tmp_path, how):
    written = series(tmp_path, [1.25 * k for k in range(8)])
    path = written[3][0]
    if how == "absent":
        path.unlink()
    else:
        path.write_bytes(b"" if how == "zero-bytes" else path.read_bytes()[:100])
    stack, said = opened(tmp_path)
    assert stack.shape == (8, 6, 5) and stack.missing == [3]
    assert "missing" in said and "IM0004.dcm" in said
    volume = stack.data.compute()
    assert not volume[3].any()
    np.testing.assert_array_equal(volume[4], written[4][1].astype(np.int32) - 1024)
    np.testing.assert_array_equal(volume[7], written[7][1].astype(np.int32) - 1024)
    assert stack.voxel_size[0] == pytest.approx(1.25)


def test_two_missing_slices_and_an_irregular_gap(tmp_path):
    series(tmp_path / "a", [0.0, 1.0, 2.0, 5.0, 6.0, 7.0])  # a gap of 3: two missing
    stack, _ = opened(tmp_path / "a")
    assert stack.shape[0] == 8 and stack.missing == [3, 4]
    series(tmp_path / "b", [0.0, 1.0, 2.0, 4.5, 5.5, 6.5])  # 2.5 x: not within 10 %
    stack, said = opened(tmp_path / "b")
    assert stack.shape[0] == 6 and stack.missing == []
    assert "uneven DICOM slice spacing" in said


def test_a_dicom_header_claiming_more_pixels_than_its_file_holds_is_refused_at_open(tmp_path):
    from ctstack.errors import UnreadableSlice

    written = series(tmp_path, [0.0, 1.0, 2.0])
    ds = pydicom.dcmread(written[1][0])
    ds.Rows, ds.Columns = 4000, 4000  # the pixel data stays 6 x 5
    ds.save_as(written[1][0])
    with pytest.raises(UnreadableSlice, match=r"IM0001\.dcm: truncated"):
        open_stack(written[1][0])
