"""``plan_export``: what an export would write (shape, files, bytes, output), found without
reading a pixel, agreeing with what the export then writes; the CLI's --dry-run prints it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ctstack
from ctstack._export import output_name, plan_export
from ctstack.cli import main
from ctstack.errors import LevelNotAvailable, UnsupportedExport
from ctstack.stack import Stack
from tests.test_export_reference import make_volume, write_slices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def stack(tmp_path):
    write_slices(tmp_path / "s", make_volume((10, 20, 30), "uint16", 2), first=40)
    return ctstack.open_stack(tmp_path / "s")


def test_plan_reads_no_pixel_and_matches_the_export(stack, tmp_path, monkeypatch):
    reads = []
    original = Stack.read_slice
    monkeypatch.setattr(Stack, "read_slice", lambda s, z, out=None: reads.append(z))
    plan = plan_export(stack, tmp_path / "out", z=(2, 7), x=slice(5, None), format="tiff")
    assert reads == []
    assert plan.shape == (5, 20, 25) and plan.files == 5 and plan.dtype == "uint16"
    assert plan.bytes == 5 * 20 * 25 * 2 and plan.built and plan.level == 0
    assert plan.summary().startswith("5 x 20 x 25 voxels at level 0, uint16: 5 files, about")
    monkeypatch.setattr(Stack, "read_slice", original)
    result = ctstack.export(stack, plan.out, z=(2, 7), x=slice(5, None), format="tiff")
    assert result.shape == plan.shape and len(result.files) == plan.files
    assert result.dtype == plan.dtype


def test_plan_of_a_level_still_to_build_and_8_bit(stack, tmp_path):
    plan = plan_export(
        stack,
        tmp_path / "o.tif",
        level=1,
        format="tiff-stack",
        window=(0, 1000),
        pyramid_max_size=16,
    )
    assert not plan.built and plan.shape == (5, 10, 15) and plan.files == 1
    assert plan.dtype == "uint8" and plan.bytes == 5 * 10 * 15
    assert "(the pyramid is built first)" in plan.summary()
    with pytest.raises(LevelNotAvailable, match="level 3 does not exist"):
        plan_export(stack, tmp_path / "o", level=3, pyramid_max_size=16)
    with pytest.raises(UnsupportedExport):
        plan_export(stack, tmp_path / "o", z=(8, 99))
    with pytest.raises(UnsupportedExport):
        plan_export(stack, tmp_path / "o", format="jpeg")


def test_output_names():
    assert output_name("scan", "tiff") == "scan"
    assert output_name("scan", "tiff-stack") == "scan.tif"
    assert output_name("scan.tif", "tiff-stack") == "scan.tif"
    assert output_name("scan.ome.zarr", "ome-zarr") == "scan.ome.zarr"
    assert output_name("run.zarr", "stl") == "run.stl"


def test_cli_dry_run_writes_nothing(stack, tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["export", str(stack.path), str(out), "--z", "1:4", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("3 x 20 x 30 voxels at level 0, uint16: 3 files") and str(out) in text
    assert not out.exists()
    args = ["export", str(stack.path), str(out), "-f", "ome-zarr", "--dry-run", "--json"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["files"] == 1 and info["shape"] == [10, 20, 30] and not out.exists()
    assert np.prod(info["shape"]) * 2 == info["bytes"]
