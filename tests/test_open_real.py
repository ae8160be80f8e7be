"""The real CT scans in ../shared/data/real open with the right shape, dtype and values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ctstack import open_stack


def test_real_scan_matches_plain_tifffile_reading(real_scan_dir):
    folder, facts = real_scan_dir
    stack = open_stack(folder)
    assert stack.shape == tuple(facts["shape_zyx"])
    assert stack.dtype == np.dtype(facts["dtype"])
    assert stack.missing == [] and stack.bad_slices == [] and stack.other_series == []
    assert stack.pattern == "slice_*.tif" and stack.name == "slice"
    files = sorted(folder.glob("slice_*.tif"))
    assert stack.files == files
    expected = np.stack([tifffile.imread(f) for f in files])
    volume = stack.data.compute()
    np.testing.assert_array_equal(volume, expected)
    assert int(volume.min()) == facts["min"] and int(volume.max()) == facts["max"]


def test_real_scan_voxel_size_override(real_scan_dir):
    folder, facts = real_scan_dir
    stack = open_stack(folder, voxel_size=facts["spacing_zyx_mm"], unit="mm")
    assert stack.voxel_size == pytest.approx(tuple(facts["spacing_zyx_mm"]))
    assert stack.unit == "millimeter"


def test_real_scan_in_plane_spacing_from_cm_resolution_tags(real_scan_dir):
    # the slices carry XResolution/YResolution in pixels per centimetre; z is not stored
    folder, facts = real_scan_dir
    stack = open_stack(folder)
    _, y, x = facts["spacing_zyx_mm"]
    assert stack.unit == "millimeter"
    assert stack.voxel_size[1:] == pytest.approx((y, x), rel=1e-3)


def test_real_multipage_matches_the_slice_folder(real_multipage_tif):
    stack = open_stack(real_multipage_tif)
    real = real_multipage_tif.parent
    facts = json.loads((real / "vtkjs_headsq_ct.json").read_text())
    assert stack.shape == tuple(facts["shape_zyx"]) and stack.dtype == np.uint16
    np.testing.assert_array_equal(stack.data.compute(), tifffile.imread(real_multipage_tif))
    folder = open_stack(real / "vtkjs_headsq_ct")
    np.testing.assert_array_equal(stack.read_slice(40), folder.read_slice(40))


def _bytes_read() -> int:
    """Bytes this process has read through read(2) so far (Linux ``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar line in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_real_scan_opens_without_reading_pixels(real_scan_dir, monkeypatch):
    """Opening reads headers only: no slice is decoded, and at most one read block per file."""
    from ctstack.io import readers

    folder, _facts = real_scan_dir
    open_stack(folder)  # warm imports, so only the open's own reads are counted
    decoded: list = []
    original = readers.decode
    monkeypatch.setattr(readers, "decode", lambda *a, **k: decoded.append(a) or original(*a, **k))
    before = _bytes_read()
    stack = open_stack(folder)
    read = _bytes_read() - before
    n = len(stack.files)
    assert decoded == [], f"open decoded {len(decoded)} slice(s)"
    # a header is parsed from the first buffered block (8 KiB) of each file; pixels would be
    # shape[1] * shape[2] * 2 bytes more per slice for the larger scans
    assert read <= n * 8192 + 65536, f"open read {read} bytes for {n} slices"
