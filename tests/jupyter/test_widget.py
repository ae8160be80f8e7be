"""The Viewer widget without a browser: the real anywidget class, with the browser played by
calling its message handler and ``set_state`` (what ipywidgets does with the frontend's
messages). Covers the model binding both ways, presets, tiles end to end, bad input, the
background build, screenshots and shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from importlib import resources

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack import windows
from ctstack.errors import CacheError, CTStackError, InvalidArgument
from ctstack.jupyter import ScreenshotError, Viewer
from ctstack.sample import write_phantom_stack
from ctstack.viewmodel import COLORMAPS, model_for
from tests.test_dicom import make_series

from .conftest import hold_builds, tile_array

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --- what the browser is told ----------------------------------------------------------------


def test_view_of_a_path_describes_the_stack(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack.path)
    assert isinstance(v, Viewer) and v.stack.shape == (12, 40, 52)
    assert v.shape == [12, 40, 52]
    assert v.levels == [{"shape": [12, 40, 52]}]  # small: no pyramid needed
    assert v.dtype == "uint16" and v.tile == 256
    assert v.voxel == [5.0, 5.0, 5.0] and v.unit == "µm"
    assert v.file_numbers == list(range(12))
    assert v.colormaps == list(COLORMAPS) and v.presets == ["0.5-99.5", "1-99", "min-max"]
    assert v.layout == "ortho" and v.size == 360 and not v.force_canvas2d
    assert v.camera["xz"] == {"zoom": None, "center": [5.5, 25.5]}
    hist = v.histogram
    assert len(hist["counts"]) == 128 and sum(hist["counts"]) > 0 and hist["low"] < hist["high"]
    assert v.warning == "" and v.progress == {} and not v.building
    assert v.model is model_for(v.stack)


def test_options(make_stack, open_viewer):
    stack = make_stack((4, 16, 16))
    v, _ = open_viewer(stack, layout="xy", renderer="canvas2d", client_cache_mb=64)
    assert v.layout == "xy" and v.model.layout == "xy" and v.size == 640
    assert v.force_canvas2d and v.client_cache_mb == 64
    with pytest.raises(InvalidArgument, match="renderer"):
        ctstack.view(stack, renderer="opengl")
    with pytest.raises(InvalidArgument, match="layout"):
        ctstack.view(stack, layout="grid")
    with pytest.raises(TypeError, match="open_stack options need a path"):
        ctstack.view(stack, pattern="*.tif")


def test_file_numbers_follow_the_slice_numbering(tmp_path, open_viewer):
    volume = np.ones((4, 3, 3), np.uint16)
    for z, plane in enumerate(volume):
        tifffile.imwrite(tmp_path / f"scan_{100 + 2 * z:05d}.tif", plane)  # 100, 102, ...
    v, _ = open_viewer(tmp_path)
    assert v.file_numbers == [100, 102, 104, 106]


@pytest.mark.parametrize("name", ["empty", "nothing-here"])
def test_a_source_that_cannot_be_opened_raises_open_stacks_error(tmp_path, name):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CTStackError) as expected:
        ctstack.open_stack(tmp_path / name)
    with pytest.raises(type(expected.value)) as got:
        ctstack.view(tmp_path / name)
    assert str(got.value) == str(expected.value)


# --- the model binding ---------------------------------------------------------------------


def test_crosshair_both_ways_without_echo(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    model = v.model
    events: list = []
    model.events.crosshair.connect(events.append)
    changes: list = []
    v.observe(lambda c: changes.append(c["new"]), names="crosshair")

    model.crosshair = (1, 2, 3)  # another face (napari's sync sets the same model)
    assert v.crosshair == [1, 2, 3] and changes == [[1, 2, 3]]

    v.crosshair = [4, 5, 6]  # from Python
    assert model.crosshair == (4, 5, 6)
    v.set_state({"crosshair": [7, 8, 9]})  # from the browser
    assert model.crosshair == (7, 8, 9) and v.crosshair == [7, 8, 9]
    assert events == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]  # once each: no echo
    assert changes == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]

    v.set_state({"crosshair": [99, -3, 51]})  # clamped by the model, and shown clamped
    assert model.crosshair == (11, 0, 51) and v.crosshair == [11, 0, 51]


def test_one_model_for_every_face_of_a_scan(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    again = ctstack.open_stack(stack.path)  # e.g. the napari layer's own Stack of the scan
    w, _ = open_viewer(again, layout="xy")
    assert w.model is v.model is model_for(again)
    v.crosshair = [2, 2, 2]
    assert w.crosshair == [2, 2, 2]
    w.colormap = "magma"
    assert v.colormap == "magma" and v.model.colormap == "magma"
    v.set_state({"pane_layout": "xy"})  # the browser's name for it (see the next test)
    assert w.layout == "xy" and v.model.layout == "xy" and w.pane_layout == "xy"
    w.close()  # a closed viewer stops listening; the other goes on
    v.model.crosshair = (3, 3, 3)
    assert v.crosshair == [3, 3, 3] and w.crosshair == [2, 2, 2]


def test_layout_reaches_the_browser_as_pane_layout(make_stack, open_viewer):
    """ipywidgets' DOMWidgetView takes a synced ``layout`` for its CSS Layout widget (a string
    there is a JavaScript error), so the browser sees the layout as ``pane_layout``."""
    stack = make_stack((4, 16, 16))
    v, _ = open_viewer(stack, layout="xy")
    assert "layout" not in v.keys and "pane_layout" in v.keys
    assert v.get_state()["pane_layout"] == "xy" and "layout" not in v.get_state()
    v.layout = "ortho"
    assert v.pane_layout == "ortho" and v.model.layout == "ortho"
    v.set_state({"pane_layout": "grid"})  # refused by the model: both put back
    assert v.layout == v.pane_layout == "ortho" and "layout" in v.warning
    with pytest.raises(InvalidArgument, match="layout"):
        v.layout = "grid"


def test_window_and_presets_through_the_model(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    model = v.model
    assert v.window == list(model.window) and v.window_preset == "0.5-99.5"
    v.window = [100.0, 2000.0]
    assert model.window == (100.0, 2000.0) and model.window_preset is None
    assert v.window_preset is None
    v.window_preset = "min-max"
    assert v.window == list(model.window) and model.window_preset == "min-max"
    v.set_state({"window": [500.0, 500.0]})  # a flat window from the browser is widened
    assert v.window == [500.0, 501.0] and model.window == (500.0, 501.0)
    model.apply_window("1-99")
    assert v.window == list(model.window) and v.window_preset == "1-99"


def test_refused_values_warn_from_the_browser_and_raise_from_python(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    before = list(v.window)
    v.set_state({"window": [20.0, 10.0]})
    assert v.window == before and "below high" in v.warning
    with pytest.raises(InvalidArgument, match="below high"):
        v.window = [20.0, 10.0]
    assert v.window == before and v.model.window == tuple(before)
    v.crosshair = [1, 1, 1]  # an accepted change clears the note
    assert v.warning == ""


def test_a_hounsfield_preset_on_data_that_is_not_hu(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack)
    window, preset = list(v.window), v.window_preset
    v.set_state({"window_preset": "bone"})  # the browser: no exception, a message
    assert v.window == window and v.window_preset == preset
    assert v.model.window == tuple(window)
    assert "Hounsfield" in v.warning and "not a DICOM CT series" in v.warning
    with pytest.raises(windows.NotHounsfield, match="Hounsfield"):
        v.window_preset = "bone"  # from Python it raises
    assert v.window == window and v.window_preset == preset


def test_hounsfield_presets_on_a_dicom_ct(tmp_path, open_viewer):
    make_series(tmp_path / "ct", n=4)
    v, _ = open_viewer(tmp_path / "ct")
    assert "bone" in v.presets
    v.window_preset = "bone"
    assert v.window == [-500.0, 1300.0] and v.model.window_preset == "bone"
    assert v.warning == ""


# --- tiles end to end ------------------------------------------------------------------------


def test_tiles_requested_by_the_browser(make_stack, open_viewer):
    stack = make_stack((12, 300, 270))
    volume = np.asarray(stack.data)
    v, browser = open_viewer(stack)
    browser.message({"type": "ready"})  # nothing to answer: state is synced
    browser.request("xy", 0, 5, [[0, 0], [1, 1]], rid=1)
    browser.request("yz", 0, 100, [[0, 1]], rid=2)
    content, buffers = browser.reply_to(1)
    assert content["type"] == "tiles" and content["dtype"] == "uint16"
    assert (content["view"], content["level"], content["plane"]) == ("xy", 0, 5)
    assert content["generation"] == v.generation
    assert [(t["r"], t["c"], t["h"], t["w"]) for t in content["tiles"]] == [
        (0, 0, 256, 256),
        (1, 1, 44, 14),
    ]
    assert len(buffers) == 2
    np.testing.assert_array_equal(tile_array(content["tiles"][0], buffers[0], "uint16"),
                                  volume[5, :256, :256])  # fmt: skip
    np.testing.assert_array_equal(tile_array(content["tiles"][1], buffers[1], "uint16"),
                                  volume[5, 256:, 256:])  # fmt: skip
    content, buffers = browser.reply_to(2)
    np.testing.assert_array_equal(tile_array(content["tiles"][0], buffers[0], "uint16"),
                                  volume[:, 256:, 100])  # fmt: skip
    assert len(browser.sent) == 2  # one message per request
    assert threading.get_ident() not in browser.threads  # replies come from the server thread
    assert v.stats["requests"] == 2 and v.stats["tiles"] == 3
    assert v.stats["bytes"] == 2 * (256 * 256 + 44 * 14 + 12 * 44)


def test_bad_messages_never_crash(make_stack, open_viewer):
    stack = make_stack((4, 16, 16))
    v, browser = open_viewer(stack)
    browser.message("not a dict")  # type: ignore[arg-type]
    browser.message({"type": "no such thing"})
    browser.message({"type": "cancel", "ids": None})
    browser.message({"type": "screenshot", "id": 12345})  # nobody asked
    browser.request("xy", 0, 99, [[0, 0]], rid=1)
    assert "plane" in browser.reply_to(1)[0]["message"]
    browser.message({"type": "tiles", "id": 2, "view": "xy", "level": "x", "plane": 0,
                     "tiles": [[0, 0]], "generation": v.generation})  # fmt: skip
    assert "level" in browser.reply_to(2)[0]["message"]
    browser.message({"type": "tiles", "id": 3, "view": "xy", "level": 0, "plane": 0,
                     "tiles": "[[0, 0]]", "generation": v.generation})  # fmt: skip
    assert browser.reply_to(3)[0]["type"] == "error"
    browser.request("xy", 0, 0, [[0, 0]], rid=4)
    assert browser.reply_to(4)[0]["type"] == "tiles"


def test_a_request_of_an_older_generation_is_dropped(make_stack, open_viewer):
    stack = make_stack((4, 16, 16))
    v, browser = open_viewer(stack)
    browser.message({"type": "tiles", "id": 1, "view": "xy", "level": 0, "plane": 0,
                     "tiles": [[0, 0]], "generation": v.generation - 1})  # fmt: skip
    content, buffers = browser.reply_to(1)
    assert content["dropped"] is True and content["tiles"] == [] and buffers == []
    assert content["generation"] == v.generation


def test_missing_and_bad_slices_show_as_zeros_with_a_warning(tmp_path, open_viewer):
    volume = (np.arange(6 * 4 * 5, dtype=np.uint16).reshape(6, 4, 5) + 1) * 10
    for z in (0, 1, 3, 4, 5):  # file 2 is missing
        tifffile.imwrite(tmp_path / f"s_{z:03d}.tif", volume[z])
    v, browser = open_viewer(tmp_path)
    assert v.warning == "1 missing slice (z 2, file 2) shown as zeros"
    browser.request("xy", 0, 2, [[0, 0]], rid=1)
    content, buffers = browser.reply_to(1)
    assert content["tiles"][0]["missing"] is True
    assert not tile_array(content["tiles"][0], buffers[0], "uint16").any()


def test_a_bad_slice_found_while_reading_sets_the_warning(tmp_path, open_viewer):
    from PIL import Image

    good = np.arange(30, dtype=np.uint8).reshape(6, 5)
    for i in range(3):
        Image.fromarray(good).save(tmp_path / f"p_{i}.png")
    path = tmp_path / "p_1.png"
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\x00garbage"  # the header is fine, the pixels are not
    path.write_bytes(bytes(data))
    v, browser = open_viewer(tmp_path)  # the window's sample may already meet it
    browser.request("xy", 0, 1, [[0, 0]], rid=1)
    content, buffers = browser.reply_to(1)
    assert content["tiles"][0]["missing"] is True
    assert not tile_array(content["tiles"][0], buffers[0], "uint8").any()
    assert v.warning == "1 bad slice (z 1, file 1) shown as zeros"


# --- the background build --------------------------------------------------------------------


def test_without_a_pyramid_it_is_built_in_the_background(tmp_path, open_viewer):
    write_phantom_stack(tmp_path / "big", (6, 24, 1030), "uint16", seed=2)
    stack = ctstack.open_stack(tmp_path / "big")
    gate = hold_builds(stack)  # the build waits; the viewer's reads go on
    v, browser = open_viewer(stack)
    assert v.building and v.levels == [{"shape": [6, 24, 1030]}]
    assert v.progress["label"] and v.progress["total"] == 6
    generation = v.generation
    browser.request("xy", 0, 3, [[0, 4]], rid=1)  # level 0 is served during the build
    content, buffers = browser.reply_to(1)
    assert content["type"] == "tiles" and content["tiles"][0]["w"] == 1030 - 1024
    gate.set()
    assert v.wait_for_pyramid(60)
    assert [lv["shape"] for lv in v.levels] == [[6, 24, 1030], [3, 12, 515], [2, 6, 258]]
    assert v.generation == generation + 1 and v.progress == {}
    assert stack.pyramid is not None and stack.pyramid.built
    browser.request("xz", 2, 3, [[0, 0]], rid=2)
    content, buffers = browser.reply_to(2)
    expected = np.asarray(stack.levels[2])[:, 3, :256]
    np.testing.assert_array_equal(tile_array(content["tiles"][0], buffers[0], "uint16"), expected)


def test_closing_the_viewer_stops_its_build_and_server(tmp_path):
    write_phantom_stack(tmp_path / "big", (8, 16, 1030), "uint16", seed=2)
    stack = ctstack.open_stack(tmp_path / "big")
    gate = hold_builds(stack)  # the build waits; the viewer's reads go on
    v = ctstack.view(stack, cache_dir=tmp_path / "cache")
    build = v._build
    assert build is not None and build.running and v._server.alive
    threading.Timer(0.3, gate.set).start()  # the readers notice the cancel once released
    v.close()
    build.join(20)
    assert not build.running and not v._server.alive
    assert stack.pyramid is None and v.levels == [{"shape": [8, 16, 1030]}]  # nothing adopted
    assert not list((tmp_path / "cache").rglob("manifest.json"))  # no entry committed
    v.close()  # twice is fine


def test_viewers_of_one_stack_share_its_build(tmp_path, open_viewer):
    write_phantom_stack(tmp_path / "big", (6, 8, 1030), "uint16", seed=2)
    stack = ctstack.open_stack(tmp_path / "big")
    gate = threading.Event()
    original = stack.read_slice
    built = []

    def read_slice(z, out=None):
        if threading.current_thread().name.startswith("ctstack-read"):
            gate.wait(20)
            built.append(z)
        return original(z, out=out)

    stack.read_slice = read_slice
    first, _ = open_viewer(stack)
    second, _ = open_viewer(stack, layout="xy")
    assert first._build is second._build and first.building
    first.close()  # the other viewer still waits: the build goes on
    gate.set()
    assert second.wait_for_pyramid(60) and len(second.levels) == 3
    assert sorted(built) == list(range(6))  # one pass over the slices


def test_a_failed_build_leaves_level_0_and_says_why(tmp_path, open_viewer):
    write_phantom_stack(tmp_path / "big", (4, 8, 1030), "uint16", seed=2)
    stack = ctstack.open_stack(tmp_path / "big")

    def build_pyramid(**kwargs):
        raise CacheError("no space left on the cache disk")

    stack.build_pyramid = build_pyramid
    v, browser = open_viewer(stack)
    assert v.wait_for_pyramid(20)
    assert "pyramid build failed" in v.warning and "no space left" in v.warning
    assert v.progress == {} and len(v.levels) == 1
    browser.request("xy", 0, 0, [[0, 0]], rid=1)
    assert browser.reply_to(1)[0]["type"] == "tiles"


def test_a_cached_pyramid_is_used_without_a_build(tmp_path, open_viewer):
    write_phantom_stack(tmp_path / "big", (4, 8, 1030), "uint16", seed=2)
    ctstack.open_stack(tmp_path / "big").build_pyramid(cache_dir=tmp_path / "cache")
    v, _ = open_viewer(tmp_path / "big", cache_dir=tmp_path / "cache")
    assert not v.building and len(v.levels) == 3 and v.progress == {}


# --- screenshots -----------------------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\nfake"


def test_a_screenshot_future_resolves_when_the_browser_replies(make_stack, open_viewer, tmp_path):
    stack = make_stack((4, 16, 16))
    v, browser = open_viewer(stack)
    fut = v.save_screenshot(tmp_path / "shot.png", view="xz")
    (asked, _), *_ = browser.sent
    assert asked == {"type": "screenshot", "id": asked["id"], "view": "xz"}
    assert not fut.done()  # the browser answers between cells
    browser.message({"type": "screenshot", "id": asked["id"]}, [memoryview(PNG)])
    assert fut.result(timeout=0) == tmp_path / "shot.png"
    assert (tmp_path / "shot.png").read_bytes() == PNG

    fut = v.save_screenshot(tmp_path / "all.png")
    asked = browser.sent[-1][0]
    assert asked["view"] is None
    browser.message({"type": "screenshot", "id": asked["id"], "error": "no canvas"})
    with pytest.raises(ScreenshotError, match="no canvas"):
        fut.result(timeout=0)

    fut = v.save_screenshot(tmp_path / "missing-dir" / "x.png")
    browser.message({"type": "screenshot", "id": browser.sent[-1][0]["id"]}, [PNG])
    with pytest.raises(ScreenshotError, match="cannot write"):
        fut.result(timeout=0)

    with pytest.raises(InvalidArgument, match="view"):
        v.save_screenshot(tmp_path / "x.png", view="4d")  # "3d" is the 3D pane's (issue 16)
    pending = v.save_screenshot(tmp_path / "late.png")
    v.close()
    with pytest.raises(ScreenshotError, match="closed"):
        pending.result(timeout=0)
    with pytest.raises(ScreenshotError, match="closed"):
        v.save_screenshot(tmp_path / "after.png").result(timeout=0)


# --- camera and plan -------------------------------------------------------------------------


def test_plan_follows_the_camera(tmp_path, open_viewer):
    write_phantom_stack(tmp_path / "big", (4, 8, 1030), "uint16", seed=2)
    ctstack.open_stack(tmp_path / "big").build_pyramid(cache_dir=tmp_path / "cache")
    v, _ = open_viewer(tmp_path / "big", layout="xy", cache_dir=tmp_path / "cache")
    # fitted: 1030 px across 640 CSS px -> zoom 0.62 -> level 0 would be wasted: level... 0?
    level, tiles = v.plan("xy")
    assert level == 0 and tiles == [(0, c) for c in range(5)]  # 0.62 > 0.5: level 0
    level, tiles = v.plan("xy", pane=(200, 200))  # zoom 0.19: level 2 (258 wide)
    assert level == 2 and tiles == [(0, 0), (0, 1)]
    v.camera = {**v.camera, "xy": {"zoom": 2.0, "center": [4.0, 600.0]}}
    level, tiles = v.plan("xy", pane=(200, 200))  # cols 550..650 at level 0
    assert level == 0 and tiles == [(0, 2)]
    assert v.plan("xy", pane=(200, 200), dpr=0.25)[0] == 1


# --- packaging and imports -------------------------------------------------------------------


def test_the_package_ships_the_browser_module():
    files = resources.files("ctstack.jupyter")
    js = files.joinpath("viewer.js")
    assert js.is_file() and files.joinpath("viewer.css").is_file()
    assert "export default" in js.read_text(encoding="utf-8")


def test_import_ctstack_does_not_import_anywidget_and_view_is_lazy():
    code = (
        "import sys, ctstack\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'anywidget', 'ipywidgets', 'napari', 'qtpy', 'PyQt6'} or m == 'ctstack.jupyter'))\n"
        "from ctstack.jupyter import view\n"
        "print(ctstack.view is view, 'napari' in sys.modules, 'qtpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True False False"]


def test_kernel_shutdown_stops_the_servers(make_stack, open_viewer):
    from ctstack.jupyter import _server

    stack = make_stack((4, 16, 16))
    v, _ = open_viewer(stack)
    assert v._server in set(_server._LIVE)
    _server._stop_all()  # what atexit runs
    for _ in range(100):
        if not v._server.alive:
            break
        time.sleep(0.02)
    assert not v._server.alive


KILLED_KERNEL = """
import sys, threading, time
import ctstack
stack = ctstack.open_stack(sys.argv[1])
original = stack.read_slice
def read_slice(z, out=None):
    if threading.current_thread().name.startswith("ctstack-read"):
        time.sleep(2.0)  # slow enough to be killed mid-build on a loaded machine
    return original(z, out=out)
