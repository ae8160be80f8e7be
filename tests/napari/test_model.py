"""Qt-free parts of the plugin: reader output, contrast, 3D levels, the layer swap (ViewerModel)."""

from __future__ import annotations

import numpy as np
import pytest

from ctstack.napari import (
    contrast_limits,
    levels_for_3d,
    max_size_setting,
    napari_get_reader,
    read_stack,
    replace_with_levels,
    set_3d_level,
)
from ctstack.napari._reader import read_for_napari

from .conftest import MAX_SIZE


def test_get_reader_claims_stacks_only(phantom_dir, tmp_path):
    assert napari_get_reader(str(phantom_dir)) is not None
    assert napari_get_reader(str(phantom_dir / "phantom_0003.tif")) is not None
    (tmp_path / "notes.txt").write_text("hello")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader([str(phantom_dir), str(phantom_dir)]) is None


def test_max_size_from_env(monkeypatch):
    assert max_size_setting() == MAX_SIZE
    monkeypatch.setenv("CTSTACK_MAX_SIZE", "nonsense")
    assert max_size_setting() == 512
    monkeypatch.delenv("CTSTACK_MAX_SIZE")
    assert max_size_setting() == 512


def test_real_scan_layer_data(scan_copy):
    """Level 0 first (no build in the reader), then multiscale from the cache once built."""
    folder, facts = scan_copy
    spacing = facts["spacing_zyx_mm"]
    [(data, kwargs, kind)] = read_stack(folder, voxel_size=spacing, unit="mm")
    assert kind == "image"
    assert not kwargs["multiscale"] and data.shape == tuple(facts["shape_zyx"])
    assert kwargs["scale"] == pytest.approx(spacing)
    assert kwargs["units"] == ("millimeter",) * 3
    assert kwargs["axis_labels"] == ("z", "y", "x")
    assert kwargs["name"] == "slice"
    lo, hi = kwargs["contrast_limits"]
    assert facts["min"] <= lo < hi <= facts["max"]
    meta = kwargs["metadata"]["ctstack"]
    assert len(meta["files"]) == facts["shape_zyx"][0] and meta["missing"] == []
    assert meta["bad_slices"] == [] and meta["other_series"] == []

    stack = kwargs["metadata"]["stack"]
    stack.build_pyramid(max_size=MAX_SIZE)
    [(levels, kwargs2, _)] = read_stack(folder, voxel_size=spacing, unit="mm")
    assert kwargs2["multiscale"] and isinstance(levels, list) and len(levels) >= 2
    assert max(levels[-1].shape) <= MAX_SIZE < max(levels[-2].shape)
    lo2, hi2 = kwargs2["contrast_limits"]
    assert facts["min"] <= lo2 < hi2 <= facts["max"]
    # the coarse (averaged) estimate agrees with the level-0 one to a fifth of the range
    assert abs(hi2 - hi) < 0.2 * (facts["max"] - facts["min"])


def test_multipage_tif(real_multipage_tif):
    [(data, kwargs, _)] = read_stack(real_multipage_tif)
    assert data.shape == (93, 64, 64)
    assert 0 <= kwargs["contrast_limits"][0] < kwargs["contrast_limits"][1] <= 3926


def test_contrast_reads_few_planes():
    """Without a pyramid only a handful of strided planes are computed, never the volume."""
    import dask.array as da

    touched = []

    def block(block_id=None):
        touched.append(block_id[0])
        z = block_id[0]
        return np.full((1, 512, 512), 100 + z, np.uint16)

    level0 = da.map_blocks(block, chunks=((1,) * 200, (512,), (512,)), dtype=np.uint16)
    lo, hi = contrast_limits([level0])
    assert 100 < lo < hi < 300
    assert len(set(touched)) <= 7


def test_levels_for_3d():
    shapes = [(3000, 4000, 4000), (1500, 2000, 2000), (750, 1000, 1000)]
    assert levels_for_3d(shapes, 2048) == [1, 2]
    assert levels_for_3d(shapes, 16384) == [0, 1, 2]


