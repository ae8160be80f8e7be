"""The ROI and ruler tools (tools.js) in a real browser: real mouse drags (Playwright's
``page.mouse``) in the 2D panes arrive in Python and in roi.json; an ROI set from code is drawn;
the ruler's length matches span x voxel size; a stack with bad slices says so in the status.

Each test uses its own copy of the phantom: an ROI commits roi.json beside the stack, which the
other browser modules' phantom must not get.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..conftest import real_scan
from .conftest import (
    PHANTOM_SHAPE,
    REPO_DOCS_IMAGES,
    Cell,
    JupyterServer,
    NotebookPage,
    notebook_page,
)

SETUP = "import ctstack, json\nfrom ctstack.roi import load_selection"
VOXEL = (25.0, 10.0, 10.0)  # µm, anisotropic: z voxels 2.5x longer
AXES = {"xy": (1, 2, 0), "xz": (0, 2, 1), "yz": (0, 1, 2)}  # rows, cols, plane (z=0, y=1, x=2)


@pytest.fixture(scope="module")
def nb(browser: Any, lab: JupyterServer) -> Iterator[NotebookPage]:
    with notebook_page(browser, lab, "tools.ipynb", [SETUP]) as page:
        page.run_all()
        yield page
        assert page.errors == [], f"JavaScript errors on the page: {page.errors}"


@pytest.fixture
def scan(lab_root: Path, request: pytest.FixtureRequest) -> str:
    """A fresh phantom slice folder in the server root, named after the test."""
    from ctstack.sample import write_phantom_stack

    name = f"tools_{request.node.name}"
    shutil.rmtree(lab_root / name, ignore_errors=True)
    write_phantom_stack(lab_root / name, PHANTOM_SHAPE, voxel_size_um=10.0)
    return name


def open_viewer(nb: NotebookPage, var: str, call: str, views: tuple[str, ...]) -> Cell:
    cell = nb.run_cell(f"{var} = {call}\n{var}")
    crosshair = nb.py("", f"list({var}.crosshair)")
    for view in views:
        plane = crosshair[AXES[view][2]]
        nb.wait_view(cell.canvas(view), plane=plane)
    return cell


def mapping(nb: NotebookPage, cell: Cell, view: str) -> dict[str, float]:
    """The pane's page position and its image rect: level-0 edge (row, col) -> page (x, y).
    Scrolls the whole viewer into view first (a mouse event off the viewport goes nowhere)."""
    nb.page.locator(f"{cell.sel} .ctstack-viewer").scroll_into_view_if_needed()
    nb.page.locator(cell.canvas(view)).scroll_into_view_if_needed()
    info = nb.page.evaluate(
        """s => { const c = document.querySelector(s); const b = c.getBoundingClientRect();
        return {x: b.x, y: b.y, rect: c.dataset.imageRect}; }""",
        cell.canvas(view),
    )
    rx, ry, rw, rh = (float(v) for v in info["rect"].split(","))
    shape = PHANTOM_SHAPE
    rows, cols, _ = AXES[view]
    return {
        "x": info["x"] + rx,
        "y": info["y"] + ry,
        "zx": rw / shape[cols],
        "zy": rh / shape[rows],
    }


def page_xy(m: dict[str, float], row: float, col: float) -> tuple[float, float]:
    return m["x"] + col * m["zx"], m["y"] + row * m["zy"]


def drag(
    nb: NotebookPage, a: tuple[float, float], b: tuple[float, float], during: Any = None
) -> None:
    """A left drag from a to b (page px); ``during()`` runs before the button is released."""
    mouse = nb.page.mouse
    mouse.move(*a)
    mouse.down()
    mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
    mouse.move(*b, steps=4)
    if during is not None:
        during()
    mouse.up()


def tool(nb: NotebookPage, cell: Cell, name: str) -> None:
    button = nb.page.locator(f'{cell.sel} button[data-tool="{name}"]')
    button.click()
    assert button.get_attribute("aria-pressed") == "true"


def test_a_drag_in_xy_then_in_xz_sets_the_roi_in_python_and_roi_json(nb, scan):
    cell = open_viewer(
        nb, "va", f"ctstack.view({scan!r}, size=300, voxel_size={VOXEL})", ("xy", "xz")
    )
    tool(nb, cell, "roi")
    m = mapping(nb, cell, "xy")
    status = f'{cell.sel} [data-role="status"]'
    seen: list[Any] = []

    def while_dragging() -> None:  # drawn locally: the size in the status, Python unchanged
        seen.extend([nb.page.locator(status).inner_text(), nb.py("", "va.roi['y']")])

    # from the centre of voxel (row 20, col 30) to that of (100, 150): y 20:101, x 30:151
    drag(nb, page_xy(m, 20.5, 30.5), page_xy(m, 100.5, 150.5), while_dragging)
    assert "ROI 40 x 81 x 121 voxels, 1000 x 810 x 1210 µm" in seen[0], seen
    assert seen[1] == [0, PHANTOM_SHAPE[1]]
    roi = nb.py_wait("va.roi", lambda r: r["y"] != [0, PHANTOM_SHAPE[1]])
    assert (roi["z"], roi["y"], roi["x"]) == ([0, 40], [20, 101], [30, 151])
    saved = nb.py("s = load_selection(va.stack)", "[list(s.roi.y), list(s.roi.x)]")
    assert saved == [[20, 101], [30, 151]]

    # rows z, cols x: a new box drawn there (from outside the old one's x range) sets z and x
    m = mapping(nb, cell, "xz")
    drag(nb, page_xy(m, 5.5, 10.5), page_xy(m, 24.5, 120.5))
    roi = nb.py_wait("va.roi", lambda r: r["z"] != [0, 40])
    assert (roi["z"], roi["y"], roi["x"]) == ([5, 25], [20, 101], [10, 121])
    assert nb.py("s = load_selection(va.stack)", "list(s.roi.z)") == [5, 25]

    # dragging the box's right edge in XY moves only that edge
    m = mapping(nb, cell, "xy")
    drag(nb, page_xy(m, 60, 121), page_xy(m, 60.2, 140.4))
    roi = nb.py_wait("va.roi", lambda r: r["x"] != [10, 121])
    assert (roi["z"], roi["y"], roi["x"]) == ([5, 25], [20, 101], [10, 140])
    # a drag inside the box moves it (10 rows down)
    drag(nb, page_xy(m, 60.3, 80.3), page_xy(m, 70.3, 80.3))
    roi = nb.py_wait("va.roi", lambda r: r["y"] != [20, 101])
    assert (roi["z"], roi["y"], roi["x"]) == ([5, 25], [30, 111], [10, 140])
    status = nb.page.locator(f'{cell.sel} [data-role="status"]').inner_text()
    assert "ROI 20 x 81 x 130 voxels, 500 x 810 x 1300 µm" in status
    nb.page.locator(f'{cell.sel} button[data-action="roi-full"]').click()
    roi = nb.py_wait("va.roi", lambda r: r["x"] == [0, PHANTOM_SHAPE[2]])
    assert roi["z"] == [0, 40] and roi["y"] == [0, 150]
    nb.py("va.close()")


def cyan_rows(png: bytes) -> float:
    """Share of the image's rows with a pixel in the ROI colour (cyan: blue and green high,
    red low; the crosshair is amber and the image grey)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((b > 200) & (g > 170) & (r < 140)).any(axis=1).mean())


