"""Export from the Jupyter viewer without a browser: ``v.export`` against ``ctstack.export`` (read
back and compared), the ROI region, errors on the Future and in ``export_state``, cancel (and
close) leaving nothing, one export at a time, and the panel's messages.

A "slow" export is made deterministic without sleeps: an observer of ``export_state`` (called
on the export thread as progress is published) holds the thread at its first plane until the
test has done what it wants meanwhile (cancel, close, a second export)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack.errors import (
    Cancelled,
    ExportError,
    LevelNotAvailable,
    OutputExists,
    UnsupportedExport,
)
from ctstack.jupyter._exporting import ALL_FORMATS, ExportBusy
from ctstack.roi import ROI
from ctstack.sample import write_phantom_stack

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROI_BOX = {"z": [3, 17], "y": [21, 110], "x": [30, 141]}


@pytest.fixture
def pyramid_stack(tmp_path: Path) -> ctstack.Stack:
    """A phantom with a 3-level pyramid (built with a small max_size), so levels 1 and 2 exist."""
    folder = tmp_path / "scan"
    write_phantom_stack(folder, (24, 128, 160), "uint16", seed=5, voxel_size_um=4.0)
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=40, cache_dir=tmp_path / "cache")
    assert len(stack.levels) >= 3
    return stack


def read_back(path: Path, fmt: str) -> list[np.ndarray]:
    """An export's arrays: one for slices and TIFF stacks, every level for OME-Zarr."""
    if fmt == "tiff-stack":
        return [tifffile.imread(path)]
    if fmt == "ome-zarr":
        import zarr

        group = zarr.open_group(str(path), mode="r")
        names = sorted((k for k in group.array_keys()), key=int)
        return [np.asarray(group[k]) for k in names]
    return [np.asarray(ctstack.open_stack(path).data.compute())]


def nothing_at(out: Path) -> bool:
    """Neither ``out`` nor a staging sibling of it is left."""
    return not out.exists() and not [p for p in out.parent.iterdir() if out.name in p.name]


class Gate:
    """Holds the export thread at its first published progress until ``release()``."""

    def __init__(self, viewer: Any) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self.viewer = viewer
        viewer.observe(self._seen, "export_state")

    def _seen(self, change: dict[str, Any]) -> None:
        state = change["new"]
        if (
            state.get("state") == "running"
            and state.get("done", 0) >= 1
            and not self.reached.is_set()
        ):
            self.reached.set()
            assert self.go.wait(30), "the test never released the export"

    def wait(self) -> None:
        assert self.reached.wait(30), f"the export never ran: {self.viewer.export_state}"

    def release(self) -> None:
        self.go.set()