def test_swap_keeps_view_and_settings(phantom_dir):
    """The multiscale twin takes the layer's place, name, look, slice and camera."""
    from napari.components import ViewerModel

    [(data, kwargs, _)] = read_stack(phantom_dir)
    viewer = ViewerModel()
    viewer.add_image(np.zeros((5, 5)), name="below")
    layer = viewer.add_image(data, **kwargs)
    viewer.add_image(np.zeros((5, 5)), name="above")
    viewer.layers.selection.active = layer
    viewer.dims.set_current_step(0, 31)
    viewer.scene.camera.zoom = 3.5
    viewer.scene.camera.center = (0, 300.0, 400.0)
    layer.colormap = "viridis"
    layer.contrast_limits = (1000, 30000)

    stack = kwargs["metadata"]["stack"]
    levels = stack.build_pyramid(max_size=32)
    new = replace_with_levels(viewer, layer, levels)

    assert new.multiscale and len(new.level_shapes) == len(levels) == 3
    assert [lay.name for lay in viewer.layers] == ["below", "phantom", "above"]
    assert viewer.layers.selection.active is new
    assert viewer.dims.current_step[0] == 31
    assert viewer.scene.camera.zoom == pytest.approx(3.5)
    assert viewer.scene.camera.center[1:] == pytest.approx((300.0, 400.0))
    assert new.colormap.name == "viridis"
    assert tuple(new.contrast_limits) == (1000, 30000)
    assert tuple(new.scale) == pytest.approx(stack.voxel_size)
    assert new.metadata["stack"] is stack


def test_3d_level_locks_only_in_3d(phantom_dir):
    from napari.components import ViewerModel

    from ctstack.napari._sync import track_3d_levels

    [(_data, kwargs, _)] = read_stack(phantom_dir)
    levels = kwargs["metadata"]["stack"].build_pyramid(max_size=16)
    viewer = ViewerModel()
    layer = viewer.add_image(levels, **{**kwargs, "multiscale": True})
    track_3d_levels(viewer)
    set_3d_level(layer, 1)
    assert layer.locked_data_level is None  # 2D: the zoom picks the level
    viewer.dims.ndisplay = 3
    assert layer.locked_data_level == 1 and layer.data_level == 1
    viewer.dims.ndisplay = 2
    assert layer.locked_data_level is None


def test_errors_become_notifications(tmp_path, notes):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    assert read_for_napari(str(empty)) == [(None,)]
    [error] = notes("error")
    assert str(empty) in str(error.message)


def test_bad_slices_found_later_are_notified_once_each(phantom_dir, notes):
    """The reader passes its own reporter to open_stack (no warnings filter involved): a slice
    that turns out bad when read is one warning notification naming it."""
    import tifffile

    bad = phantom_dir / "phantom_0009.tif"
    tifffile.imwrite(bad, tifffile.imread(bad), compression="zlib")
    raw = bytearray(bad.read_bytes())
    raw[200:-400] = b"\x55" * len(raw[200:-400])  # the header reads, the pixels do not
    bad.write_bytes(bytes(raw))
    [(data, _kwargs, _)] = read_stack(phantom_dir)
    assert not [n for n in notes("warning") if "bad slice" in str(n.message)]
    assert not np.asarray(data[9]).any()  # shown as zeros
    np.asarray(data[9])  # read again: already known, no second notice
    [warning] = [n for n in notes("warning") if "bad slice" in str(n.message)]
    assert "z=9" in str(warning.message) and "phantom_0009.tif" in str(warning.message)


def test_swap_leaves_another_active_layer_active(phantom_dir):
    """napari makes an inserted layer active; the swap gives the selection back (a ruler's
    Shapes layer stays the one being drawn in)."""
    from napari.components import ViewerModel

    [(data, kwargs, _)] = read_stack(phantom_dir)
    viewer = ViewerModel()
    layer = viewer.add_image(data, **kwargs)
    lines = viewer.add_shapes(name="measurements")
    viewer.layers.selection.active = lines
    levels = kwargs["metadata"]["stack"].build_pyramid(max_size=32)
    new = replace_with_levels(viewer, layer, levels)
    assert viewer.layers.selection.active is lines
    assert new not in viewer.layers.selection and layer not in viewer.layers