def test_an_roi_set_from_code_is_drawn_in_every_pane(nb, scan):
    cell = open_viewer(nb, "vc", f"ctstack.view({scan!r}, size=300)", ("xy", "xz", "yz"))
    overlay = f'{cell.sel} [data-pane="xy"] canvas.ctstack-overlay'
    assert "roi" not in nb.attrs(overlay)  # the full volume, tool off: no box
    nb.py("vc.roi = {'z': [10, 30], 'y': [30, 90], 'x': [50, 160]}")
    nb.page.wait_for_function("s => !!document.querySelector(s).dataset.roi", arg=overlay)
    for view in ("xy", "xz", "yz"):
        m = mapping(nb, cell, view)
        sel = f'{cell.sel} [data-pane="{view}"] canvas.ctstack-overlay'
        rows, cols, _ = AXES[view]
        lo = [10, 30, 50]
        hi = [30, 90, 160]
        box = [float(v) for v in nb.attrs(sel)["roi"].split(",")]
        origin = nb.page.evaluate("s => document.querySelector(s).getBoundingClientRect().x", sel)
        top = nb.page.evaluate("s => document.querySelector(s).getBoundingClientRect().y", sel)
        want = [m["x"] - origin + lo[cols] * m["zx"], m["y"] - top + lo[rows] * m["zy"]]
        want += [(hi[cols] - lo[cols]) * m["zx"], (hi[rows] - lo[rows]) * m["zy"]]
        assert box == pytest.approx(want, abs=0.02), view
        # pixels: the box's left edge is cyan, the middle of the box is not
        x0, y0 = page_xy(m, lo[rows], lo[cols])
        x1, y1 = page_xy(m, hi[rows], hi[cols])
        edge = nb.page.screenshot(
            clip={"x": x0 - 2, "y": y0 + 4, "width": 5, "height": y1 - y0 - 8}
        )
        inside = nb.page.screenshot(
            clip={"x": (x0 + x1) / 2 - 3, "y": y0 + 6, "width": 6, "height": y1 - y0 - 12}
        )
        assert cyan_rows(edge) > 0.4, view  # dashed 6 on, 4 off: about 60 % of the rows
        assert cyan_rows(inside) == 0.0, view
    # the z handles: moving the start handle sets z only, once released
    slider = nb.page.locator(f'{cell.sel} input[data-field="roi-z0"]')
    assert slider.input_value() == "10"
    slider.evaluate(
        """e => { e.value = '4'; e.dispatchEvent(new Event('input', {bubbles: true}));
        e.dispatchEvent(new Event('change', {bubbles: true})); }"""
    )
    roi = nb.py_wait("vc.roi", lambda r: r["z"] != [10, 30])
    assert (roi["z"], roi["y"], roi["x"]) == ([4, 30], [30, 90], [50, 160])
    nb.py("vc.close()")


