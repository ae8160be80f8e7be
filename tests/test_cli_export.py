"""``ctstack export`` and ``ctstack mesh``: one stack, a batch, errors as one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ctstack
from ctstack.cli import main
from tests.test_export_reference import make_volume, write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def src(tmp_path):
    vol = make_volume((7, 12, 14), "uint16", 4)
    write_slices(tmp_path / "s", vol, first=120)
    return tmp_path / "s", vol


def test_export_region_keeps_numbers(src, tmp_path, capsys):
    folder, vol = src
    rc = main(
        [
            "export",
            str(folder),
            str(tmp_path / "out"),
            "--z",
            "2:6",
            "--x",
            "3:",
            "--format",
            "tiff",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0 and "wrote 4 tiff files" in out and "4/4 slices" in err
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert names == [f"scan_{n:05d}.tif" for n in range(122, 126)]
    np.testing.assert_array_equal(
        ctstack.open_stack(tmp_path / "out").data.compute(), vol[2:6, :, 3:]
    )


def test_export_json_ome_zarr_then_refuses_overwrite(src, tmp_path, capsys):
    folder, _ = src
    args = [
        "export",
        str(folder),
        str(tmp_path / "o.zarr"),
        "-f",
        "ome-zarr",
        "--ngff",
        "0.5",
        "--window=0:60000",
        "--json",
    ]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "ome-zarr" and info["dtype"] == "uint8" and info["bytes"] > 0
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctstack export: error:") and "already exists" in err
    assert main([*args, "--overwrite"]) == 0


def test_export_missing_level_is_a_clear_error(src, tmp_path, capsys):
    folder, _ = src
    assert main(["export", str(folder), str(tmp_path / "o"), "--level", "4"]) == 2
    assert "level 4 does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_mesh_cli(src, tmp_path, capsys):
    folder, vol = src
    thr = float(np.median(vol))
    rc = main(["mesh", str(folder), str(tmp_path / "m.obj"), "--threshold", str(thr)])
    out = capsys.readouterr().out
    assert rc == 0 and "vertices" in out and (tmp_path / "m.obj").stat().st_size > 0


def test_batch_cli_reports_failure_and_goes_on(src, tmp_path, capsys):
    folder, _ = src
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x_0001.tif").write_bytes(b"junk")
    rc = main(["export", str(folder), str(broken), str(tmp_path / "batch"), "-f", "tiff-stack"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "1 of 2 stacks written, 1 failed" in out and "FAILED" in out
    assert (tmp_path / "batch" / "s.tif").is_file()
    assert "[2/2]" in err
    assert main(["export", str(folder), str(broken), str(tmp_path / "b2"), "--z", "1:2"]) == 2