stack.read_slice = read_slice
v = ctstack.view(stack, cache_dir=sys.argv[2])
print("building" if v.building else "idle", flush=True)
time.sleep(120)
"""


def test_a_killed_kernels_temp_files_are_swept_by_the_next_open(tmp_path, open_viewer):
    write_phantom_stack(tmp_path / "big", (12, 8, 1030), "uint16", seed=2)
    cache = tmp_path / "cache"
    kernel = subprocess.Popen(
        [sys.executable, "-c", KILLED_KERNEL, str(tmp_path / "big"), str(cache)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert kernel.stdout is not None and kernel.stdout.readline().strip() == "building"
        for _ in range(600):
            if list(cache.rglob(".tmp-*")):
                break
            time.sleep(0.05)
        assert list(cache.rglob(".tmp-*")), "the build made no temp folder"
    finally:
        kernel.kill()  # a kernel killed mid-build (this test's own child, by its pid)
        kernel.wait(10)
    v, _ = open_viewer(tmp_path / "big", cache_dir=cache)
    assert v.wait_for_pyramid(60) and len(v.levels) == 3
    leftovers = [p for p in cache.rglob("*") if p.name.startswith((".tmp-", ".partial-"))]
    assert leftovers == []


def test_napari_and_the_notebook_share_one_model(make_stack, open_viewer):
    """napari's sync (Qt-free ViewerModel) and the widget bind the same ViewModel."""
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from ctstack.napari import read_stack, sync_viewer

    stack = make_stack((12, 40, 52))
    [(data, kwargs, _)] = read_stack(str(stack.path))
    viewer = ViewerModel()
    layer = viewer.add_image(data, **kwargs)
    sync_viewer(viewer)
    v, _ = open_viewer(stack.path)  # its own Stack of the same scan
    assert v.model is model_for(kwargs["metadata"]["stack"])
    viewer.dims.set_current_step(0, 3)  # napari moves the slice ...
    assert v.crosshair[0] == 3
    v.set_state({"crosshair": [7, 10, 11]})  # ... the browser moves it back
    assert viewer.dims.current_step[0] == 7
    v.window = [1000.0, 3000.0]
    assert tuple(layer.contrast_limits) == (1000.0, 3000.0)
    layer.colormap = "magma"
    assert v.colormap == "magma"


def test_without_anywidget_view_says_which_extra_to_install():
    code = (
        "import sys; sys.modules['anywidget'] = None\n"
        "from ctstack import *\n"  # a core install: the star import must still work
        "import ctstack\n"
        "try:\n    ctstack.view('nowhere')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "napari-ctstack[jupyter]"' in out.stdout