def test_auto_finds_the_phantom_and_reports_it(nb, scan):
    cell = open_viewer(nb, "vu", f"ctstack.view({scan!r}, size=300)", ("xy",))
    nb.page.locator(f'{cell.sel} button[data-action="roi-auto"]').click()
    roi = nb.py_wait("vu.roi", lambda r: r["source"] == "auto", timeout=60)
    assert [roi[a] for a in "zyx"] != [[0, 40], [0, 150], [0, 190]]
    assert nb.py("", "vu.threshold") is not None
    status = f'{cell.sel} [data-role="status"]'
    nb.page.wait_for_function(
        "s => document.querySelector(s).textContent.includes('auto-ROI:')", arg=status
    )
    assert (
        "object occupies" in nb.page.locator(f'{cell.sel} [data-role="tool-status"]').inner_text()
    )
    overlay = f'{cell.sel} [data-pane="xy"] canvas.ctstack-overlay'
    nb.page.wait_for_function("s => !!document.querySelector(s).dataset.roi", arg=overlay)
    nb.py("vu.close()")


def test_the_ruler_length_is_the_span_times_the_voxel_size(nb, scan):
    cell = open_viewer(
        nb, "vm", f"ctstack.view({scan!r}, size=300, voxel_size={VOXEL})", ("xy", "xz")
    )
    nb.py("vm.crosshair = [12, 70, 90]")
    nb.page.locator(f'{cell.sel} [data-pane="xy"]').focus()
    nb.page.keyboard.press("m")  # the ruler's key on a focused pane
    ruler = nb.page.locator(f'{cell.sel} button[data-tool="ruler"]')
    assert ruler.get_attribute("aria-pressed") == "true"
    m = mapping(nb, cell, "xy")
    a, b = (round(v) for v in page_xy(m, 40, 20)), (round(v) for v in page_xy(m, 110, 160))
    a, b = tuple(a), tuple(b)
    status: list[str] = []
    drag(
        nb,
        a,
        b,
        lambda: status.append(nb.page.locator(f'{cell.sel} [data-role="status"]').inner_text()),
    )
    lines = nb.py_wait("vm.measurements", lambda v: len(v) == 1)
    dy, dx = (b[1] - a[1]) / m["zy"], (b[0] - a[0]) / m["zx"]
    length = np.hypot(dy * VOXEL[1], dx * VOXEL[2])
    assert lines[0]["length"] == pytest.approx(length, rel=1e-3)
    live = float(status[0].split("ruler ")[1].split(" µm")[0])  # the length while dragging
    assert live == pytest.approx(length, rel=1e-3)
    assert lines[0]["unit"] == "micrometer"
    assert lines[0]["start"][0] == lines[0]["end"][0] == 12  # in the XY plane on screen

    m = mapping(nb, cell, "xz")  # rows z (25 µm), cols x (10 µm)
    a, b = tuple(round(v) for v in page_xy(m, 8, 30)), tuple(round(v) for v in page_xy(m, 30, 100))
    drag(nb, a, b)
    lines = nb.py_wait("vm.measurements", lambda v: len(v) == 2)
    dz, dx = (b[1] - a[1]) / m["zy"], (b[0] - a[0]) / m["zx"]
    assert lines[1]["length"] == pytest.approx(np.hypot(dz * VOXEL[0], dx * VOXEL[2]), rel=1e-3)
    assert lines[1]["start"][1] == lines[1]["end"][1] == 70

    xy = f'{cell.sel} [data-pane="xy"] canvas.ctstack-overlay'
    nb.page.wait_for_function("s => document.querySelector(s).dataset.measurements === '1'", arg=xy)
    items = nb.page.locator(f'{cell.sel} [data-role="measurements"] li')
    assert items.count() == 2
    from ctstack.measurements import format_length

    assert format_length(lines[1]["length"], "micrometer") in items.nth(1).inner_text()
    items.nth(0).locator('button[data-action="measure-delete"]').click()
    lines = nb.py_wait("vm.measurements", lambda v: len(v) == 1)
    assert lines[0]["start"][1] == 70  # the XZ one is left
    nb.page.locator(f'{cell.sel} button[data-action="measure-clear"]').click()
    nb.py_wait("vm.measurements", lambda v: v == [])
    nb.py("vm.close()")