@pytest.mark.parametrize(
    ("fmt", "level"),
    [("tiff", 0), ("png", 1), ("tiff-stack", 1), ("ome-zarr", 0), ("ome-zarr", 1), ("bmp", 2)],
)
def test_export_equals_the_engines_export_of_the_roi(
    pyramid_stack, open_viewer, tmp_path, fmt, level
):
    v, _ = open_viewer(pyramid_stack)
    v.roi = dict(ROI_BOX)
    window = (500.0, 3000.0) if fmt in ("png", "bmp") else None  # 8-bit formats need a window
    ours = tmp_path / f"ours.{fmt}"
    fut = v.export(ours, level=level, format=fmt, window=window, max_size=40)
    result = fut.result(60)
    theirs = tmp_path / f"theirs.{fmt}"
    ctstack.export(
        pyramid_stack, theirs, level=level, format=fmt, window=window, max_size=40,
        z=slice(3, 17), y=slice(21, 110), x=slice(30, 141),
    )  # fmt: skip
    a, b = read_back(ours, fmt), read_back(theirs, fmt)
    assert len(a) == len(b) >= 1
    for got, want in zip(a, b, strict=True):
        np.testing.assert_array_equal(got, want)
    f = 1 << level
    expect = (-(-17 // f) - 3 // f, -(-110 // f) - 21 // f, -(-141 // f) - 30 // f)
    assert tuple(result.shape) == expect and a[0].shape[-3:] == expect
    assert result.level == level and result.path == ours
    state = v.export_state
    assert state["state"] == "done" and state["done"] == state["total"] == expect[0]
    assert (
        state["result"]["files"] == len(result.files) and state["result"]["bytes"] == result.bytes
    )


def test_roi_region_follows_the_model_and_full_ignores_it(make_stack, open_viewer, tmp_path):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    v.model.roi = ROI((2, 9), (5, 30), (10, 40))  # set on the shared model (as napari would)
    vol = np.asarray(stack.data.compute())
    roi = v.export(tmp_path / "roi.tif", format="tiff-stack").result(30)
    assert tifffile.imread(roi.path).shape == (7, 25, 30)
    np.testing.assert_array_equal(tifffile.imread(roi.path), vol[2:9, 5:30, 10:40])
    full = v.export(tmp_path / "full.tif", format="tiff-stack", region="full").result(30)
    np.testing.assert_array_equal(tifffile.imread(full.path), vol)
    part = v.export(tmp_path / "part.tif", format="tiff-stack", region="full", z=(4, 6))
    np.testing.assert_array_equal(tifffile.imread(part.result(30).path), vol[4:6])


def test_window_true_is_the_viewers_window(make_stack, open_viewer, tmp_path):
    stack = make_stack((6, 30, 40))
    v, _ = open_viewer(stack)
    v.window = [800.0, 2400.0]
    got = v.export(tmp_path / "w.tif", format="tiff-stack", region="full", window=True).result(30)
    ctstack.export(stack, tmp_path / "e.tif", format="tiff-stack", window=(800.0, 2400.0))
    a, b = tifffile.imread(got.path), tifffile.imread(tmp_path / "e.tif")
    assert a.dtype == np.uint8 and len(np.unique(a)) > 2
    np.testing.assert_array_equal(a, b)


def test_mesh_equals_ctstack_mesh_at_the_models_threshold(make_stack, open_viewer, tmp_path):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    v.threshold = 1000.0
    got = v.export(tmp_path / "ours.stl", format="stl", region="full").result(30)
    made = ctstack.mesh(stack, tmp_path / "theirs.stl", 1000.0)
    assert made.result is not None and got.extra["faces"] == made.n_faces > 0
    assert (tmp_path / "ours.stl").read_bytes() == (tmp_path / "theirs.stl").read_bytes()
    with pytest.raises(UnsupportedExport, match=r"ends in \.ply"):
        v.export(tmp_path / "x.stl", format="ply").result(5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"format": "jpeg"}, UnsupportedExport, "unknown export format"),
        ({"level": 7}, LevelNotAvailable, "level 7"),
        ({"region": "box"}, ValueError, "region must be one of"),
        ({"format": "bmp"}, UnsupportedExport, "bmp"),  # BMP is 8-bit: uint16 needs a window
        ({"compression": "zstd"}, UnsupportedExport, "ome-zarr"),
        ({"colour": 1}, ValueError, "colour: not an option"),
        ({"window": "nonsense"}, ValueError, "nonsense"),
    ],
)
def test_errors_fail_the_future_and_show_in_the_state(
    make_stack, open_viewer, tmp_path, kwargs, error, match
):
    stack = make_stack((6, 30, 40))
    v, _ = open_viewer(stack)
    fut = v.export(tmp_path / "out", **kwargs)
    exc = fut.exception(30)
    assert isinstance(exc, error), repr(exc)
    assert exc is not None and re.search(match, str(exc), re.I)
    assert v.export_state["state"] == "failed" and str(exc) in v.export_state["message"]
    assert not (tmp_path / "out").exists()


def test_a_bad_output_path_and_an_existing_output(make_stack, open_viewer, tmp_path):
    stack = make_stack((6, 30, 40))
    v, _ = open_viewer(stack)
    (tmp_path / "file.txt").write_text("x")
    exc = v.export(tmp_path / "file.txt" / "out").exception(30)
    assert isinstance(exc, ExportError) and "is a file, not a folder" in str(exc)
    assert v.export_state["state"] == "failed" and "file.txt" in v.export_state["message"]
    first = v.export(tmp_path / "o.tif", format="tiff-stack").result(30)
    exc = v.export(tmp_path / "o.tif", format="tiff-stack").exception(30)
    assert isinstance(exc, OutputExists)
    again = v.export(tmp_path / "o.tif", format="tiff-stack", overwrite=True).result(30)
    assert again.path == first.path and again.bytes == first.bytes


