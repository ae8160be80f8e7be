"""The ROI and ruler tools' kernel side (``_tools.py``): ``v.roi`` from a dict or an ROI, bad
values, the ROI shared with the model (napari's crop widget uses the same one) and roi.json,
auto ROI on its thread, the ruler's browser messages and the measurements CSV."""

from __future__ import annotations

import csv
import json
import math
import threading

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack.errors import CTStackError, InvalidArgument
from ctstack.measurements import format_length
from ctstack.roi import ROI, load_selection, roi_path
from ctstack.sample import write_phantom_stack
from ctstack.viewmodel import model_for

from .conftest import hold_builds

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (12, 40, 52)


def test_roi_from_a_dict_and_from_an_roi_reaches_the_model_and_roi_json(make_stack, open_viewer):
    stack = make_stack(SHAPE)
    v, _ = open_viewer(stack)
    assert v.roi["z"] == [0, 12] and v.roi["source"] == "full"
    v.roi = {"z": [2, 9], "y": [5, 30], "x": [10, 40]}
    assert v.model.roi.z == (2, 9) and v.model.roi.y == (5, 30) and v.model.roi.x == (10, 40)
    assert v.roi["source"] == "user"
    saved = load_selection(stack)
    assert saved is not None and (saved.roi.z, saved.roi.y, saved.roi.x) == (
        (2, 9),
        (5, 30),
        (10, 40),
    )
    assert roi_path(stack).is_file()

    v.roi = ROI((1, 4), (0, 40), (3, 7), source="user", reason="from code")
    assert v.roi == {
        "z": [1, 4],
        "y": [0, 40],
        "x": [3, 7],
        "source": "user",
        "reason": "from code",
    }
    assert model_for(stack).roi.x == (3, 7)
    assert json.loads(roi_path(stack).read_text())  # valid JSON, rewritten
    assert load_selection(stack).roi.x == (3, 7)  # type: ignore[union-attr]

    v.roi = {"z": [-5, 3], "y": [0, 99], "x": [50, 60]}  # sticking out: cut to the shape
    assert (v.roi["z"], v.roi["y"], v.roi["x"]) == ([0, 3], [0, 40], [50, 52])


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"z": [0, 4], "y": [0, 4]}, "needs the x range"),
        ({"z": [4, 4], "y": [0, 4], "x": [0, 4]}, "z range .* is empty"),
        ({"z": [0, 4], "y": [9, 2], "x": [0, 4]}, "y range .* is empty"),
        ({"z": [0, 4], "y": [0, 4], "x": [60, 70]}, "x range .* outside the stack"),
        ({"z": [0, 4], "y": [0, 4], "x": "0:4"}, "x must be \\[start, stop\\]"),
        ({"z": [0, 4.5], "y": [0, 4], "x": [0, 4]}, "whole numbers"),
        ({"z": [0, float("nan")], "y": [0, 4], "x": [0, 4]}, "whole numbers"),
        ([[0, 4], [0, 4], [0, 4]], "got list"),
    ],
)
def test_bad_roi_values_raise_a_clear_error_and_change_nothing(
    make_stack, open_viewer, value, match
):
    stack = make_stack(SHAPE)
    v, _ = open_viewer(stack)
    v.roi = {"z": [1, 5], "y": [2, 6], "x": [3, 7]}
    with pytest.raises(InvalidArgument, match=match):
        v.roi = value
    assert v.model.roi.z == (1, 5) and v.roi["x"] == [3, 7]


def test_roi_from_the_model_and_from_the_browser(make_stack, open_viewer):
    """The napari crop widget sets the same model (``model_for``); the browser sets the trait
    once on mouse-up."""
    stack = make_stack(SHAPE)
    v, _ = open_viewer(stack)
    napari_side = model_for(ctstack.open_stack(stack.path))  # another Stack of the same scan
    assert napari_side is v.model
    napari_side.set_region(z=(3, 8), y=(10, 20))
    assert v.roi["z"] == [3, 8] and v.roi["y"] == [10, 20] and v.roi["x"] == [0, 52]
    v.set_state({"roi": {"z": [0, 6], "y": [4, 36], "x": [8, 44], "source": "user", "reason": ""}})
    assert (napari_side.roi.z, napari_side.roi.y, napari_side.roi.x) == ((0, 6), (4, 36), (8, 44))
    assert load_selection(stack).roi.y == (4, 36)  # type: ignore[union-attr]


def test_auto_roi_on_a_phantom_sets_roi_and_threshold(tmp_path, make_stack, open_viewer):
    stack = make_stack((16, 64, 80))
    v, browser = open_viewer(stack)
    statuses: list[str] = []
    v.observe(lambda c: statuses.append(c["new"]), names="tool_status")
    main = threading.get_ident()
    ran_on: list[int] = []
    original = v._tools._run
    v._tools._run = lambda fut: (ran_on.append(threading.get_ident()), original(fut))  # type: ignore[method-assign]
    browser.message({"type": "roi_auto"})  # the "Auto" button
    selection = v._tools._auto.result(timeout=60)
    assert ran_on and ran_on[0] != main  # not on the kernel's main thread
    assert statuses[0].startswith("finding the object")
    assert selection.roi.source == "auto" and selection.threshold is not None
    roi = selection.roi
    assert v.roi["source"] == "auto" and v.roi["z"] == list(roi.z) and v.roi["x"] == list(roi.x)
    assert v.threshold == pytest.approx(selection.threshold)
    assert roi.shape != (16, 64, 80)  # a box around the object, not the whole volume
    assert v.tool_status.startswith("auto-ROI:") and "object occupies" in v.tool_status
    saved = load_selection(stack)
    assert saved is not None and saved.threshold == pytest.approx(selection.threshold)
    v.roi = {"z": [0, 4], "y": [0, 4], "x": [0, 4]}  # another ROI: the outcome no longer applies
    assert v.tool_status == ""