def test_a_stack_with_bad_slices_says_so_in_the_status_line(nb, lab_root):
    from PIL import Image

    folder = lab_root / "tools_bad_slices"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    plane = (np.arange(60 * 80, dtype=np.uint32).reshape(60, 80) % 251).astype(np.uint8)
    for i in (0, 1, 3, 4, 5):  # file 2 is missing
        Image.fromarray(plane).save(folder / f"p_{i}.png")
    path = folder / "p_1.png"  # file 1 is corrupt: a fine header, broken pixels
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\x00garbage"
    path.write_bytes(bytes(data))
    cell = nb.run_cell("vb = ctstack.view('tools_bad_slices', size=300)\nvb")
    nb.py("vb.crosshair = [1, 30, 40]")  # the corrupt slice on screen: read, found bad
    status = f'{cell.sel} [data-role="status"]'
    nb.page.wait_for_function(
        "s => document.querySelector(s).textContent.includes('bad slice')", arg=status
    )
    text = nb.page.locator(status).inner_text()
    assert "1 missing slice (z 2, file 2)" in text and "1 bad slice (z 1, file 1)" in text, text
    assert "shown as zeros" in text
    nb.py("vb.close()")


def test_an_roi_on_a_real_scan_is_drawn_in_every_pane(nb, tmp_path):
    """An ROI set on a real head CT (a copy: roi.json is written beside it) is drawn in the
    three planes; with CTSTACK_WRITE_DOCS_IMAGES=1 this view is docs/images/jupyter_roi.png."""
    folder, facts = real_scan("niivue_ct_pitch_head")
    copy = tmp_path / "head"
    shutil.copytree(folder, copy)
    spacing = tuple(facts["spacing_zyx_mm"])
    cache = tmp_path / "cache"
    call = f"ctstack.view({str(copy)!r}, size=300, cache_dir={str(cache)!r}"
    call += f", voxel_size={spacing}, unit='mm')"
    cell = nb.run_cell(f"vd = {call}\nvd")
    z, y, x = facts["shape_zyx"]
    nb.py(f"vd.crosshair = [{z // 2}, {y // 2}, {x // 2}]")
    box = {"z": [z // 5, 4 * z // 5], "y": [y // 6, 5 * y // 6], "x": [x // 5, 4 * x // 5]}
    nb.py(f"vd.roi = {box!r}")
    crosshair = nb.py("", "list(vd.crosshair)")
    for view in ("xy", "xz", "yz"):
        nb.wait_view(cell.canvas(view), plane=crosshair[AXES[view][2]])
    tool(nb, cell, "roi")
    for view in ("xy", "xz", "yz"):
        overlay = f'{cell.sel} [data-pane="{view}"] canvas.ctstack-overlay'
        nb.page.wait_for_function("s => !!document.querySelector(s).dataset.roi", arg=overlay)
        bx, by, bw, bh = (float(v) for v in nb.attrs(overlay)["roi"].split(","))
        ix, iy, iw, ih = (float(v) for v in nb.attrs(cell.canvas(view))["imageRect"].split(","))
        rows, cols = ("yx", "zx", "zy")[("xy", "xz", "yz").index(view)]
        n_rows, n_cols = (facts["shape_zyx"]["zyx".index(a)] for a in (rows, cols))
        # the box's screen rect is its ranges' share of the plane's image rect
        assert bx == pytest.approx(ix + iw * box[cols][0] / n_cols, abs=1.5), view
        assert bw == pytest.approx(iw * (box[cols][1] - box[cols][0]) / n_cols, abs=1.5), view
        assert by == pytest.approx(iy + ih * box[rows][0] / n_rows, abs=1.5), view
        assert bh == pytest.approx(ih * (box[rows][1] - box[rows][0]) / n_rows, abs=1.5), view
    if os.environ.get("CTSTACK_WRITE_DOCS_IMAGES") == "1":
        nb.page.locator(f"{cell.sel} .ctstack-viewer").screenshot(
            path=REPO_DOCS_IMAGES / "jupyter_roi.png"
        )
    nb.py("vd.close()")
