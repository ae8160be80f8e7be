"""The napari face of the view model, on ``ViewerModel`` (no Qt, no GL): crosshair <-> dims both
ways with one event per change and no echo, window and colormap <-> the layer, the 3D level,
and a layer swap that keeps the binding."""

from __future__ import annotations

import numpy as np
import pytest

import ctstack
from ctstack.napari import read_stack, replace_with_levels, sync_viewer
from ctstack.sample import write_phantom_stack
from ctstack.viewmodel import model_for

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (24, 40, 48)
SCALE = (10.0, 10.0, 10.0)


@pytest.fixture
def viewer_and_layer(tmp_path):
    from napari.components import ViewerModel

    write_phantom_stack(tmp_path / "p", SHAPE, "uint16", seed=4, voxel_size_um=10.0)
    [(data, kwargs, _)] = read_stack(tmp_path / "p")
    kwargs["translate"] = (5.0, -20.0, 30.0)  # an origin that is not zero
    viewer = ViewerModel()
    layer = viewer.add_image(data, **kwargs)
    sync_viewer(viewer)
    return viewer, layer, model_for(kwargs["metadata"]["stack"])


def counter(emitter) -> list:
    seen: list = []
    emitter.connect(lambda *args: seen.append(args))
    return seen


def test_joining_layer_brings_its_state(viewer_and_layer):
    viewer, layer, model = viewer_and_layer
    step = viewer.dims.current_step
    assert model.crosshair == tuple(step)  # the viewer's slice, not a default
    assert model.window == tuple(float(v) for v in layer.contrast_limits)
    assert model.colormap == "gray" and sync_viewer(viewer).model_of(layer) is model


def test_crosshair_from_the_model_moves_dims_once(viewer_and_layer):
    viewer, _layer, model = viewer_and_layer
    dims_events = counter(viewer.dims.events.point)
    model_events = counter(model.events.crosshair)
    model.crosshair = (3, 7, 11)
    assert len(dims_events) == 1 and len(model_events) == 1
    # world = translate + index * scale, on every axis
    assert tuple(viewer.dims.point) == pytest.approx((35.0, 50.0, 140.0))
    assert viewer.dims.current_step[0] == 3
    model.crosshair = (3, 7, 11)  # no change, no event anywhere
    assert len(dims_events) == 1 and len(model_events) == 1


def test_dims_moves_the_model_once(viewer_and_layer):
    viewer, _layer, model = viewer_and_layer
    dims_events = counter(viewer.dims.events.point)
    model_events = counter(model.events.crosshair)
    viewer.dims.set_current_step(0, 17)
    assert len(dims_events) == 1 and len(model_events) == 1  # no echo back to dims
    assert model.crosshair[0] == 17
    viewer.dims.set_point(0, 5.0 + 10.0 * 4.3)  # between slices: the voxel under the point
    assert model.crosshair[0] == 4 and len(model_events) == 2 and len(dims_events) == 2


def test_two_stacks_follow_one_viewer(viewer_and_layer, tmp_path):
    viewer, _layer, model = viewer_and_layer
    write_phantom_stack(tmp_path / "q", (12, 20, 24), "uint16", seed=5, voxel_size_um=20.0)
    [(data, kwargs, _)] = read_stack(tmp_path / "q")
    viewer.add_image(data, **kwargs)
    other = model_for(kwargs["metadata"]["stack"])
    model.crosshair = (9, 10, 20)  # world z = 5 + 90 = 95 -> the other stack's slice 95/20
    assert other.crosshair[0] == 5  # floor(4.75 + 0.5)
    dims_events = counter(viewer.dims.events.point)
    other.crosshair = (2, 3, 4)  # world z 40 -> the first stack's slice 3.5 -> 4
    assert len(dims_events) == 1 and model.crosshair[0] == 4


