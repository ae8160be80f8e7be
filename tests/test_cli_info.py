"""``ctstack info``: shape on every real scan, JSON output, other series, errors as one line."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from ctstack.cli import main


def test_info_reports_the_real_scan_shape(real_scan_dir, capsys):
    folder, facts = real_scan_dir
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    z, y, x = facts["shape_zyx"]
    assert f"shape:       {z} x {y} x {x}" in out
    assert f"count:       {z} files" in out and "dtype:       uint16" in out


def test_info_json(real_multipage_tif, capsys):
    assert main(["info", str(real_multipage_tif), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [93, 64, 64] and info["dtype"] == "uint16"
    assert info["missing"] == [] and info["bad_slices"] == []


def test_info_lists_other_series_missing_and_bad(tmp_path, capsys):
    for n in (0, 1, 2, 4):
        tifffile.imwrite(tmp_path / f"a_{n}.tif", np.ones((4, 4), np.uint8))
    (tmp_path / "a_1.tif").write_bytes(b"")
    for n in range(2):
        tifffile.imwrite(tmp_path / f"b_{n}.tif", np.ones((4, 4), np.uint8))
    assert main(["info", str(tmp_path), "--voxel-size", "2", "--unit", "um"]) == 0
    captured = capsys.readouterr()
    assert "shape:       5 x 4 x 4" in captured.out
    assert "missing:     3" in captured.out
    assert "z=1:" in captured.out and "a_1.tif" in captured.out
    assert "b_*.tif: 2 files" in captured.out
    assert "2 x 2 x 2 micrometer" in captured.out
    assert "warning:" in captured.err
    assert main(["info", str(tmp_path), "--pattern", "b_*.tif", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [2, 4, 4]


def test_info_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and "Traceback" not in err[0]
