"""``ctstack.view`` in a real browser (JupyterLab, headless Chromium): pixels, links, controls.

One notebook page (one kernel) serves most tests: each test appends a cell that displays its own
viewer and checks the canvases against the planes of the stack, read here with ``open_stack``.
The attributes, traitlets and DOM used here are those of src/ctstack/jupyter/CONTRACT.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..conftest import real_scan
from .conftest import (
    REPO_DOCS_IMAGES,
    Cell,
    JupyterServer,
    NotebookPage,
    assert_shows,
    launch,
    notebook_page,
    windowed,
)

SETUP = "import ctstack"
VIEWS = ("xy", "xz", "yz")


def planes(vol: np.ndarray, crosshair: list[int]) -> dict[str, np.ndarray]:
    """The level-0 planes through ``crosshair`` as each view shows them (rows down, cols right)."""
    z, y, x = crosshair
    return {"xy": vol[z], "xz": vol[:, y, :], "yz": vol[:, :, x]}


def plane_index(view: str, crosshair: list[int]) -> int:
    """The level-0 index of the plane a view shows for ``crosshair``."""
    return crosshair[VIEWS.index(view)]


def show(nb: NotebookPage, var: str, call: str, crosshair: list[int] | None = None) -> Cell:
    """Display ``var = call`` in a new cell (with ``crosshair`` set first: viewers of one stack
    share its view model, so the previous test's crosshair would carry over); wait until each
    of its views has a full frame."""
    first = f"{var}.crosshair = {crosshair}\n" if crosshair else ""
    cell = nb.run_cell(f"{var} = {call}\n{first}{var}")
    layout = nb.py("", f"{var}.layout")
    crosshair = nb.py("", f"list({var}.crosshair)")
    for view in VIEWS if layout == "ortho" else ("xy",):
        nb.wait_view(cell.canvas(view), plane=plane_index(view, crosshair))
    return cell


def check_views(
    nb: NotebookPage, cell: Cell, var: str, vol: np.ndarray, views: tuple[str, ...] = VIEWS
) -> dict[str, dict[str, float]]:
    """Assert every view of ``var`` shows the plane through its crosshair under its window."""
    crosshair = nb.py("", f"list({var}.crosshair)")
    window = nb.py("", f"list({var}.window)")
    expect = planes(vol, crosshair)
    scores = {}
    for view in views:
        attrs = nb.wait_view(cell.canvas(view), plane=plane_index(view, crosshair))
        assert int(attrs["level"]) == 0, attrs  # small stacks: level 0 only
        scores[view] = assert_shows(nb, cell.canvas(view), expect[view], window)
    return scores


@pytest.fixture(scope="module")
def nb(browser: Any, lab: JupyterServer) -> Iterator[NotebookPage]:
    """The module's notebook page: one kernel, one cell per viewer."""
    with notebook_page(browser, lab, "viewer.ipynb", [SETUP]) as page:
        page.run_all()
        yield page
        assert page.errors == [], f"JavaScript errors on the page: {page.errors}"


def test_ortho_planes_of_the_phantom(nb, phantom):
    """XY/XZ/YZ show the planes through the crosshair, the right way round, at the physical
    aspect (anisotropic voxels: z 2.5x longer); a crosshair set from Python redraws all three."""
    name, vol = phantom
    cell = show(nb, "vo", f"ctstack.view({name!r}, size=300, voxel_size=(25.0, 10.0, 10.0))")
    assert nb.py("", "vo.renderer") == "webgl2"
    assert nb.page.locator(f'{cell.sel} .ctstack-viewer [data-pane="3d"]').count() == 1
    nb.py("vo.crosshair = [17, 44, 110]")
    check_views(nb, cell, "vo", vol)
    voxel = nb.py("", "vo.voxel")
    assert voxel == pytest.approx([25.0, 10.0, 10.0])
    for view, (rows, cols) in {"xz": (0, 2), "yz": (0, 1), "xy": (1, 2)}.items():
        rect = [float(v) for v in nb.attrs(cell.canvas(view))["imageRect"].split(",")]
        want = (vol.shape[cols] * voxel[cols]) / (vol.shape[rows] * voxel[rows])
        assert rect[2] / rect[3] == pytest.approx(want, rel=0.03), (view, rect)
    frames = {v: nb.frames(cell.canvas(v)) for v in VIEWS}
    nb.py("vo.crosshair = [25, 100, 60]")
    for view in VIEWS:
        nb.wait_view(cell.canvas(view), after=frames[view], plane=plane_index(view, [25, 100, 60]))
    check_views(nb, cell, "vo", vol)
    nb.py("vo.close()")


def test_ortho_planes_of_a_real_scan(nb, tmp_path_factory):
    """The same on a real head CT (anisotropic voxels, its spacing given): its planes are far
    from symmetric, so the flipped images correlate clearly lower."""
    folder, facts = real_scan("niivue_ct_pitch_head")
    vol = _read(folder)
    assert list(vol.shape) == facts["shape_zyx"]
    cache = tmp_path_factory.mktemp("real-cache")
    spacing = tuple(facts["spacing_zyx_mm"])  # its TIFFs carry no z spacing
    call = f"ctstack.view({str(folder)!r}, size=300, cache_dir={str(cache)!r}"
    cell = show(nb, "vr", f"{call}, voxel_size={spacing}, unit='mm')")
    nb.py("vr.crosshair = [30, 120, 80]")
    scores = check_views(nb, cell, "vr", vol)
    for view, s in scores.items():
        assert max(s["flip_ud"], s["flip_lr"]) < s["same"] - 0.25, (view, s)
    if os.environ.get("CTSTACK_WRITE_DOCS_IMAGES") == "1":
        nb.page.locator(f"{cell.sel} .ctstack-viewer").screenshot(
            path=REPO_DOCS_IMAGES / "jupyter_ortho.png"
        )
    nb.py("vr.close()")


def test_slider_key_and_python_crosshair_redraw(nb, phantom):
    """ArrowRight on the z slider shows the next slice and reaches Python; a crosshair set in
    Python moves the slice back."""
    name, vol = phantom
    cell = show(nb, "vs", f"ctstack.view({name!r}, layout='xy', size=380)", [20, 75, 95])
    sel = cell.canvas("xy")
    z0 = nb.py("", "vs.crosshair[0]")
    before = nb.frames(sel)
    slider = nb.page.locator(f'{cell.sel} input[type=range][data-axis="z"]')
    slider.focus()
    nb.page.keyboard.press("ArrowRight")
    nb.wait_view(sel, after=before, plane=z0 + 1)
    assert nb.py_wait("vs.crosshair[0]", lambda z: z == z0 + 1) == z0 + 1
    check_views(nb, cell, "vs", vol, ("xy",))
    before = nb.frames(sel)
    nb.py("vs.crosshair = [7, vs.crosshair[1], vs.crosshair[2]]")
    nb.wait_view(sel, after=before, plane=7)
    assert slider.input_value() == "7"
    check_views(nb, cell, "vs", vol, ("xy",))
    nb.py("vs.close()")


def test_click_in_xz_moves_the_crosshair(nb, phantom):
    """A click on XZ at (z, x) sets the crosshair there in Python; XY and YZ follow."""
    name, vol = phantom
    cell = show(nb, "vc", f"ctstack.view({name!r}, size=300)", [20, 75, 95])
    c0 = nb.py("", "list(vc.crosshair)")
    y0 = c0[1]
    sel = cell.canvas("xz")
    box = nb.page.locator(sel).bounding_box()
    rx, ry, rw, rh = (float(v) for v in nb.attrs(sel)["imageRect"].split(","))
    z1, x1 = 11, 140
    frames = {v: nb.frames(cell.canvas(v)) for v in VIEWS}
    nb.page.mouse.click(
        box["x"] + rx + (x1 + 0.5) / vol.shape[2] * rw,
        box["y"] + ry + (z1 + 0.5) / vol.shape[0] * rh,
    )
    got = nb.py_wait("list(vc.crosshair)", lambda c: c != c0)
    assert abs(got[0] - z1) <= 1 and got[1] == y0 and abs(got[2] - x1) <= 1, got
    nb.wait_view(cell.canvas("xy"), after=frames["xy"], plane=got[0])
    nb.wait_view(cell.canvas("yz"), after=frames["yz"], plane=got[2])
    check_views(nb, cell, "vc", vol)
    nb.py("vc.close()")


def test_window_fields_and_preset_change_the_pixels(nb, phantom):
    """Low/high typed in the fields and a preset picked in the menu reach Python and the
    pixels follow the new window (grey levels, not only the correlation)."""
    name, vol = phantom
    cell = show(nb, "vw", f"ctstack.view({name!r}, layout='xy', size=380)", [20, 75, 95])
    sel = cell.canvas("xy")
    z = nb.py("", "vw.crosshair[0]")
    # a narrow window around the specimen's grey level: much of the plane saturates
    lo, hi = np.percentile(vol[z], [40, 70]).round().tolist()
    before = nb.frames(sel)
    for field, value in (("low", lo), ("high", hi)):
        box = nb.page.locator(f'{cell.sel} input[data-field="{field}"]')
        box.fill(str(value))
        box.press("Enter")
        box.evaluate("e => e.blur()")
    got = nb.py_wait("list(vw.window)", lambda w: w == [lo, hi])
    assert nb.py("", "vw.window_preset") is None  # a typed window is no preset
    nb.wait_view(sel, after=before, plane=z)
    assert_shows(nb, sel, vol[z], got)  # grey levels too, not only the correlation
    assert float(np.mean(windowed(vol[z], got) >= 255)) > 0.2  # the window really clips
    presets = nb.py("", "vw.presets")
    assert len(presets) >= 2, f"the model offers too few window presets: {presets}"
    preset = presets[1]
    before = nb.frames(sel)
    nb.page.locator(f'{cell.sel} select[data-field="preset"]').select_option(preset)
    assert nb.py_wait("vw.window_preset", lambda p: p == preset) == preset
    window = nb.py_wait("list(vw.window)", lambda w: w != [lo, hi])
    nb.wait_view(sel, after=before, plane=z)
    assert_shows(nb, sel, vol[z], window)
    if os.environ.get("CTSTACK_WRITE_DOCS_IMAGES") == "1":
        nb.page.locator(f"{cell.sel} .ctstack-viewer").screenshot(
            path=REPO_DOCS_IMAGES / "jupyter_xy.png"
        )
    # a Hounsfield preset on data that is not HU: refused, with the reason in the status line
    why = nb.py(
        "try:\n    vw.window_preset = 'bone'\n    why = None\nexcept Exception as e:\n"
        "    why = f'{type(e).__name__}: {e}'",
        "why",
    )
    assert why and why.startswith("NotHounsfield") and "Hounsfield" in why, why
    assert nb.py("", "[vw.window_preset, list(vw.window)]") == [preset, window]
    status = nb.page.locator(f'{cell.sel} [data-role="status"]')
    status.filter(has_text="Hounsfield").wait_for(timeout=10_000)
    nb.py("vw.close()")


def test_mouse_status_zoom_pan_and_window_drag(nb, phantom):
    """The status line names the voxel under the cursor and its value; the wheel zooms in (the
    camera reaches Python, the image outgrows the pane and its visible part still matches);
    a drag pans; a right-drag widens the window."""
    name, vol = phantom
    cell = show(nb, "vm", f"ctstack.view({name!r}, layout='xy', size=380)", [20, 75, 95])
    sel = cell.canvas("xy")
    box = nb.page.locator(sel).bounding_box()

    def at(row: float, col: float) -> tuple[float, float]:
        rx, ry, rw, rh = (float(v) for v in nb.attrs(sel)["imageRect"].split(","))
        return box["x"] + rx + col / vol.shape[2] * rw, box["y"] + ry + row / vol.shape[1] * rh

    nb.page.mouse.move(*at(40.5, 120.5))
    want = f"z 20 y 40 x 120 · value {int(vol[20, 40, 120])}"
    assert want in nb.py_wait("vm.status", lambda s: want in s), want

    before = nb.frames(sel)
    nb.page.mouse.move(*at(75, 95))
    for _ in range(5):
        nb.page.mouse.wheel(0, -240)  # zoom in about the centre
    cam = nb.py_wait("vm.camera['xy']", lambda c: (c.get("zoom") or 0) > 4)
    attrs = nb.wait_view(sel, after=before, plane=20)
    rect = [float(v) for v in attrs["imageRect"].split(",")]
    assert rect[2] > box["width"] and rect[3] > box["height"], (rect, box)
    assert abs(cam["center"][0] - 75) < 10 and abs(cam["center"][1] - 95) < 10, cam
    assert_shows(nb, sel, vol[20], nb.py("", "list(vm.window)"))  # the visible part only

    before = nb.frames(sel)
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    nb.page.mouse.move(x0, y0)
    nb.page.mouse.down()
    nb.page.mouse.move(x0 + 60, y0 + 40, steps=6)
    nb.page.mouse.up()
    moved = nb.py_wait("vm.camera['xy']", lambda c: c["center"] != cam["center"])
    # dragging the image right and down shows what lies up and left of the old centre
    assert moved["center"][0] < cam["center"][0] and moved["center"][1] < cam["center"][1]
    assert nb.py("", "list(vm.crosshair)") == [20, 75, 95]  # a drag is no click
    nb.wait_view(sel, after=before, plane=20)

    lo, hi = nb.py("", "list(vm.window)")
    nb.page.mouse.move(x0, y0)
    nb.page.mouse.down(button="right")
    nb.page.mouse.move(x0 + 80, y0, steps=6)
    nb.page.mouse.up(button="right")
    # JupyterLab must not open its context menu over the viewer (data-jp-suppress-context-menu)
    menus = nb.page.locator(".lm-Menu").count()
    nb.page.keyboard.press("Escape")  # close one anyway: it would cover the next tests' views
    wider = nb.py_wait("list(vm.window)", lambda w: w != [lo, hi])
    assert wider[1] - wider[0] > hi - lo, (wider, [lo, hi])
    nb.py("vm.close()")
    assert menus == 0, "a right-drag in the viewer opened JupyterLab's context menu"


def test_forced_canvas2d_renderer(nb, phantom):
    """``renderer="canvas2d"`` draws with Canvas2D even where WebGL2 exists, pixels right."""
    name, vol = phantom
    cell = show(nb, "vk", f"ctstack.view({name!r}, layout='xy', renderer='canvas2d')")
    assert nb.attrs(cell.canvas("xy"))["renderer"] == "canvas2d"
    assert nb.py_wait("vk.renderer", lambda r: r != "") == "canvas2d"
    check_views(nb, cell, "vk", vol, ("xy",))
    nb.py("vk.close()")


def test_canvas2d_fallback_without_webgl(playwright_instance, chromium, lab, phantom):
    """A browser without WebGL (``--disable-3d-apis``) still gets the planes, via Canvas2D."""
    name, vol = phantom
    browser = launch(playwright_instance, chromium, "--disable-3d-apis")
    try:
        with notebook_page(browser, lab, "no_webgl.ipynb", [SETUP]) as page:
            page.run_all()
            assert page.page.evaluate(
                "() => !document.createElement('canvas').getContext('webgl2')"
            )
            cell = show(page, "vn", f"ctstack.view({name!r}, size=260)")
            for view in VIEWS:
                assert page.attrs(cell.canvas(view))["renderer"] == "canvas2d"
            assert page.py("", "vn.renderer") == "canvas2d"
            check_views(page, cell, "vn", vol)
            assert page.errors == []
    finally:
        browser.close()


def test_redisplay_and_page_reload(browser, lab, phantom):
    """A second output of the same widget draws too, and so do both after a page reload."""
    name, vol = phantom
    with notebook_page(browser, lab, "reload.ipynb", [SETUP]) as page:
        page.run_all()
        first = show(page, "vd", f"ctstack.view({name!r}, layout='xy', size=300)")
        second = page.run_cell("vd")
        page.wait_view(second.canvas("xy"), plane=page.py("", "vd.crosshair[0]"))
        check_views(page, second, "vd", vol, ("xy",))
        page.py("vd.crosshair = [9, vd.crosshair[1], vd.crosshair[2]]")
        for cell in (first, second):  # both outputs follow the shared state
            page.wait_view(cell.canvas("xy"), plane=9)
        page.save()
        page.page.reload()
        page.open()
        cells = page.tag_cells()
        for cell in (cells[first.index], cells[second.index]):
            page.wait_view(cell.canvas("xy"), plane=9)
            check_views(page, cell, "vd", vol, ("xy",))
        before = page.frames(cells[second.index].canvas("xy"))
        page.py("vd.crosshair = [12, vd.crosshair[1], vd.crosshair[2]]")  # still linked
        page.wait_view(cells[second.index].canvas("xy"), after=before, plane=12)
        assert page.errors == []


def test_notebook7(chromium, browser, phantom, lab_root, tmp_path_factory):
    """The viewer works in Notebook 7 as well (its own server), with its keyboard controls."""
    name, vol = phantom
    server = JupyterServer("notebook", lab_root, tmp_path_factory.mktemp("nb7-home"))
    server.start()
    try:
        cells = [SETUP, f"vn7 = ctstack.view({name!r}, layout='xy', size=320)\nvn7"]
        with notebook_page(browser, server, "nb7.ipynb", cells) as page:
            page.run_all()
            cell = page.tag_cells()[1]
            z0 = page.py("", "vn7.crosshair[0]")
            sel = cell.canvas("xy")
            page.wait_view(sel, plane=z0)
            check_views(page, cell, "vn7", vol, ("xy",))
            before = page.frames(sel)
            page.page.locator(f'{cell.sel} input[type=range][data-axis="z"]').focus()
            page.page.keyboard.press("ArrowLeft")  # Notebook 7 must not take the key
            page.wait_view(sel, after=before, plane=z0 - 1)
            assert page.py_wait("vn7.crosshair[0]", lambda z: z == z0 - 1) == z0 - 1
            assert page.page.locator(".jp-Notebook .jp-Cell").count() == 2  # no cell added
            assert page.errors == []
    finally:
        server.stop()


def _read(folder: Path) -> np.ndarray:
    """The whole level 0 of a stack, read with ctstack's own reader."""
    import ctstack

    return np.asarray(ctstack.open_stack(folder).data.compute())
