"""Execute every notebook in notebooks/ (under Xvfb, like the GUI tests) so none can rot."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import imageio.v3 as iio
import pytest

# The Jupyter viewer's walkthrough needs a browser (its widget never renders under nbclient):
# tests/browser/test_walkthrough.py run-alls it in JupyterLab instead.
BROWSER_ONLY = {"jupyter_viewer.ipynb"}
NOTEBOOKS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")
    if p.name not in BROWSER_ONLY
)


@pytest.mark.gui
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (pytest-xvfb provides one)")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    # The kernel inherits this: napari then leaves IPython's Qt event-loop integration off
    # (`napari.Viewer()` otherwise calls `enable_gui("qt")` inside its cell). ipykernel >= 7.1
    # has a race there (PR #1458 dropped 6.x's "delay the GUI loop while messages wait" guard):
    # when the next execute_request arrives within about a millisecond of a cell's end,
    # ipykernel queues it on asyncio and then blocks in QEventLoop.exec(), which only a *new*
    # shell message wakes. nbclient sends nothing until it gets the reply, so the cell hangs
    # until the timeout; the "Socket operation on non-socket" in the log comes after, from the
    # reply of the stalled cell hitting the sockets that the kernel shutdown closed. Screenshots
    # do not need the loop: nbscreenshot processes Qt events itself.
    monkeypatch.setenv("NAPARI_APPLICATION_IPY_INTERACTIVE", "false")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    images = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(images) >= 2, "the notebook's screenshots did not render"
    for out in images:  # a hidden or GL-less viewer gives a black frame: require real content
        pixels = iio.imread(base64.b64decode(out["data"]["image/png"]))
        grey = pixels[..., :3].mean(axis=2)
        assert (grey > 40).mean() > 0.05, "a screenshot in the notebook is (nearly) black"