def test_window_and_colormap_both_ways(viewer_and_layer):
    _viewer, layer, model = viewer_and_layer
    layer_events = counter(layer.events.contrast_limits)
    window_events = counter(model.events.window)
    preset_events = counter(model.events.window_preset)
    model.apply_window("min-max")
    assert tuple(layer.contrast_limits) == pytest.approx(model.window)
    assert model.window_preset == "min-max"  # the layer's echo did not reset the preset
    assert len(window_events) == 1 and len(preset_events) == 1 and layer_events
    layer.contrast_limits = (1000.0, 20000.0)  # the user drags the contrast slider
    assert model.window == (1000.0, 20000.0) and model.window_preset is None
    assert len(window_events) == 2 and len(preset_events) == 2
    colormaps = counter(model.events.colormap)
    layer.colormap = "viridis"
    assert model.colormap == "viridis"
    model.colormap = "magma"
    assert layer.colormap.name == "magma" and len(colormaps) == 2


def test_3d_level_and_swap_keep_the_binding(viewer_and_layer):
    viewer, layer, model = viewer_and_layer
    stack = layer.metadata["stack"]
    levels = stack.build_pyramid(max_size=12)
    viewer.dims.set_current_step(0, 20)
    new = replace_with_levels(viewer, layer, levels)
    sync = sync_viewer(viewer)
    assert sync.model_of(new) is model and sync.model_of(layer) is None
    assert model.crosshair[0] == 20
    model.level_3d = 1
    assert new.locked_data_level is None  # 2D: the zoom picks
    viewer.dims.ndisplay = 3
    assert new.locked_data_level == 1
    model.level_3d = 2
    assert new.locked_data_level == 2
    viewer.dims.ndisplay = 2
    assert new.locked_data_level is None
    model.window = (10.0, 500.0)
    assert tuple(new.contrast_limits) == (10.0, 500.0)
    assert tuple(layer.contrast_limits) != (10.0, 500.0)  # the old layer is let go
    model.crosshair = (1, 2, 3)
    assert viewer.dims.current_step[0] == 1


def test_a_second_viewer_shares_the_model(viewer_and_layer):
    from napari.components import ViewerModel

    viewer, layer, model = viewer_and_layer
    stack = layer.metadata["stack"]
    second = ViewerModel()
    twin = second.add_image(stack.data, **{**_kwargs(layer), "metadata": dict(layer.metadata)})
    sync_viewer(second)
    second.dims.set_current_step(0, 6)
    assert model.crosshair[0] == 6 and viewer.dims.current_step[0] == 6
    model.window = (1.0, 2.0)
    assert tuple(twin.contrast_limits) == (1.0, 2.0) == tuple(layer.contrast_limits)
    assert model_for(ctstack.open_stack(stack.path)) is model


def _kwargs(layer) -> dict:
    return {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "contrast_limits": tuple(layer.contrast_limits),
    }


def test_non_plugin_layers_are_left_alone():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    plain = viewer.add_image(np.zeros((4, 5, 6)))
    sync = sync_viewer(viewer)
    assert sync_viewer(viewer) is sync and sync.model_of(plain) is None
    viewer.dims.set_current_step(0, 2)  # nothing bound: nothing to do


@pytest.mark.gui
def test_set_3d_level_applies_at_once_in_an_unsynced_viewer(make_napari_viewer, tmp_path):
    """The quickstart notebook's path: a layer added by hand, 3D on, then set_3d_level."""
    from ctstack.napari import set_3d_level

    write_phantom_stack(tmp_path / "p", SHAPE, "uint16", seed=4)
    [(_data, kwargs, _)] = read_stack(tmp_path / "p")
    levels = kwargs["metadata"]["stack"].build_pyramid(max_size=12)
    viewer = make_napari_viewer()
    layer = viewer.add_image(levels, **{**kwargs, "multiscale": True})
    viewer.dims.ndisplay = 3
    assert layer.data_level == len(levels) - 1
    set_3d_level(layer, 0)
    assert layer.locked_data_level == 0 and layer.data_level == 0
