"""Issue 13, the CLI side: one region rule for the CLI and the API, strict JSON, messages that
name the file (disk full, OUT below a file), and tidy, bounded ``warning:`` lines."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

import ctstack
import ctstack.stack
from ctstack._export.regions import make_region
from ctstack.cli import main
from ctstack.errors import ExportError, UnsupportedExport
from tests.private_mount import needs_private_mount, run_child, tmpfs
from tests.test_export_reference import make_volume, write_slices

NZ = 10


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "s"
    write_slices(folder, make_volume((NZ, 12, 14), "uint16", 4))
    return folder


def _strict(text: str):
    """json.loads that refuses NaN and Infinity, as strict JSON parsers do."""

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------- 1. regions

BAD = [
    ("z", "5:900"),  # beyond the end: was clipped to 5:10
    ("z", "-5:"),  # negative start: was read as "the last 5"
    ("z", ":-1"),
    ("y", "0:13"),
    ("x", "-1:4"),
    ("x", "20:30"),
    ("y", "4:4"),  # empty
]


@pytest.mark.parametrize("command", ["export", "mesh"])
@pytest.mark.parametrize("axis,text", BAD)
def test_cli_refuses_an_out_of_range_region_quoting_it(src, tmp_path, capsys, command, axis, text):
    out = tmp_path / ("out.stl" if command == "mesh" else "out")
    extra = ["--threshold", "30000"] if command == "mesh" else []
    rc = main([command, str(src), str(out), f"--{axis}={text}", *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert rc == 2, err
    assert len(lines) == 1 and f"--{axis} {text}" in lines[0], err
    assert not out.exists()


@pytest.mark.parametrize("axis,text", BAD)
def test_api_refuses_the_same_ranges_as_slices_and_pairs(src, axis, text):
    stack = ctstack.open_stack(src)
    a, b = (int(v) if v else None for v in text.split(":"))
    with pytest.raises(UnsupportedExport, match=re.escape(f"region {axis}={text} ")):
        make_region(stack, **{axis: slice(a, b)})
    size = dict(zip("zyx", stack.shape, strict=True))[axis]
    pair = (0 if a is None else a, size if b is None else b)
    with pytest.raises(UnsupportedExport):
        make_region(stack, **{axis: pair})


def test_in_range_regions_still_work_on_both_sides(src, tmp_path, capsys):
    stack = ctstack.open_stack(src)
    assert make_region(stack, z=slice(5, None), x=slice(None, 14)).full == (
        (5, NZ),
        (0, 12),
        (0, 14),
    )
    assert main(["export", str(src), str(tmp_path / "o"), "--z", "5:", "--x", ":14"]) == 0
    assert ctstack.open_stack(tmp_path / "o").shape == (NZ - 5, 12, 14)


# --------------------------------------------------------------------------- 2. JSON


def test_json_helper_writes_null_for_nan_and_infinity():
    from ctstack._cli.jsonout import dumps

    value = {"a": float("nan"), "b": [np.float32("inf"), 1.5, (np.float64("-inf"), 2)], "c": 3}
    text = dumps(value)
    assert _strict(text) == {"a": None, "b": [None, 1.5, [None, 2]], "c": 3}


@pytest.fixture
def nan_voxel(monkeypatch):
    """Stacks whose z voxel size is NaN (what a DICOM slice with a NaN position gave)."""
    real = ctstack.stack.open_stack

    def open_stack(*args, **kwargs):
        stack = real(*args, **kwargs)
        stack.voxel_size = (math.nan, *stack.voxel_size[1:])
        return stack

    monkeypatch.setattr(ctstack.stack, "open_stack", open_stack)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_mesh_json_has_null_where_it_had_nan(src, tmp_path, capsys, nan_voxel):
    rc = main(["mesh", str(src), str(tmp_path / "m.stl"), "--threshold", "30000", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    found = _strict(out)
    assert found["bounds"] is not None and found["bounds"][0][2] is None  # z of the minimum


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dry", [False, True])
def test_export_json_is_strict_json(src, tmp_path, capsys, nan_voxel, dry):
    args = ["export", str(src), str(tmp_path / "o.tif"), "-f", "tiff-stack", "--json"]
    assert main(args + (["--dry-run"] if dry else [])) == 0
    _strict(capsys.readouterr().out)


def test_mesh_refuses_a_nan_threshold(src, tmp_path, capsys):
    assert main(["mesh", str(src), str(tmp_path / "m.stl"), "--threshold", "nan"]) == 2
    assert "finite" in capsys.readouterr().err
    with pytest.raises(UnsupportedExport, match="finite"):
        ctstack.mesh(src, threshold=float("nan"))


# --------------------------------------------------------------------------- 3. messages


def test_short_write_of_a_slice_names_the_slice_file(src, tmp_path, monkeypatch):
    """tifffile's short write (numpy's tofile) names no file: the message must."""
    real = tifffile.imwrite
    calls: list[int] = []

    def imwrite(path, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("262144 requested and 15656 written")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", imwrite)
    with pytest.raises(ExportError) as info:
        ctstack.export(src, tmp_path / "out", format="tiff")
    message = str(info.value)
    assert "disk full" in message
    assert f"while writing {tmp_path / 'out'}{os.sep}scan_" in message, message
    assert "ctstack-tmp" not in message
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_disk_full_in_a_ply_part_names_the_mesh_file(src, tmp_path, monkeypatch):
    from ctstack import _mesh

    def add(self, verts, faces, tri):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.side[0]))

    monkeypatch.setattr(_mesh._Sink, "add", add)
    with pytest.raises(ExportError) as info:
        ctstack.mesh(src, tmp_path / "m.ply", threshold=30000)
    message = str(info.value)
    assert f"disk full while writing {tmp_path / 'm.ply'};" in message, message
    assert "ctstack-tmp" not in message
    assert sorted(os.listdir(tmp_path)) == ["s"]


REAL_DISK_FULL = textwrap.dedent(
    """
    import json, os, sys
    import ctstack
    import ctstack._export as ex
    import ctstack._mesh as me
    ex.check_space = me.check_space = lambda folder, need: None  # fills after the check
    src, disk = sys.argv[1:3]
    found = {}
    for fmt in ("tiff", "png", "tiff-stack", "stl", "ply"):
        out = os.path.join(disk, "out" + ("." + fmt if fmt in ("stl", "ply") else ""))
        try:
            if fmt in ("stl", "ply"):
                ctstack.mesh(src, out, threshold=1000)
            else:
                ctstack.export(src, out, format=fmt)
            found[fmt] = ["no error", out]
        except ctstack.errors.ExportError as exc:
            found[fmt] = [str(exc), out]
    print(json.dumps(found))
    """
)


@needs_private_mount
def test_real_full_disk_names_the_file_being_written(tmp_path):
    folder = tmp_path / "src"
    rng = np.random.default_rng(1)
    write_slices(folder, rng.integers(0, 60000, (24, 300, 300), dtype=np.uint16))  # 4.3 MB
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = run_child(tmp_path, tmpfs(disk, "1m"), REAL_DISK_FULL, folder, disk)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    for fmt, (message, out) in found.items():
        assert "disk full" in message and "removed" in message, (fmt, message)
        assert "ctstack-tmp" not in message, (fmt, message)
        if fmt in ("tiff", "png"):
            assert f"while writing {out}{os.sep}scan_" in message, (fmt, message)
        else:
            assert f"while writing {out};" in message, (fmt, message)


@pytest.mark.parametrize("fmt", ["tiff", "tiff-stack", "ome-zarr", "mesh", "dry-run"])
@pytest.mark.parametrize("below", ["out", "a/b/out"])
def test_out_below_a_regular_file_says_the_parent_is_a_file(src, tmp_path, capsys, fmt, below):
    (tmp_path / "file.txt").write_text("notes")
    out = tmp_path / "file.txt" / below
    if fmt == "mesh":
        args = ["mesh", str(src), f"{out}.stl", "--threshold", "30000"]
    else:
        args = ["export", str(src), str(out), "-f", "tiff" if fmt == "dry-run" else fmt]
        args += ["--dry-run"] if fmt == "dry-run" else []
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"its parent {tmp_path / 'file.txt'} is a file, not a folder" in err, err
    assert (tmp_path / "file.txt").read_text() == "notes"


# --------------------------------------------------------------------------- 4. warnings


def test_reporter_prints_tidy_lines_then_one_count():
    import io

    from ctstack._cli.report import CliReporter

    stream = io.StringIO()
    report = CliReporter(stream, limit=10)
    report("3 notes on opening this stack:\na\nb\n... and 1 more (see stack.warnings)")
    for z in range(5000):
        report(f"bad slice z={z} (x); it reads as zeros")
    report.close()
    lines = stream.getvalue().splitlines()
    assert lines[:4] == [
        "warning: 3 notes on opening this stack:",
        "warning: a",
        "warning: b",
        "warning: ... and 1 more",
    ]
    assert len(lines) <= 12 and all(line.startswith("warning: ") for line in lines)
    assert lines[-1] == f"warning: ... and {5000 - (len(lines) - 5)} more"


@pytest.fixture
def many_bad(tmp_path) -> Path:
    """60 slices: 40 empty files (found at open) and 15 truncated ones (found while reading)."""
    folder = tmp_path / "bad"
    paths = write_slices(folder, make_volume((60, 16, 16), "uint16", 2))
    for p in paths[:40]:
        p.write_bytes(b"")
    for p in paths[40:55]:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    return folder


@pytest.mark.parametrize("command", ["export", "mesh", "pyramid"])
def test_commands_print_tidy_bounded_warnings(many_bad, tmp_path, capfd, command):
    args = {
        "export": ["export", str(many_bad), str(tmp_path / "o")],
        "mesh": ["mesh", str(many_bad), str(tmp_path / "m.stl"), "-t", "30000"],
        "pyramid": ["pyramid", str(many_bad), "--max-size", "4"],
    }[command]
    os.environ.pop("PYTHONWARNINGS", None)
    rc = main(args)
    err = capfd.readouterr().err
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert rc == 0, err
    assert "UserWarning" not in err and "stack.py" not in err and "warnings.warn" not in err
    assert 1 <= len(warning_lines) <= 13, err
    assert "bad slice z=0" in err
    assert warning_lines[-1].startswith("warning: ... and "), err
