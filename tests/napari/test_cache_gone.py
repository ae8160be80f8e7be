"""A shown pyramid whose cache entry another process removes: a reload, never zeros for good."""

from __future__ import annotations

import numpy as np
import pytest

import ctstack
from ctstack.cache import clean_location
from ctstack.napari._qt.build import controller_for

from .conftest import MAX_SIZE

PLUGIN = "napari-ctstack"
pytestmark = pytest.mark.gui


@pytest.mark.parametrize("then", ["rebuilt elsewhere", "nothing"])
def test_levels_gone_while_shown_reload_with_a_notification(
    make_napari_viewer, phantom_dir, qtbot, notes, monkeypatch, tmp_path, then
):
    ctstack.open_stack(phantom_dir).build_pyramid(max_size=MAX_SIZE)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(phantom_dir), plugin=PLUGIN)
    assert layer.multiscale  # shown from the cache at once
    ctl = controller_for(viewer)
    truth = np.asarray(layer.data[1])
    clean_location(phantom_dir / ".ctstack")  # another process cleans the cache...
    if then == "rebuilt elsewhere":  # ...and builds it in another location
        monkeypatch.setenv("CTSTACK_CACHE_DIR", str(tmp_path / "shared"))
        ctstack.open_stack(phantom_dir).build_pyramid(max_size=MAX_SIZE)
    # a read as napari's slicing makes it (an xz plane: the z band napari's thumbnail read is
    # held in memory and stays valid), and no exception
    plane = np.asarray(layer.data[1][:, 3])
    assert plane.shape == (truth.shape[0], truth.shape[2])
    qtbot.waitUntil(
        lambda: "phantom" in viewer.layers and viewer.layers["phantom"] is not layer, timeout=20000
    )
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
    new = viewer.layers["phantom"]
    assert new.multiscale
    np.testing.assert_array_equal(np.asarray(new.data[1]), truth)
    said = [str(n.message) for n in notes("info") if "removed by another process" in str(n.message)]
    assert len(said) == 1, said
    assert ("reloaded from" in said[0]) == (then == "rebuilt elsewhere"), said
    assert ("rebuilding" in said[0]) == (then == "nothing"), said