@pytest.mark.parametrize("fmt", ["tiff", "png", "tiff-stack", "ome-zarr", "stl", "ply", "obj"])
def test_cancel_leaves_nothing(make_stack, open_viewer, tmp_path, fmt):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    out = tmp_path / "exports" / f"out.{fmt}"
    out.parent.mkdir()
    gate = Gate(v)
    more = {"threshold": 1000.0} if fmt in ("stl", "ply", "obj") else {}
    fut = v.export(out, format=fmt, region="full", **more)
    gate.wait()  # one plane written, the thread held
    assert v.cancel_export() is True
    assert v.export_state["state"] == "cancelling"
    gate.release()
    exc = fut.exception(30)
    assert isinstance(exc, Cancelled), repr(exc)
    assert nothing_at(out), list(out.parent.iterdir())
    assert (
        v.export_state["state"] == "cancelled"
        and "nothing was written" in (v.export_state["message"])
    )
    assert v.cancel_export() is False  # nothing runs now
    v.export(out, format=fmt, region="full", **more).result(30)  # the target is free now


def test_one_export_at_a_time(make_stack, open_viewer, tmp_path):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    gate = Gate(v)
    first = v.export(tmp_path / "a.tif", format="tiff-stack", region="full")
    gate.wait()
    second = v.export(tmp_path / "b.tif", format="tiff-stack", region="full")
    exc = second.exception(5)
    assert isinstance(exc, ExportBusy) and "a.tif" in str(exc) and "cancel_export" in str(exc)
    assert v.export_state["state"] == "running"  # the panel still shows the first one
    gate.release()
    assert first.result(30).path == tmp_path / "a.tif"
    assert not (tmp_path / "b.tif").exists()
    assert v.export(tmp_path / "b.tif", format="tiff-stack").result(30).files  # free again


def test_close_cancels_a_running_export(make_stack, open_viewer, tmp_path):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    gate = Gate(v)
    out = tmp_path / "slices"
    fut = v.export(out, format="tiff", region="full")
    gate.wait()
    v.close()
    gate.release()
    assert isinstance(fut.exception(30), Cancelled)
    assert nothing_at(out)
    exc = v.export(tmp_path / "later").exception(5)
    assert isinstance(exc, ExportError) and "closed" in str(exc)


def test_panel_messages_plan_then_export(make_stack, open_viewer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stack = make_stack((12, 40, 52))
    v, browser = open_viewer(stack)
    v.roi = {"z": [1, 11], "y": [0, 20], "x": [4, 44]}
    browser.message({"type": "export_plan", "id": "p1", "format": "tiff-stack", "level": 0})
    (reply, _), *_ = [m for m in browser.replies(1) if m[0].get("type") == "export_plan"]
    assert reply["id"] == "p1" and "error" not in reply, reply
    assert reply["formats"] == list(ALL_FORMATS) and reply["levels"] == [[12, 40, 52]]
    name = f"{stack.name}_roi.tif"
    assert reply["default_out"] == name and reply["cwd"] == str(tmp_path)
    plan = reply["plan"]
    assert plan["shape"] == [10, 20, 40] and plan["files"] == 1 and plan["dtype"] == "uint16"
    assert plan["bytes"] == 10 * 20 * 40 * 2 and plan["out"] == str(tmp_path / name)
    assert "10 x 20 x 40 voxels" in plan["summary"]
    done = threading.Event()
    v.observe(lambda c: c["new"].get("state") == "done" and done.set(), "export_state")
    browser.message({"type": "export", "format": "tiff-stack", "level": 0, "out": ""})
    assert done.wait(30), v.export_state
    vol = np.asarray(stack.data.compute())
    np.testing.assert_array_equal(tifffile.imread(tmp_path / name), vol[1:11, 0:20, 4:44])
    # now it exists: the plan says so (in red in the panel) and an export is refused up front
    browser.message({"type": "export_plan", "id": "p2", "format": "tiff-stack"})
    reply = next(m for m, _ in browser.replies(2) if m.get("id") == "p2")
    assert "already exists" in reply["error"] and "plan" not in reply
    browser.message({"type": "export", "format": "tiff-stack"})
    assert v.export_state["state"] == "failed" and "already exists" in v.export_state["message"]
    browser.message({"type": "export_plan", "id": "p3", "format": "tiff", "level": "x"})
    reply = next(m for m, _ in browser.replies(3) if m.get("id") == "p3")
    assert "level must be an integer" in reply["error"]


def test_panel_cancel_message(make_stack, open_viewer, tmp_path):
    stack = make_stack((12, 40, 52))
    v, browser = open_viewer(stack)
    gate = Gate(v)
    out = tmp_path / "z.ome.zarr"
    browser.message({"type": "export", "format": "ome-zarr", "region": "full", "out": str(out)})
    gate.wait()
    browser.message({"type": "export_cancel"})
    gate.release()
    fut = v._exporter._job.future
    assert isinstance(fut.exception(30), Cancelled)
    assert nothing_at(out) and v.export_state["state"] == "cancelled"
