"""The widgets' Qt-free ROI geometry: world boxes <-> level-0 ranges through the layer's own
transforms (multiscale included), the shared per-stack view model, and the export plan."""

from __future__ import annotations

import numpy as np
import pytest

import ctstack
from ctstack._export import plan_export
from ctstack.sample import write_phantom_stack

napari = pytest.importorskip("napari")

from ctstack.napari._roi_model import (  # noqa: E402
    box_to_yx,
    edges_to_range,
    model_for,
    world_to_index,
    yx_to_box,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def multiscale_layer(shape=(8, 90, 70), scale=(2.0, 0.5, 0.25), translate=(1.0, -3.0, 7.0)):
    levels = [np.zeros(shape, np.uint8)]
    for _ in range(2):
        levels.append(levels[-1][::2, ::2, ::2])
    return napari.layers.Image(levels, multiscale=True, scale=scale, translate=translate)


def test_edges_round_outward_and_clip():
    assert edges_to_range(9.5, 20.5, 100) == (10, 21)  # edges exactly on voxel boundaries
    assert edges_to_range(9.4999999, 20.5000001, 100) == (10, 21)  # float noise ignored
    assert edges_to_range(9.6, 20.4, 100) == (10, 21)  # inside voxels 10 and 20
    assert edges_to_range(20.4, 9.6, 100) == (10, 21)  # corners in any order
    assert edges_to_range(-40.0, 500.0, 100) == (0, 100)
    assert edges_to_range(3.0, 3.0, 100) == (3, 4)  # a click still selects one voxel
    assert edges_to_range(150.0, 160.0, 100) == (99, 100)


def test_box_round_trip_through_the_layer_transforms():
    layer = multiscale_layer()
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = tuple(sorted(rng.choice(91, 2, replace=False)))
        x = tuple(sorted(rng.choice(71, 2, replace=False)))
        corners = yx_to_box(layer, y, x)
        assert box_to_yx(layer, corners, layer.level_shapes[0]) == (y, x)
    # a hand-made world box: y data = (w + 3) / 0.5, x data = (w - 7) / 0.25
    corners = np.array([[2.0, 8.0], [14.2, 19.9]])  # y 10.0..34.4 -> 10:35; x 4.0..51.6 -> 4:53
    assert box_to_yx(layer, corners, layer.level_shapes[0]) == ((10, 35), (4, 53))
    # (z, y, x) world points work too, and the z index follows the layer's z transform
    assert box_to_yx(layer, np.c_[[5.0, 5.0], corners], layer.level_shapes[0]) == (
        (10, 35),
        (4, 53),
    )
    assert world_to_index(layer, (1.0 + 2.0 * 5.4, 0, 0), 0, 8) == 5
    assert world_to_index(layer, (99.0, 0, 0), 0, 8) == 7


def test_model_is_shared_saved_and_restored(tmp_path):
    write_phantom_stack(tmp_path / "s", (10, 20, 30), "uint16", voxel_size_um=4.0)
    stack = ctstack.open_stack(tmp_path / "s")
    model = model_for(stack)
    assert model_for(stack) is model and model.roi.source == "full" and not model.restored
    seen = []
    model.events.roi.connect(seen.append)
    roi = model.set_region(z=(2, 8), x=(5, 50), commit=False)  # x is clipped to the stack
    assert (roi.z, roi.y, roi.x) == ((2, 8), (0, 20), (5, 30)) and seen == [roi]
    assert model.dirty
    path = model.commit()
    assert path == tmp_path / "s" / ".ctstack" / "roi.json" and not model.dirty
    # the same scan opened again shares the model (and re-reads what was saved)
    again = model_for(ctstack.open_stack(tmp_path / "s"))
    assert again is model and again.restored and again.roi.z == (2, 8)
    plan = plan_export(stack, tmp_path / "out", **roi.slices, level=0, format="tiff")
    assert plan.shape == (6, 20, 25) and plan.files == 6 and plan.bytes == 6 * 20 * 25 * 2
    plan = plan_export(
        stack, tmp_path / "o.ome.zarr", **roi.slices, format="ome-zarr", window=(0, 1000)
    )
    assert plan.files == 1 and plan.bytes == 6 * 20 * 25 and plan.dtype == "uint8"
