"""Soak through the napari reader: 50 layers opened and removed, one after another.

After the layers are removed and the build controller is idle, Python threads and file
descriptors are back exactly to their baseline (taken after a few warm-up layers, which start
the pools that live for the process). Threads and fds are compared as in tests/test_soak.py.
"""

from __future__ import annotations

import gc
import os

import pytest

from ctstack.napari._qt.build import controller_for
from tests.test_soak import fds, threads

PLUGIN = "napari-ctstack"
LAYERS = 50
WARM_UP = 5
pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)"),
]


def _settle(qtbot, ctl) -> None:
    """Let the controller finish and napari's deferred callbacks run; then retire the idle
    threads of Qt's pool (napari's workers run there; an idle one keeps its event-loop fd
    until Qt's 30 s expiry, which would make the fd count depend on timing)."""
    from qtpy.QtCore import QThreadPool

    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
    qtbot.wait(50)
    assert QThreadPool.globalInstance().waitForDone(10000)
    qtbot.wait(10)
    gc.collect()


def test_open_and_remove_50_layers(make_napari_viewer, phantom_dir, qtbot):
    viewer = make_napari_viewer()
    ctl = controller_for(viewer)

    def one() -> None:
        [layer] = viewer.open(str(phantom_dir), plugin=PLUGIN)
        qtbot.waitUntil(
            lambda: ctl.job(layer.metadata["stack"]) is not None or layer.multiscale,
            timeout=5000,
        )
        qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
        shown = viewer.layers[layer.name]
        assert shown.multiscale  # the pyramid was built (first) or reused, and swapped in
        viewer.layers.remove(shown)
        assert len(viewer.layers) == 0
        _settle(qtbot, ctl)

    for _ in range(WARM_UP):
        one()
    base_threads, base_fds = threads(), fds()
    for _ in range(LAYERS):
        one()
    _settle(qtbot, ctl)
    assert not ctl.busy
    now_threads, now_fds = threads(), fds()
    assert now_threads == base_threads, _diff(base_threads, now_threads)
    assert now_fds == base_fds, _diff(base_fds, now_fds)


def _diff(before: list[str], after: list[str]) -> str:
    gone = sorted(set(before) - set(after))
    new = sorted(set(after) - set(before))
    return f"gone since the baseline: {gone}; new: {new}"