def test_auto_roi_waits_for_the_viewers_pyramid_build(tmp_path, open_viewer):
    """ "Auto" during the viewer's background build: its thread waits (the kernel does not),
    the status says so, and the proposal comes from the built pyramid's coarsest level."""
    write_phantom_stack(tmp_path / "big", (16, 300, 1030), "uint16", seed=2)
    stack = ctstack.open_stack(tmp_path / "big")
    gate = hold_builds(stack)  # the build waits; the viewer's reads go on
    v, browser = open_viewer(stack)
    assert v.building
    statuses: list[str] = []
    v.observe(lambda c: statuses.append(c["new"]), names="tool_status")
    browser.message({"type": "roi_auto"})  # returns at once: the search runs on its thread
    fut = v._tools._auto
    assert fut is not None and not fut.done()
    assert v.auto_roi() is fut  # a second press joins the running search
    gate.set()
    selection = fut.result(timeout=60)
    assert "finding the object… (waiting for the pyramid)" in statuses
    assert len(stack.levels) > 1 and selection.roi.extra["level"] == len(stack.levels) - 1
    assert v.roi["source"] == "auto" and v.threshold == pytest.approx(selection.threshold)


def test_a_declined_auto_roi_reports_its_reason_and_keeps_the_roi(tmp_path, open_viewer):
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        tifffile.imwrite(folder / f"n_{i:03d}.tif", rng.integers(0, 60000, (48, 48), np.uint16))
    v, _ = open_viewer(folder)
    v.roi = {"z": [1, 5], "y": [2, 30], "x": [3, 40]}
    selection = v.auto_roi().result(timeout=60)
    assert selection.roi.source == "full" and "declined" in selection.roi.reason
    assert v.tool_status == selection.roi.reason and "does not separate" in v.tool_status
    assert v.roi["z"] == [1, 5] and v.roi["source"] == "user" and v.threshold is None


def test_ruler_messages_measure_through_the_model(make_stack, open_viewer):
    stack = make_stack(SHAPE)  # 5 µm voxels
    v, browser = open_viewer(stack)
    browser.message({"type": "measure", "op": "add", "start": [3, 4, 5], "end": [3, 4, 35]})
    browser.message({"type": "measure", "op": "add", "start": [0, 10, 10], "end": [8, 10, 10]})
    assert [m["length"] for m in v.measurements] == pytest.approx([150.0, 40.0])
    assert v.measurements[0]["unit"] == "micrometer" and v.measurements[0]["end"] == [3, 4, 35]
    assert len(v.model.measurements) == 2
    browser.message({"type": "measure", "op": "remove", "index": 0})
    assert [m["start"] for m in v.measurements] == [[0, 10, 10]]
    browser.message({"type": "measure", "op": "remove", "index": 7})  # never crashes
    assert "no measurement 7" in v.tool_status and len(v.measurements) == 1
    browser.message({"type": "measure", "op": "add", "start": "here", "end": [1, 1, 1]})
    assert "ruler:" in v.tool_status and len(v.measurements) == 1
    browser.message({"type": "measure", "op": "scale"})
    assert "unknown ruler operation 'scale'" in v.tool_status
    browser.message({"type": "measure", "op": "clear"})
    assert v.measurements == [] and v.model.measurements == ()
    assert v.tool_status == ""  # a good operation clears the last error


def test_measurements_from_code_and_the_csv(tmp_path, make_stack, open_viewer):
    stack = make_stack(SHAPE)
    v, _ = open_viewer(stack)
    v.measurements = [([1, 2, 3], [1, 2, 13]), {"start": [0, 0, 0], "end": [3, 4, 0]}]
    assert [m["length"] for m in v.measurements] == pytest.approx([50.0, 25.0])
    with pytest.raises(InvalidArgument, match="start and end"):
        v.measurements = [{"start": [0, 0, 0]}]
    path = v.export_measurements(tmp_path / "lines.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert list(rows[0]) == [
        "measurement", "start_z", "start_y", "start_x", "end_z", "end_y", "end_x",
        "length", "unit", "label",
    ]  # fmt: skip
    assert [r["measurement"] for r in rows] == ["1", "2"]
    assert [float(rows[0][k]) for k in ("start_z", "start_y", "start_x", "end_x")] == [1, 2, 3, 13]
    assert float(rows[1]["length"]) == pytest.approx(math.hypot(15.0, 20.0))
    assert rows[0]["unit"] == "micrometer" and rows[0]["label"] == format_length(50.0, "micrometer")
    with pytest.raises(CTStackError, match="cannot write"):
        v.export_measurements(tmp_path / "no-such-dir" / "x.csv")
