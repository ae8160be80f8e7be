"""Write docs/images/*.png from a real plugin session on the phantom (README top image too).

Usage: ``python docs/make_screenshots.py`` (starts a virtual display when there is none).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMAGES = Path(__file__).resolve().parent / "images"


def main() -> int:
    from ctstack.napari._sample import sample_folder
    from ctstack.napari._session import virtual_display

    IMAGES.mkdir(parents=True, exist_ok=True)
    folder = sample_folder((256, 512, 512))
    os.environ["CTSTACK_MAX_SIZE"] = "256"
    with virtual_display():
        import napari
        from ctstack.napari import open_with_panel, set_3d_level, wait_for_build

        viewer = napari.Viewer(title="napari-ctstack", show=True)
        viewer.window.resize(1500, 850)
        _panel, layer = open_with_panel(viewer, folder, max_size=256)
        wait_for_build(viewer)
        layer = viewer.layers[layer.name]
        viewer.dims.set_current_step(0, 128)
        viewer.reset_view()
        viewer.screenshot(IMAGES / "napari-plugin.png", canvas_only=False, flash=False)
        viewer.dims.ndisplay = 3
        set_3d_level(layer, 0)
        viewer.reset_view()
        viewer.scene.camera.angles = (-20, 40, 120)  # after reset_view, which resets them
        viewer.screenshot(IMAGES / "napari-3d.png", canvas_only=True, flash=False)
        viewer.dims.ndisplay = 2
        viewer.dims.order = (1, 0, 2)
        viewer.reset_view()
        viewer.screenshot(IMAGES / "napari-xz.png", canvas_only=True, flash=False)
        ortho_shot(viewer)
        viewer.close()
    for p in sorted(IMAGES.glob("napari[-_]*.png")):
        print(p)
    return 0


def ortho_shot(viewer: Any) -> None:
    """docs/images/napari_ortho.png: the whole window with the XZ and YZ views docked."""
    import time

    from qtpy.QtWidgets import QApplication

    from ctstack.napari import orthogonal_views

    viewer.dims.ndisplay = 2
    viewer.dims.order = (0, 1, 2)
    views = orthogonal_views(viewer)
    views.crosshair = (100, 230, 300)
    viewer.reset_view()
    for model in views.models.values():
        model.reset_view()
    deadline = time.monotonic() + 60
    while (views.loading("xz") or views.loading("yz")) and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()
    viewer.screenshot(IMAGES / "napari_ortho.png", canvas_only=False, flash=False)


if __name__ == "__main__":
    raise SystemExit(main())
