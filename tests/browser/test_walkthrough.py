"""notebooks/jupyter_viewer.ipynb, run-all'd in JupyterLab: it runs, the viewer draws, and the
screenshot it asks for resolves once its cells are done (the nbclient notebook test leaves this
notebook out: without a browser the widget never renders)."""

from __future__ import annotations

import json
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
        # part 2: the ROI reached the model and roi.json, the line was measured, the export ran
        assert nb.py("", "[v.model.roi.z, v.model.roi.y, v.model.roi.x]") == [
            [8, 56], [40, 216], [40, 216]
        ]  # fmt: skip
        saved = json.loads(Path(nb.py("", "str(v.model.saved_to)")).read_text())
        assert any(
            e.get("roi", {}).get("z") == [8, 56] for e in saved.get("series", {}).values()
        ), saved
        length = nb.py("", "v.measurements[0]['length']")
        unit = nb.py("", "v.measurements[0]['unit']")
        # 150 voxels of 10 µm along x
        assert unit != "pixel" and length > 0, (length, unit)
        assert abs(length - 150 * nb.py("", "v.stack.voxel_size[2]")) < 1e-6 * length
        assert nb.py("", "job.result(timeout=60).shape") == [48, 176, 176]
        cell3d = nb.page.locator(f'{cell.sel} canvas[data-view="3d"]')
        assert cell3d.count() == 1
        assert nb.errors == []
