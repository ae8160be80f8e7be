"""The export panel in a real browser (JupyterLab, headless Chromium): the size first, then an
export equal to the CLI's ``ctstack export`` of the same ROI and level, cancel leaving nothing,
and a bad path shown in the panel.

The cancel is made deterministic without sleeps: a kernel-side observer of ``export_state``
(run on the export thread as progress is published, after the browser was sent it) holds the
export at its first plane until the test, having clicked Cancel, lets it go on.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import Cell, JupyterServer, NotebookPage, notebook_page

SHAPE = (16, 200, 1040)  # wider than 512: the default pyramid has levels 1 and 2
ROI = {"z": [3, 14], "y": [18, 131], "x": [27, 901]}
GATE = """
import threading
gate_reached, gate_go = threading.Event(), threading.Event()
def gate(change):
    s = change["new"]
    if s.get("state") == "running" and s.get("done", 0) >= 1 and not gate_reached.is_set():
        gate_reached.set()
        gate_go.wait(60)
"""


@pytest.fixture(scope="module")
def scan(lab_root: Path) -> str:
    """A phantom in the server root with its default pyramid built (3 levels), in the cache
    both the kernel and the CLI (a subprocess) find."""
    import ctstack
    from ctstack.sample import write_phantom_stack

    write_phantom_stack(lab_root / "export_scan", SHAPE, seed=11, voxel_size_um=8.0)
    stack = ctstack.open_stack(lab_root / "export_scan")
    stack.build_pyramid()
    assert len(stack.levels) >= 3
    return "export_scan"


@pytest.fixture(scope="module")
def nb(browser: Any, lab: JupyterServer, scan: str) -> Iterator[NotebookPage]:
    with notebook_page(browser, lab, "export.ipynb", ["import ctstack", GATE]) as page:
        page.run_all()
        yield page
        assert page.errors == [], f"JavaScript errors on the page: {page.errors}"


def show(nb: NotebookPage, scan: str) -> Cell:
    cell = nb.run_cell(f"ev = ctstack.view({scan!r}, layout='xy')\nev.roi = {ROI!r}\nev")
    nb.wait_view(cell.canvas("xy"))
    return cell


def panel(cell: Cell, what: str) -> str:
    return f"{cell.sel} [data-role='export'] [{what}]"


def open_panel(nb: NotebookPage, cell: Cell) -> None:
    nb.page.click(panel(cell, "data-role='export-toggle'"))
    wait_plan(nb, cell)


def wait_plan(nb: NotebookPage, cell: Cell, contains: str = "") -> dict[str, str]:
    """Wait for an answered plan (its text containing ``contains``); its data-* attributes."""
    sel = panel(cell, "data-role='export-summary'")
    nb.page.wait_for_function(
        """([s, text]) => { const e = document.querySelector(s);
        return e && !e.dataset.pending && e.textContent.includes(text); }""",
        arg=[sel, contains],
    )
    return {**nb.attrs(sel), "text": nb.page.text_content(sel) or ""}


def wait_state(nb: NotebookPage, cell: Cell, *states: str) -> str:
    sel = f"{cell.sel} [data-role='export']"
    nb.page.wait_for_function(
        "([s, states]) => states.includes(document.querySelector(s)?.dataset.state)",
        arg=[sel, list(states)],
    )
    return nb.attrs(sel)["state"]


def zarr_levels(path: Path) -> list[np.ndarray]:
    import zarr

    with warnings.catch_warnings():  # the export marker file is no zarr node: zarr says so
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="r")
        return [np.asarray(group[k]) for k in sorted(group.array_keys(), key=int)]


def test_panel_shows_the_size_first_then_exports_what_the_cli_exports(
    nb: NotebookPage, lab_root: Path, scan: str
) -> None:
    cell = show(nb, scan)
    open_panel(nb, cell)
    nb.page.select_option(panel(cell, "data-field='export-format'"), "ome-zarr")
    nb.page.select_option(panel(cell, "data-field='export-level'"), "1")
    plan = wait_plan(nb, cell, "at level 1")
    # level 1 of the ROI: level-0 ranges halved outward
    expect = [(ROI[a][1] + 1) // 2 - ROI[a][0] // 2 for a in "zyx"]
    assert plan["shape"] == ",".join(map(str, expect)), plan
    assert int(plan["bytes"]) == int(np.prod(expect)) * 2 and "error" not in plan
    name = nb.py("", "ev.stack.name")  # the default output is named after the stack
    assert plan["out"] == str(lab_root / f"{name}_roi_level1.ome.zarr"), plan
    # the size is shown before anything runs: no progress, no result, Export enabled
    assert nb.attrs(f"{cell.sel} [data-role='export']")["state"] == "idle"
    assert nb.page.is_hidden(panel(cell, "data-role='export-progress'"))
    assert nb.page.is_enabled(panel(cell, "data-role='export-start'"))
    levels = nb.page.eval_on_selector_all(
        panel(cell, "data-field='export-level'") + " option", "os => os.map(o => o.textContent)"
    )
    assert levels[0] == "0: 16 × 200 × 1040" and len(levels) >= 3
    nb.page.fill(panel(cell, "data-field='export-out'"), "from_panel.ome.zarr")
    wait_plan(nb, cell, "from_panel.ome.zarr")
    nb.page.click(panel(cell, "data-role='export-start'"))
    assert wait_state(nb, cell, "done", "failed") == "done", nb.py("", "ev.export_state")
    result = nb.page.text_content(panel(cell, "data-role='export-result'")) or ""
    assert "done: 1 file" in result and "from_panel.ome.zarr" in result
    args = [f"--{a}={ROI[a][0]}:{ROI[a][1]}" for a in "zyx"]
    cli = [sys.executable, "-m", "ctstack.cli", "export", scan, "from_cli.ome.zarr"]
    subprocess.run(
        [*cli, "--format", "ome-zarr", "--level", "1", *args],
        cwd=lab_root, check=True, capture_output=True,
    )  # fmt: skip
    ours, theirs = (
        zarr_levels(lab_root / "from_panel.ome.zarr"),
        zarr_levels(lab_root / "from_cli.ome.zarr"),
    )
    assert len(ours) == len(theirs) >= 1 and ours[0].shape == tuple(expect)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    # the output exists now: the plan says so, in red, and Export is off
    plan = wait_plan(nb, cell, "already exists")
    assert plan.get("error") == "1" and nb.page.is_disabled(panel(cell, "data-role='export-start'"))


def test_cancel_leaves_nothing(nb: NotebookPage, lab_root: Path, scan: str) -> None:
    cell = show(nb, scan)
    open_panel(nb, cell)
    nb.page.select_option(panel(cell, "data-field='export-format'"), "tiff")
    nb.page.select_option(panel(cell, "data-field='export-region'"), "full")
    nb.page.fill(panel(cell, "data-field='export-out'"), "cancelled_slices")
    wait_plan(nb, cell, "16 x 200 x 1040 voxels at level 0")
    nb.py("gate_reached.clear(); gate_go.clear(); ev.observe(gate, 'export_state')")
    nb.page.click(panel(cell, "data-role='export-start'"))
    assert wait_state(nb, cell, "running") == "running"
    label = panel(cell, "data-role='export-progress-label'")
    nb.page.wait_for_function(  # the held export: one plane done, shown as "1 / 16 planes"
        "s => document.querySelector(s)?.textContent === '1 / 16 planes'", arg=label
    )
    bar = nb.page.eval_on_selector(
        panel(cell, "data-role='export-progress'"), "e => [e.value, e.max]"
    )
    assert bar == [1, 16], bar
    nb.page.click(panel(cell, "data-role='export-cancel'"))
    wait_state(nb, cell, "cancelling")
    nb.py("gate_go.set()")
    assert wait_state(nb, cell, "cancelled", "done", "failed") == "cancelled"
    result = nb.page.text_content(panel(cell, "data-role='export-result'")) or ""
    assert result.startswith("cancelled:") and "nothing was written" in result
    left = [p.name for p in lab_root.iterdir() if "cancelled_slices" in p.name]
    assert left == [], left
    nb.py("ev.unobserve(gate, 'export_state')")


def test_a_bad_path_shows_its_error(nb: NotebookPage, lab_root: Path, scan: str) -> None:
    (lab_root / "a_file.txt").write_text("not a folder")
    cell = show(nb, scan)
    open_panel(nb, cell)
    nb.page.fill(panel(cell, "data-field='export-out'"), "a_file.txt/out")
    plan = wait_plan(nb, cell, "not a folder")
    assert plan.get("error") == "1" and "a_file.txt" in plan["text"]
    assert nb.page.is_disabled(panel(cell, "data-role='export-start'"))
    colour = nb.page.eval_on_selector(
        panel(cell, "data-role='export-summary'"), "e => getComputedStyle(e).color"
    )
    r, g, b = (int(v) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])
    assert r > 150 and g < 100 and b < 100, colour  # red
    nb.page.fill(panel(cell, "data-field='export-out'"), "")  # back to the default name
    plan = wait_plan(nb, cell, f"{nb.py('', 'ev.stack.name')}_roi")  # a tiff folder: no suffix
    assert "error" not in plan and nb.page.is_enabled(panel(cell, "data-role='export-start'"))
