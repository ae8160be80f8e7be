"""Window/level in a shown viewer: the engine's presets through ``apply_window`` and the stack
panel (HU ones only on HU data), flat images, Control + drag and the Shift-W mode driven
through napari's own canvas events, the keys checked against napari's keymaps, and napari's
contrast-popup histogram on plugin layers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from qtpy.QtCore import Qt
from vispy.util import keys

from ctstack import windows
from ctstack.napari import apply_window, enable_window_drag, stack_of
from ctstack.napari._qt.panel import StackPanel
from ctstack.napari._window import (
    PIXELS_PER_DOUBLING,
    PIXELS_PER_WIDTH,
    WINDOW_KEY,
    WINDOW_MODIFIER,
)
from ctstack.viewmodel import model_for

from ..conftest import real_scan
from ..test_dicom import make_series
from ..test_export_reference import write_slices

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]

PLUGIN = "napari-ctstack"
HU_RANGES = {  # level -/+ width / 2 (docs/napari.md)
    "bone": (-500.0, 1300.0),
    "soft-tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "brain": (0.0, 80.0),
}


@pytest.fixture
def ct_series(tmp_path):
    """A synthetic DICOM CT series in Hounsfield units (-1024..3071 HU)."""
    folder = tmp_path / "ct"
    make_series(folder, n=6, shape=(16, 12))
    return folder


def open_one(viewer, path):
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    return layer


def open_built(viewer, path, qtbot):
    """Open, then wait for the background pyramid build to swap in the multiscale layer."""
    open_one(viewer, path)
    qtbot.waitUntil(lambda: viewer.layers[0].multiscale, timeout=30000)
    return viewer.layers[0]


def limits(layer) -> tuple[float, float]:
    low, high = (float(v) for v in layer.contrast_limits)
    return (low, high)


def drag(viewer, qtbot, start, end, modifiers=()):
    """A left-button drag through napari's canvas, as a mouse makes it (canvas pixels): press,
    a few moves (napari throttles them, so each is given time), release."""
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    press = canvas.events.mouse_press(pos=start, button=1, modifiers=modifiers)
    for t in (0.25, 0.5, 1.0):
        pos = tuple(a + t * (b - a) for a, b in zip(start, end, strict=True))
        canvas.events.mouse_move(pos=pos, button=1, modifiers=modifiers, press_event=press)
        qtbot.wait(15)
    canvas.events.mouse_release(pos=end, button=1, modifiers=modifiers)


def test_hounsfield_presets_on_a_ct_series(make_napari_viewer, ct_series):
    viewer = make_napari_viewer()
    layer = open_one(viewer, ct_series)
    model = model_for(stack_of(layer))
    for name, expected in HU_RANGES.items():
        assert apply_window(layer, name) == expected
        assert limits(layer) == expected and model.window == expected
        assert model.window_preset == name
    assert apply_window(layer, (-100, 100)) == (-100.0, 100.0) and model.window_preset is None


def test_percentile_presets_on_a_real_scan(make_napari_viewer, tmp_path, qtbot):
    folder, facts = real_scan("vtkjs_headsq_ct")
    shutil.copytree(folder, tmp_path / "head")
    viewer = make_napari_viewer()
    layer = open_built(viewer, tmp_path / "head", qtbot)
    coarsest = np.asarray(layer.data[-1]).astype(float)  # small: the sample is all of it
    assert coarsest.size < windows.COARSE_SAMPLE
    assert apply_window(layer, "min-max") == (coarsest.min(), coarsest.max())
    assert apply_window(layer, "1-99") == tuple(np.percentile(coarsest, (1, 99)))
    wide = apply_window(layer, "0.5-99.5")
    assert wide == tuple(np.percentile(coarsest, (0.5, 99.5))) and limits(layer) == wide
    assert facts["min"] <= wide[0] < wide[1] <= facts["max"]


def test_presets_on_flat_images_are_valid(make_napari_viewer, tmp_path):
    write_slices(tmp_path / "flat", np.full((5, 20, 24), 300, np.uint16), first=0)
    viewer = make_napari_viewer()
    ours = open_one(viewer, tmp_path / "flat")
    other = viewer.add_image(np.zeros((30, 40), np.float32), name="zeros")
    for layer, value in ((ours, 300.0), (other, 0.0)):
        for name in ("0.5-99.5", "1-99", "min-max"):
            low, high = apply_window(layer, name)
            assert low < high and low <= value <= high
            assert limits(layer) == (low, high)


def test_hounsfield_preset_on_non_hu_data_says_why(make_napari_viewer, phantom_dir, notes):
    viewer = make_napari_viewer()
    layer = open_one(viewer, phantom_dir)
    other = viewer.add_image(np.arange(24.0).reshape(4, 6), name="plain")
    before = limits(layer)
    with pytest.raises(windows.NotHounsfield, match="not a DICOM CT series"):
        apply_window(layer, "bone")
    with pytest.raises(windows.NotHounsfield, match="not a ctstack stack"):
        apply_window(other, "lung")
    assert limits(layer) == before

    panel = StackPanel(viewer)
    viewer.layers.selection.active = layer
    combo = panel.window_presets
    items = {combo.itemData(i): combo.model().item(i) for i in range(combo.count())}
    for name in HU_RANGES:
        assert not items[name].isEnabled()
        assert "not a DICOM CT series" in items[name].toolTip()
    assert all(items[name].isEnabled() for name in ("0.5-99.5", "1-99", "min-max"))
    assert "HU" in combo.toolTip()
    panel.apply_preset("lung")  # e.g. from a script: a notification, no crash
    assert limits(layer) == before
    [error] = notes("error")
    assert layer.name in str(error.message) and "Hounsfield" in str(error.message)


def test_panel_presets_on_hu_data(make_napari_viewer, ct_series):
    viewer = make_napari_viewer()
    layer = open_one(viewer, ct_series)
    panel = StackPanel(viewer)
    combo = panel.window_presets
    index = combo.findData("bone")
    assert combo.model().item(index).isEnabled()
    combo.activated.emit(index)
    assert limits(layer) == HU_RANGES["bone"]
    assert combo.currentData() == "bone" and "-500" in panel.window_text.text()
    apply_window(layer, (0, 10))  # from a script: the panel follows the model
    assert combo.currentData() is None and "10" in panel.window_text.text()


def test_control_drag_sets_width_and_level(make_napari_viewer, phantom_dir, qtbot):
    viewer = make_napari_viewer(show=True)
    layer = open_built(viewer, phantom_dir, qtbot)  # the reader enables the drag: no panel
    model = model_for(stack_of(layer))
    low, high = limits(layer)
    width, level = high - low, (low + high) / 2
    camera = viewer.scene.camera
    center, zoom = tuple(camera.center), camera.zoom

    drag(viewer, qtbot, (150, 120), (150 + PIXELS_PER_DOUBLING, 120), modifiers=(keys.CONTROL,))
    low2, high2 = limits(layer)
    assert high2 - low2 == pytest.approx(2 * width)  # right: twice as wide
    assert (low2 + high2) / 2 == pytest.approx(level)
    drag(viewer, qtbot, (150, 120), (150, 120 + PIXELS_PER_WIDTH / 4), modifiers=(keys.CONTROL,))
    low3, high3 = limits(layer)
    assert high3 - low3 == pytest.approx(2 * width)
    assert (low3 + high3) / 2 == pytest.approx(level + width / 2)  # down: level up
    # the view did not move, and the model (every face) has the dragged window
    assert tuple(camera.center) == center and camera.zoom == zoom
    assert model.window == (low3, high3) and model.window_preset is None
    assert camera.mouse_pan  # panning is back after the drag


def test_shift_w_toggles_plain_drag(make_napari_viewer, phantom_dir, qtbot):
    viewer = make_napari_viewer(show=True)
    layer = open_built(viewer, phantom_dir, qtbot)
    panel = StackPanel(viewer)  # the panel enables the drag and shows its state
    canvas = viewer.window._qt_viewer.canvas.native
    before = limits(layer)
    drag(viewer, qtbot, (100, 100), (180, 160))
    assert limits(layer) == before  # off: a plain drag leaves the window alone

    qtbot.keyClick(canvas, Qt.Key.Key_W, Qt.KeyboardModifier.ShiftModifier)
    assert enable_window_drag(viewer).enabled and panel.window_drag.isChecked()
    drag(viewer, qtbot, (100, 100), (180, 160))
    assert limits(layer) != before

    qtbot.keyClick(canvas, Qt.Key.Key_W, Qt.KeyboardModifier.ShiftModifier)
    assert not enable_window_drag(viewer).enabled and not panel.window_drag.isChecked()
    after = limits(layer)
    drag(viewer, qtbot, (100, 100), (20, 30))
    assert limits(layer) == after
    panel.window_drag.setChecked(True)  # the button is the same switch
    assert enable_window_drag(viewer).enabled


def test_keys_are_not_napari_ones(make_napari_viewer):
    """Shift-W is in no napari keymap (viewer, every layer type, default shortcuts, app-model
    keybindings); Control + drag is used by no napari drag callback in pan/zoom mode (the
    Control + drag test sees the camera stay put)."""
    from napari._app_model import get_app_model
    from napari.components import ViewerModel
    from napari.utils.key_bindings import coerce_keybinding
    from napari.utils.shortcuts import default_shortcuts

    viewer = make_napari_viewer()  # napari's actions and keybindings are registered
    ours = str(coerce_keybinding(WINDOW_KEY))
    used: dict[str, str] = {}
    for owner in (ViewerModel, type(viewer), *_layer_types()):
        for key in getattr(owner, "class_keymap", {}):
            used[str(key)] = owner.__name__
    for action, bindings in default_shortcuts.items():
        for key in bindings:
            used[str(key)] = action
    for registered in get_app_model().keybindings:
        used[str(registered.keybinding)] = registered.command_id
    assert len(used) > 40  # the lists were really read
    for theirs in ("Shift-V", "Control-R"):  # napari's own, spelled as ours is
        assert str(coerce_keybinding(theirs)) in used
    assert ours not in used, f"{WINDOW_KEY} is napari's {used.get(ours)}"
    assert WINDOW_MODIFIER == "Control"


def _layer_types() -> list[type]:
    import napari.layers

    return [
        cls
        for cls in vars(napari.layers).values()
        if isinstance(cls, type) and issubclass(cls, napari.layers.Layer)
    ]


def test_contrast_popup_histogram_works_on_plugin_layers(
    make_napari_viewer, phantom_dir, tmp_path, qtbot
):
    """napari 0.9's histogram (canvas and full modes, and its popup) on the multiscale layer
    after the build and on a level-0 layer (read_stack's data, no build)."""
    from napari._qt.layer_controls.widgets.qt_contrast_limits import QContrastLimitsPopup

    from ctstack.napari import read_stack
    from ctstack.sample import write_phantom_stack

    viewer = make_napari_viewer(show=True)
    built = open_built(viewer, phantom_dir, qtbot)
    write_phantom_stack(tmp_path / "unbuilt", (48, 96, 96), "uint16", seed=3, voxel_size_um=10.0)
    [(data, kwargs, _)] = read_stack(tmp_path / "unbuilt")  # no cache: level 0 only
    level0 = viewer.add_image(data, **{**kwargs, "name": "level 0"})
    assert built.multiscale and not level0.multiscale
    for layer in (built, level0):
        hist = layer.histogram
        hist.enabled = True
        for mode in ("canvas", "full"):
            hist.mode = mode
            # the canvas mode counts the slice on screen once napari has drawn it
            qtbot.waitUntil(lambda h=hist: np.asarray(h.counts).sum() > 0, timeout=5000)
            assert np.isfinite(np.asarray(hist.counts)).all(), (layer.name, mode)
        popup = QContrastLimitsPopup(layer)
        popup.show()
        qtbot.waitUntil(lambda p=popup: p.histogram_content is not None, timeout=5000)
        popup.close()
