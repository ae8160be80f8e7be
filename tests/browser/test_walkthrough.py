"""notebooks/jupyter_viewer.ipynb, run-all'd in JupyterLab: it runs, the viewer draws, and the
screenshot it asks for resolves once its cells are done (the nbclient notebook test leaves this
notebook out: without a browser the widget never renders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .conftest import notebook_page

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "jupyter_viewer.ipynb"


def test_walkthrough_notebook_runs_in_jupyterlab(browser, lab):
    """Run All: no cell raises, the three panes draw the state the notebook set, the preset
    applied, and the screenshot Future resolves to a PNG of the viewer."""
    from PIL import Image

    with notebook_page(browser, lab, "jupyter_viewer.ipynb", NOTEBOOK) as nb:
        nb.run_all()
        cells = nb.tag_cells()
        (cell,) = [c for c in cells if nb.page.locator(c.canvas("xy")).count()]
        crosshair = nb.py("", "list(v.crosshair)")
        assert crosshair == [20, 100, 150]
        for i, view in enumerate(("xy", "xz", "yz")):
            nb.wait_view(cell.canvas(view), plane=crosshair[i])
        assert nb.py("", "v.window_preset") == nb.py("", "v.presets[0]")
        # every request was answered after the last cell: the Future is done by now
        shot = Path(nb.py("", "str(shot.result(timeout=30))"))
        with Image.open(shot) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 300, im
            grey = np.asarray(im.convert("L"), np.float32)
        assert grey.std() > 10, "the screenshot is blank"
        assert nb.errors == []
